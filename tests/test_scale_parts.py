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


def test_local_gradings_are_bounded_eval_server_and_docker_ones_are_not(tmp_path: Path) -> None:
    from agentdata_tui.runner.components import grading_slots

    ds = load_dataset(write_dataset(tmp_path, 1))
    config = load_config()
    local = evaluator_for("local", sandbox_maker(ds, config))
    assert 4 <= local.concurrency <= 64 and grading_slots(local, 1024) == local.concurrency
    assert grading_slots(local, 2) == 2
    docker = evaluator_for("local", sandbox_maker(ds, config, environment_class="docker"))
    assert docker.concurrency is None and grading_slots(docker, 1024) == 1024
    server = evaluator_for("http://127.0.0.1:9", sandbox_maker(ds, config))
    assert grading_slots(server, 512) == 512


def test_the_runner_grades_no_more_at_once_than_the_evaluator_allows(tmp_path: Path) -> None:
    """Six agents done, a bound of two: two gradings run while four wait their turn; all six are
    graded (nothing dropped by the bound)."""
    import threading

    from servers.model_server import ModelServer, ScriptedResponder
    from test_runner import make_runner, scripts_for

    extra = {
        f"task-{i:03d}": {"eval": {"test_command": "grep -q data out.txt", "timeout": 60}} for i in range(6)
    }
    ds = load_dataset(write_dataset(tmp_path, 6, extra=extra))

    class Bounded:
        def __init__(self, inner) -> None:
            self.inner = inner
            self.concurrency = 2
            self.cond = threading.Condition()
            self.inside = self.peak = 0
            self.release = threading.Event()

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def evaluate(self, *args, **kwargs):
            with self.cond:
                self.inside += 1
                self.peak = max(self.peak, self.inside)
                self.cond.notify_all()
            try:
                assert self.release.wait(60)
                return self.inner.evaluate(*args, **kwargs)
            finally:
                with self.cond:
                    self.inside -= 1

    with ModelServer(ScriptedResponder(scripts_for(6))) as server:
        maker = sandbox_maker(ds, load_config())
        evaluator = Bounded(evaluator_for("local", maker))
        runner = make_runner(server, ds, tmp_path / "o.json", workers=6, make=maker)
        runner = type(runner)(runner.spec, model=runner.model, evaluator=evaluator, make_sandbox=maker)
        result: list = []
        t = threading.Thread(target=lambda: result.append(runner.run()))
        t.start()
        ok = False
        with evaluator.cond:
            for _ in range(1200):  # the queue's length has no event of its own: looked at every 50 ms
                ok = evaluator.inside == 2 and runner._grader.pending == 4
                if ok:
                    break
                evaluator.cond.wait(0.05)
        queued = runner._grader.pending
        evaluator.release.set()
        t.join(120)
    assert ok, (evaluator.inside, queued)
    assert evaluator.peak == 2
    (outcome,) = result
    assert outcome.counts["finished"] == 6 and outcome.counts["successful"] == 6
