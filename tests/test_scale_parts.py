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


def test_evaluation_overlaps_the_next_rollout(tmp_path: Path, unisolated) -> None:
    """Two workers, three tasks: the gradings of task-000 and task-001 wait until task-002's agent
    has run a command. Graded inline, both workers would be busy grading and task-002 could not
    start (the gradings would time out: tests_failed). Unisolated: the commands signal each other
    through a host file, which isolated sandboxes cannot see."""
    from servers.model_server import ModelServer, ScriptedResponder
    from test_runner import SUBMIT, make_runner, scripts_for

    marker = tmp_path / "task-002-is-running"
    wait = f"for i in $(seq 300); do test -e {marker} && exit 0; sleep 0.1; done; exit 1"
    extra = {t: {"eval": {"test_command": wait, "timeout": 60}} for t in ("task-000", "task-001")}
    ds = load_dataset(write_dataset(tmp_path, 3, extra=extra))
    scripts = scripts_for(3)
    scripts["[task-002]"] = [
        f"THOUGHT: go.\n\n```bash\ntouch {marker} && echo data-task-002 > out.txt\n```",
        SUBMIT,
    ]
    out = tmp_path / "overlap.json"
    with ModelServer(ScriptedResponder(scripts)) as server:
        outcome = make_runner(server, ds, out, workers=2).run()
    assert outcome.written == 3
    lines = [
        json.loads(x) for x in out.with_suffix(".run").joinpath("examples.jsonl").read_text().splitlines()
    ]
    by_id = {d["instance_id"]: d for d in lines}
    for iid in ("task-000", "task-001"):
        assert by_id[iid]["evaluation_info"]["status"] == "correct" and by_id[iid]["success"]
    assert by_id["task-002"]["success"] and marker.exists()
