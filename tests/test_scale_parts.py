"""What the 1,024-rollout work changed in the parts (issue 13 §1): cheaper, still isolated."""

from __future__ import annotations

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
