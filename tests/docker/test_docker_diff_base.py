"""Issue 8 item 9 in a real container: the diff base survives the agent's git, and a failing diff
is never recorded as an empty patch."""

from __future__ import annotations

import uuid

import pytest
from dockerutil import IMAGE, containers_with

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.interfaces import DiffUnavailable
from agentdata_tui.sandbox import SandboxContext, make_sandbox

pytestmark = pytest.mark.docker
RUN = f"t-diffbase-{uuid.uuid4().hex[:6]}"


def _sandbox(docker_tcp: str, rollout: str):
    cfg = EnvironmentConfig(environment_class="docker_remote", timeout=30)
    ctx = SandboxContext(
        run_id=RUN, rollout_id=rollout, docker_servers=[docker_tcp], environment_class="docker_remote"
    )
    inst = Instance(instance_id="demo__pager", problem_statement="fix it", image=IMAGE, cwd="/app/pager")
    return make_sandbox(inst, cfg, ctx)


def test_git_gc_and_rm_git_cannot_drop_the_base(docker_api, docker_tcp) -> None:
    """The issue's repro: `git gc --prune=now` deleted the base; the patch was then silently empty."""
    sb = _sandbox(docker_tcp, "gc")
    try:
        sb.start()
        res = sb.execute(
            "echo '# changed' >> pager.py && echo new > NEW.txt && git add -A && git stash -q && git stash drop -q "
            "&& git stash list; git gc --prune=now -q 2>&1; git checkout -q . ; echo '# changed' >> pager.py; "
            "echo new > NEW.txt; git reflog expire --expire=now --all; git gc --prune=now -q; echo ok"
        )
        assert res.output.strip().endswith("ok"), res.output
        patch, _ = sb.diff()
        assert "+# changed" in patch and "NEW.txt" in patch
        sb.execute("rm -rf .git")
        patch2, _ = sb.diff()
        assert patch2 == patch, "our base lives outside the working tree"
    finally:
        sb.close()


def test_a_destroyed_base_is_diff_unavailable_not_an_empty_patch(docker_api, docker_tcp) -> None:
    sb = _sandbox(docker_tcp, "rm")
    try:
        sb.start()
        sb.execute("echo x >> pager.py")
        assert "+x" in sb.diff()[0]
        sb.execute("rm -rf /tmp/agentdata-tui.*")  # the agent reaches out of its way
        with pytest.raises(DiffUnavailable):
            sb.diff()
    finally:
        sb.close()
    assert not containers_with(docker_api, run_id=RUN, rollout_id="rm")
