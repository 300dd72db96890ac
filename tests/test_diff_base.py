"""Issue 8 item 9 (local sandbox, through the runner): the diff base survives the agent's git."""

from __future__ import annotations

from pathlib import Path

from servers.model_server import ModelServer, ScriptedResponder
from test_runner import SUBMIT, make_runner, write_dataset

from agentdata_tui.dataset import load_dataset
from agentdata_tui.reader import open_input


def _act(cmd: str) -> str:
    return f"THOUGHT: go.\n\n```bash\n{cmd}\n```"


def test_git_gc_by_the_agent_keeps_the_patch_and_a_destroyed_base_is_its_own_status(tmp_path: Path) -> None:
    """The issue's repro: `git gc --prune=now` dropped the base (local: `bad object`, a SandboxError)."""
    ds = load_dataset(write_dataset(tmp_path, 2))
    scripts = {
        "[task-000]": [
            _act("echo data-task-000 > out.txt && git add -A && git stash -q && git stash drop -q"),
            _act("git reflog expire --expire=now --all; git gc --prune=now -q; echo data-task-000 > out.txt"),
            _act("rm -rf .git && ls -a"),
            SUBMIT,
        ],
        "[task-001]": [_act("echo data-task-001 > out.txt && rm -rf ../base.git"), SUBMIT],
    }
    out = tmp_path / "gc.json"
    with ModelServer(ScriptedResponder(scripts)) as server:
        make_runner(server, ds, out, workers=2).run()
    by_id = {e.instance_id: e for e in open_input(out)}
    gc = by_id["task-000"]
    assert gc.exit_status == "Submitted" and gc.success and gc.reward == 1.0
    assert "+data-task-000" in gc.git_diff and ".git" not in gc.git_diff
    gone = by_id["task-001"]
    assert gone.exit_status == "DiffUnavailable" and gone.reward == 0.0 and not gone.success
    assert gone.error is None and gone.metadata["error_kind"] is None, "the agent's failure, not retried"
    assert gone.evaluation_info["status"] == "no_patch" and "base.git" in gone.evaluation_info["reason"]
