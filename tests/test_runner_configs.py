"""The worked configs in configs/: the mini-swe-agent 2.x example and the generation shell script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servers.model_server import ModelServer, ScriptedResponder
from test_runner import write_dataset

from agentdata_tui.config import load_config
from agentdata_tui.reader import open_input

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-SCRIPT-secret-5c0ffee"


def _mswea_scripts(n: int) -> dict[str, list[str]]:
    out = {}
    for i in range(n):
        iid = f"task-{i:03d}"
        out[f"[{iid}]"] = [
            f"THOUGHT: write it.\n\n```mswea_bash_command\necho data-{iid} > out.txt\n```",
            "THOUGHT: done.\n\n```mswea_bash_command\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```",
        ]
    return out


def test_mini_swe_agent_2_config_loads_and_runs(tmp_path: Path) -> None:
    path = REPO / "configs" / "mini-swe-agent-2.yaml"
    cfg = load_config(path)
    assert "mswea_bash_command" in cfg.action_regex
    assert cfg.observation_template.lstrip().startswith("{%- if output.exception_info")
    assert "agent.mode" in cfg.ignored_keys and "model.model_class" in cfg.ignored_keys
    dataset = write_dataset(tmp_path, 2)
    out = tmp_path / "v2.json"
    with ModelServer(ScriptedResponder(_mswea_scripts(2))) as server:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentdata_tui",
                "generate-multi",
                "--dataset",
                str(dataset),
                "--config",
                str(path),
                "--base-url",
                server.base_url,
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        body = server.chat_requests()[0].body
    assert res.returncode == 0, res.stderr
    assert "drop_params" not in body, "litellm-only keys are never sent"
    examples = list(open_input(out))
    assert len(examples) == 2 and all(e.success for e in examples)
    observation = examples[0].messages[3]["content"]
    assert "<returncode>0</returncode>" in observation
    assert "<pr_description>" in examples[0].messages[1]["content"]


def test_generate_training_data_script(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path, 3)
    out = tmp_path / "script" / "data.json"
    with ModelServer(
        ScriptedResponder(
            {
                f"[task-{i:03d}]": [
                    f"THOUGHT: w\n\n```bash\necho data-task-{i:03d} > out.txt\n```",
                    "THOUGHT: d\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```",
                ]
                for i in range(3)
            }
        )
    ) as server:
        env = dict(os.environ)
        env.update(
            DATASET=str(dataset),
            MODEL="test-model",
            BASE_URL=server.base_url,
            OPENAI_API_KEY=KEY,
            OUTPUT=str(out),
            WORKERS="2",
            TEMPERATURE="0.3",
            MAX_TOKENS="256",
            MAX_TASKS="2",
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        res = subprocess.run(
            ["bash", str(REPO / "configs" / "generate_training_data.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        auth = {r.headers.get("Authorization") for r in server.chat_requests()}
        temps = {r.body["temperature"] for r in server.chat_requests()}
    assert res.returncode == 0, res.stderr
    assert auth == {f"Bearer {KEY}"} and temps == {0.3}
    src = open_input(out)
    assert len(list(src)) == 2 and src.metadata["max_tokens"] == 256
    log = out.with_suffix(".log")
    assert log.exists()
    for f in [out, log, *out.with_suffix(".run").iterdir()]:
        assert KEY.encode() not in f.read_bytes()
