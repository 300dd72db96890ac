"""What the 1,024-rollout work changed in the parts (issue 13 §1): cheaper, still isolated."""

from __future__ import annotations

import json
from pathlib import Path

from test_runner import write_dataset

from agentdata_tui.config import load_config
from agentdata_tui.dataset import load_dataset
from agentdata_tui.runner.components import evaluator_for, sandbox_maker


def test_evaluation_sandbox_is_a_fresh_copy_without_a_diff_base(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "code.py").write_text("x = 1\n")
    ds_path = write_dataset(tmp_path, 1, extra={"task-000": {"repo_path": "repo"}})
    ds = load_dataset(ds_path)
    make = sandbox_maker(ds, load_config())
    inst = ds.instances[0]
    rollout = make(inst, "r-1")
    rollout.start()
    try:
        assert rollout.base_tree  # a rollout's diff is taken against the tree after setup
        rollout.execute("echo changed-by-the-agent > code.py")
        evaluator = evaluator_for("local", make)
        ev = evaluator.sandbox_factory(inst)
        ev.start()
        try:
            assert ev.base_tree is None and ev.context.diff_base is False
            res = ev.execute("cat code.py && git rev-parse --is-inside-work-tree")
            assert res.returncode == 0 and res.output.startswith("x = 1\n")  # the original, not the agent's
            assert ev.root != rollout.root
        finally:
            ev.close()
    finally:
        rollout.close()


def test_local_sandbox_starts_are_bounded_docker_ones_are_not(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 1))
    config = load_config()
    local = sandbox_maker(ds, config)
    assert 8 <= local.start_concurrency <= 64
    docker = sandbox_maker(ds, config, environment_class="docker")
    assert getattr(docker, "start_concurrency", None) is None


def test_evaluation_overlaps_the_next_rollout(tmp_path: Path) -> None:
    """One worker: task-000's grading waits until task-001's agent has run a command. Graded
    inline, task-001 could not start before it ended (the grading would time out, tests_failed)."""
    from servers.model_server import ModelServer, ScriptedResponder
    from test_runner import SUBMIT, make_runner, scripts_for

    marker = tmp_path / "task-001-is-running"
    wait = f"for i in $(seq 300); do test -e {marker} && exit 0; sleep 0.1; done; exit 1"
    extra = {"task-000": {"eval": {"test_command": wait, "timeout": 60}}}
    ds = load_dataset(write_dataset(tmp_path, 2, extra=extra))
    scripts = scripts_for(2)
    scripts["[task-001]"] = [
        f"THOUGHT: go.\n\n```bash\ntouch {marker} && echo data-task-001 > out.txt\n```",
        SUBMIT,
    ]
    out = tmp_path / "overlap.json"
    with ModelServer(ScriptedResponder(scripts)) as server:
        outcome = make_runner(server, ds, out, workers=1).run()
    assert outcome.written == 2
    lines = [
        json.loads(x) for x in out.with_suffix(".run").joinpath("examples.jsonl").read_text().splitlines()
    ]
    by_id = {d["instance_id"]: d for d in lines}
    assert by_id["task-000"]["evaluation_info"]["status"] == "correct" and by_id["task-000"]["success"]
    assert by_id["task-001"]["success"]
    # task-000's grading ended only once task-001's agent had run its first command.
    t000 = by_id["task-000"]["metadata"]["timings"]
    assert t000["eval_s"] > 0 and marker.exists()
