"""Issue 13 on a real engine: DockerSandbox.put_file (put_archive, no exec) and grading with it."""

from __future__ import annotations

import re
import uuid

import pytest
from demo_patches import PAGER_FIX
from dockerutil import IMAGE, containers_with

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.evaluation import BuiltinEvaluator
from agentdata_tui.interfaces import SandboxError
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox import docker as dsb

pytestmark = pytest.mark.docker
RUN = f"t-putfile-{uuid.uuid4().hex[:6]}"
# The demo fix as a git patch (a ``diff --git`` header): git's reading can be predicted.
GIT_FIX = "diff --git a/paginator.py b/paginator.py\n" + PAGER_FIX


def _pager() -> Instance:
    return Instance(
        instance_id="demo__pager-last-page",
        problem_statement="fix it",
        image=IMAGE,
        cwd="/app/pager",
        eval={"test_command": "python3 -m unittest -q tests", "timeout": 60},
    )


class Counting(dsb.DockerSandbox):
    log: list[str]

    def execute(self, command: str, timeout: float | None = None):
        self.log.append(command)
        return super().execute(command, timeout)


class CommandsOnly(Counting):
    put_file = None  # type: ignore[assignment]


def _ctx(docker_tcp: str, rollout: str) -> SandboxContext:
    return SandboxContext(
        run_id=RUN,
        rollout_id=rollout,
        docker_servers=[docker_tcp],
        environment_class="docker_remote",
        diff_base=False,
    )


def test_put_file_writes_into_the_private_folder_without_a_command(docker_api, docker_tcp) -> None:
    cfg = EnvironmentConfig(environment_class="docker_remote", timeout=30)
    sb = Counting(_pager(), cfg, _ctx(docker_tcp, "put"))
    sb.log = []
    try:
        sb.start()
        assert sb.base_tree is None, "an evaluation's sandbox records no diff base"
        before = len(sb.log)
        data = bytes(range(256)) * 300  # binary, and larger than one command line could carry
        path = sb.put_file("agentdata-t.patch", data)
        assert len(sb.log) == before, "no command ran"
        assert path.startswith("/tmp/agentdata-tui.") and path.endswith("/agentdata-t.patch")
        res = sb.execute(f"wc -c < {path} && cmp {path} - < {path} && echo same")
        assert res.output.split() == [str(len(data)), "same"], res.output
        with pytest.raises(SandboxError):
            sb.put_file("agentdata-t.patch", b"again")  # never overwrites
        with pytest.raises(ValueError):
            sb.put_file("../escape", b"x")
    finally:
        sb.close()
    assert containers_with(docker_api, run_id=RUN, rollout_id="put") == []
    with pytest.raises(SandboxError):
        sb.put_file("late.patch", b"x")


def _untimed(info: dict) -> dict:
    return {k: re.sub(r" in [0-9.]+s\b", " in Ts", v) if isinstance(v, str) else v for k, v in info.items()}


def test_grading_with_put_file_matches_the_command_path_in_fewer_execs(docker_api, docker_tcp) -> None:
    cfg = EnvironmentConfig(environment_class="docker_remote", timeout=60)
    logs: dict[str, list[str]] = {"put": [], "cmd": []}

    def factory(cls, key):
        def make(inst: Instance):
            sb = cls(inst, cfg, _ctx(docker_tcp, f"eval-{key}"))
            sb.log = logs[key]
            return sb

        return make

    results = {}
    for key, cls, name, patch in (
        ("put", Counting, "git", GIT_FIX),
        ("cmd", CommandsOnly, "git", GIT_FIX),
        ("put", Counting, "plain", PAGER_FIX),
    ):
        logs[key].clear()
        res = BuiltinEvaluator(factory(cls, key)).evaluate(_pager().to_dict(), patch, run_id=RUN)
        assert res.info["status"] == "correct" and res.reward == 1.0, res.info
        results[key, name] = (res, len(logs[key]))
    (fast, n_fast), (slow, n_slow) = results["put", "git"], results["cmd", "git"]
    assert _untimed(fast.info) == _untimed(slow.info)
    assert (n_fast, n_slow) == (2, 7)  # the one-command check and apply, the tests; before: 7 execs
    assert results["put", "plain"][1] == 3  # a plain diff (no prediction): numstat, apply, tests
    plain = _untimed(results["put", "plain"][0].info)
    assert plain == {**_untimed(fast.info), "patch_bytes": len(PAGER_FIX)}  # its own text only
    assert containers_with(docker_api, run_id=RUN) == []


def test_a_prepared_container_is_graded_in_and_removed(docker_api, docker_tcp) -> None:
    """prepare_eval_sandbox: true on docker — the container is built ahead and is the one graded in."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = EnvironmentConfig(environment_class="docker_remote", timeout=60, prepare_eval_sandbox=True)
    made: list[dsb.DockerSandbox] = []

    def factory(inst: Instance):
        made.append(dsb.DockerSandbox(inst, cfg, _ctx(docker_tcp, "prepared")))
        return made[-1]

    ev = BuiltinEvaluator(factory, prepare_ahead=cfg.prepares_eval_sandbox())
    handle = ev.prepare(_pager())
    assert handle is not None
    with ThreadPoolExecutor(1) as pool:
        handle.schedule(pool)
    assert (
        handle.state == "ready" and len(containers_with(docker_api, run_id=RUN, rollout_id="prepared")) == 1
    )
    res = ev.evaluate(_pager().to_dict(), GIT_FIX, run_id=RUN, prepared=handle)
    assert res.info["status"] == "correct" and res.reward == 1.0
    assert made == [handle.sandbox]
    assert containers_with(docker_api, run_id=RUN, rollout_id="prepared") == []
    assert not EnvironmentConfig(environment_class="docker").prepares_eval_sandbox(), "docker: off by default"
