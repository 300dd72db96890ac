"""The worked configs in configs/: the generation shell script. (mini-swe-agent's own configs:
tests/test_agent_parity.py runs them beside mini-swe-agent itself.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servers.model_server import ModelServer, ScriptedResponder
from test_runner import write_dataset

from agentdata_tui.reader import open_input

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-SCRIPT-secret-5c0ffee"


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
