"""ATIF export validated by Harbor's own models (the ``harbor`` package, test-only, in its own
venv: it needs Python >= 3.12; ``.ci/trainer-setup.sh`` makes ``.venv-harbor``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_processing_fixtures import seed_examples

from agentdata_tui.agent.loop import BASH_TOOL
from agentdata_tui.cli import main
from agentdata_tui.processing.atif import ATIF_VERSION, to_atif
from agentdata_tui.processing.export import export_trajectory
from agentdata_tui.processing.merge import merge
from agentdata_tui.reader import open_input
from agentdata_tui.records import Example
from agentdata_tui.writer import write_training_data

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).parent / "data" / "mini-swe-agent"

VALIDATE = """
import json, sys
from harbor.models.trajectories import Trajectory
n = 0
for i, line in enumerate(open(sys.argv[1], encoding="utf-8"), start=1):
    t = Trajectory.model_validate_json(line)
    assert t.schema_version == sys.argv[2], t.schema_version
    n += 1
print(json.dumps({"validated": n}))
"""


def harbor_python() -> str:
    path = os.environ.get("AGENTDATA_HARBOR_PYTHON") or str(ROOT / ".venv-harbor" / "bin" / "python")
    ok = Path(path).exists() and (
        subprocess.run([path, "-c", "import harbor.models.trajectories"], capture_output=True).returncode == 0
    )
    if not ok:
        message = f"harbor is not installed for {path}; bash .ci/trainer-setup.sh makes .venv-harbor"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _validate(path: Path) -> int:
    proc = subprocess.run(
        [harbor_python(), "-c", VALIDATE, str(path), ATIF_VERSION],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)["validated"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("atif-in")
    raw = seed_examples()
    exs = []
    for e in raw:
        ex = Example.model_validate(e)
        if any(m.get("tool_calls") for m in ex.messages):
            ex = ex.model_copy(update={"metadata": {**ex.metadata, "tools": [BASH_TOOL], "rollout_id": "r1"}})
        exs.append(ex)
    write_training_data(folder / "seed.json", exs, {"model_name": "Qwen/Qwen3-8B"})
    merge([folder / "seed.json", SAMPLES], folder / "merged.json")
    return {"seed": folder / "seed.json", "mini": SAMPLES, "merged": folder / "merged.json"}


@pytest.mark.parametrize("kind", ["seed", "mini", "merged"])
def test_atif_export_validates_against_harbor(inputs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    out = tmp_path / "atif.jsonl"
    n = export_trajectory(
        open_input(inputs[kind]), out, fmt="atif", metadata=open_input(inputs[kind]).metadata
    )
    assert n == len(list(open_input(inputs[kind]))) and _validate(out) == n


def test_atif_steps_calls_observations_and_extra(inputs: dict[str, Path]) -> None:
    exs = list(open_input(inputs["seed"]))
    tool_ex = exs[1]
    doc = to_atif(tool_ex)
    assert doc["schema_version"] == "ATIF-v1.8"
    assert [s["source"] for s in doc["steps"]] == ["system", "user", "agent"]
    agent = doc["steps"][2]
    assert agent["tool_calls"] == [
        {"tool_call_id": "call_1", "function_name": "bash", "arguments": {"command": "cat calc.py"}}
    ]
    assert agent["reasoning_content"] == "I should read calc.py first."
    assert agent["observation"]["results"] == [
        {"content": "<returncode>1</returncode>\n<output>\nboom\n</output>", "source_call_id": "call_1"}
    ]
    assert agent["metrics"] == {"prompt_tokens": 100, "completion_tokens": 10}
    assert doc["agent"]["tool_definitions"] == [BASH_TOOL]
    assert doc["extra"]["reward"] == 0.0 and doc["extra"]["instance_id"] == "task_001"
    assert doc["trajectory_id"] == "r1"
    think = to_atif(exs[2])
    first = next(s for s in think["steps"] if s["source"] == "agent")
    assert first["reasoning_content"] == "The bug is probably in add." and "<think>" not in first["message"]
    assert first["observation"]["results"][0]["content"].startswith("<returncode>0</returncode>")
    assert "source_call_id" not in first["observation"]["results"][0]  # text mode: no call to name


def test_atif_through_the_cli_leaves_out_empty_examples(capsys, tmp_path: Path) -> None:
    raw = seed_examples()
    empty = dict(raw[0], messages=[], exit_status="SandboxError", instance_id="empty")
    data = tmp_path / "in.json"
    write_training_data(data, [Example.model_validate(e) for e in [*raw, empty]], {})
    out = tmp_path / "atif.jsonl"
    code = main(["export_trajectory", "--input", str(data), "--output", str(out), "--format", "atif"])
    err = capsys.readouterr().err
    assert code == 0 and "wrote 9 trajectories of 10 examples" in err
    assert "left out 1 examples (no messages)" in err
    assert _validate(out) == 9


def test_atif_steps_pair_with_their_model_calls_past_a_rejected_reply() -> None:
    """mini-swe-agent 2.x drops a reply rejected for its format from the conversation (the step
    keeps it as rejected_reply): later messages still get their own call's metrics and tokens."""
    ex = Example(
        instance_id="t",
        messages=[
            {"role": "system", "content": "s"},
            {"role": "user", "content": "task"},
            {"role": "assistant", "content": "```bash\nls\n```"},
            {"role": "user", "content": "<returncode>0</returncode>"},
            {"role": "user", "content": "Please always provide EXACTLY ONE action."},
            {"role": "assistant", "content": "```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"},
        ],
        steps=[
            {"prompt_tokens": 10, "command": "ls"},
            {
                "prompt_tokens": 20,
                "format_error": True,
                "rejected_reply": {"role": "assistant", "content": "two blocks"},
            },
            {"prompt_tokens": 30, "command": "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"},
        ],
        metadata={"rollout_id": "r", "run_id": "run"},
    )
    seen = []

    def tokens(rollout_id: str, step: int) -> dict:
        seen.append((rollout_id, step))
        return {"token_ids": [step], "prompt_token_ids": [0], "logprobs": None}

    doc = to_atif(ex, tokens=tokens)
    agent = [s for s in doc["steps"] if s["source"] == "agent"]
    assert [s["metrics"]["prompt_tokens"] for s in agent] == [10, 30]
    assert [s["metrics"]["completion_token_ids"] for s in agent] == [[0], [2]] and seen == [
        ("r", 0),
        ("r", 2),
    ]
    assert [r["content"] for r in agent[0]["observation"]["results"]] == [
        "<returncode>0</returncode>",
        "Please always provide EXACTLY ONE action.",
    ]
