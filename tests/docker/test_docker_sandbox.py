"""DockerSandbox on a real engine: commands, timeouts, diffs, removal, killed containers, dead daemons."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest
from demo_patches import PAGER_FIX
from dockerutil import DEMO, IMAGE, containers_with, docker_dataset, wait_for

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.errors import UserError
from agentdata_tui.evaluation import BuiltinEvaluator
from agentdata_tui.interfaces import SandboxError
from agentdata_tui.sandbox import SandboxContext, make_sandbox
from agentdata_tui.sandbox import docker as dsb

pytestmark = pytest.mark.docker

# Run ids unique per session: other sessions may run these tests on the same engine at once.
_UID = uuid.uuid4().hex[:6]
RUN = {name: f"{name}-{_UID}" for name in ("t-basics", "t-killed", "t-dies", "t-eval", "t-clean", "t-cwd")}


def _pager(**extra) -> Instance:
    return Instance(
        instance_id="demo__pager-last-page",
        problem_statement="fix it",
        image=IMAGE,
        cwd="/app/pager",
        eval={"test_command": "python3 -m unittest -q tests", "timeout": 60},
        **extra,
    )


def test_commands_timeouts_diff_and_removal(docker_api, docker_tcp):
    cfg = EnvironmentConfig(
        environment_class="docker_remote",
        timeout=3,
        env={"GREETING": "hello"},
        cpus=1.5,
        memory="512m",
        pids_limit=256,
        devices=["/dev/null:/dev/agentdata-null"],
    )
    ctx = SandboxContext(
        run_id=RUN["t-basics"],
        rollout_id="r1",
        docker_servers=[docker_tcp],
        environment_class="docker_remote",
    )
    sb = make_sandbox(_pager(setup_command="echo built > build.log && mkdir -p out"), cfg, ctx)
    assert isinstance(sb, dsb.DockerSandbox)
    secret = "sk-should-never-leak"
    os.environ["AGENTDATA_TEST_SECRET"] = secret
    try:
        sb.start()
        (c,) = containers_with(docker_api, run_id=RUN["t-basics"])
        assert c["Labels"]["agentdata-tui.instance_id"] == "demo__pager-last-page"
        assert c["Labels"]["agentdata-tui.rollout_id"] == "r1"
        assert c["HostConfig"]["NetworkMode"] == "none"
        host = docker_api.inspect_container(c["Id"])["HostConfig"]
        assert (host["NanoCpus"], host["Memory"], host["PidsLimit"]) == (1_500_000_000, 512 * 2**20, 256)
        assert sb.execute("test -c /dev/agentdata-null && echo dev").output == "dev\n"

        res = sb.execute("pwd; echo $GREETING; echo oops >&2; env | grep -c AGENTDATA_TEST_SECRET; exit 3")
        assert res.returncode == 3 and not res.timed_out
        assert res.output.splitlines()[:3] == ["/app/pager", "hello", "oops"]
        assert secret not in res.output and "agentdata-time" not in res.output
        res = sb.execute("sleep 0.3")
        assert 0.29 < res.exec_time_s < 2  # timed inside the container, API round trips excluded

        # In-container timeout: killed and flagged, well before the client-side bound.
        t0 = time.monotonic()
        res = sb.execute("echo start; sleep 30; echo never")
        assert res.timed_out and res.returncode == -1 and "start" in res.output and "never" not in res.output
        assert "Command 'echo start; sleep 30; echo never' timed out after" in res.exception_info  # as 2.x
        assert time.monotonic() - t0 < 3 + dsb.CLIENT_GRACE

        # A backgrounded process that keeps the stream open does not hold the command.
        t0 = time.monotonic()
        res = sb.execute("sleep 60 & echo spawned")
        assert res.returncode == 0 and not res.timed_out and res.output.strip() == "spawned"
        assert time.monotonic() - t0 < 3

        # Output is capped: head and tail kept, the middle dropped and flagged.
        res = sb.execute("seq 1 400000")
        assert res.output_truncated and res.output.startswith("1\n2\n") and res.output.endswith("400000\n")
        assert len(res.output) < 1_100_000 and "bytes of output dropped" in res.output  # the 1 MiB bound

        # The diff: a fix and a new file, setup artefacts and caches excluded.
        sb.execute("sed -i 's/page_count(total, per_page))/page_count(total, per_page) + 1)/' paginator.py")
        sb.execute("echo note > NOTES.txt && python3 -m unittest -q tests")
        patch, truncated = sb.diff()
        assert not truncated
        assert "+    return range(1, page_count(total, per_page) + 1)" in patch
        assert "b/NOTES.txt" in patch and "build.log" not in patch and "__pycache__" not in patch
        assert sb.execute("git status --porcelain").output.count("??") >= 1  # agent's view untouched

        # A diff over 1 MB is cut and flagged.
        sb.execute("head -c 1500000 /dev/zero | tr '\\0' 'x' | fold -w 100 > big.txt")
        patch, truncated = sb.diff()
        assert truncated and len(patch.encode()) <= dsb.DIFF_LIMIT
    finally:
        sb.close()
        os.environ.pop("AGENTDATA_TEST_SECRET", None)
    assert containers_with(docker_api, run_id=RUN["t-basics"]) == []
    assert sb not in dsb.live_sandboxes()
    with pytest.raises(SandboxError):
        sb.execute("true")


def test_a_cwd_missing_from_the_image_is_a_sandbox_error(docker_api):
    """Not an empty stand-in folder: commands and tests would run somewhere else."""
    inst = _pager()
    inst.cwd = "/testbed"
    cfg = EnvironmentConfig(environment_class="docker", timeout=60)
    sb = make_sandbox(inst, cfg, SandboxContext(run_id=RUN["t-cwd"], environment_class="docker"))
    with pytest.raises(SandboxError, match="cwd /testbed does not exist in the image"):
        sb.start()
    sb.close()
    wait_for(lambda: containers_with(docker_api, run_id=RUN["t-cwd"]) == [], 10, "the container's removal")


def test_container_killed_from_outside_is_a_sandbox_error(docker_api):
    cfg = EnvironmentConfig(environment_class="docker", timeout=60)
    sb = make_sandbox(_pager(), cfg, SandboxContext(run_id=RUN["t-killed"], environment_class="docker"))
    sb.start()
    try:
        (c,) = containers_with(docker_api, run_id=RUN["t-killed"])
        threading.Timer(1.0, lambda: docker_api.kill(c["Id"])).start()
        t0 = time.monotonic()
        with pytest.raises(SandboxError, match="killed from outside|not running|gone"):
            sb.execute("sleep 50")
        assert time.monotonic() - t0 < 15
        # The shutdown path: close_all() drains the registry of live sandboxes.
        assert sb in dsb.live_sandboxes()
        assert dsb.close_all() >= 1
        assert sb not in dsb.live_sandboxes()
    finally:
        sb.close()
    wait_for(lambda: containers_with(docker_api, run_id=RUN["t-killed"]) == [], 10, "the container's removal")


@pytest.mark.slow
def test_daemon_that_dies_mid_command_is_a_sandbox_error(second_daemon, monkeypatch):
    monkeypatch.setattr(dsb, "PROBE_TIMEOUT", 3.0)  # 10 s in real use; the mechanism is the same
    cfg = EnvironmentConfig(environment_class="docker_remote", timeout=30, pull_policy="never")
    # The daemon's image holds only this machine's bash, coreutils and git (see conftest).
    inst = Instance(instance_id="dies", problem_statement="x", image="agentdata-tui-test:tiny", cwd="/root")
    ctx = SandboxContext(
        run_id=RUN["t-dies"], docker_servers=[second_daemon.server], environment_class="docker_remote"
    )
    sb = make_sandbox(inst, cfg, ctx)
    sb.start()
    try:
        assert sb.execute("echo alive").output == "alive\n"
        # A daemon that stops answering (frozen): noticed by the exec poll's short timeout.
        pid = second_daemon.proc.pid
        threading.Timer(1.0, lambda: os.kill(pid, signal.SIGSTOP)).start()
        t0 = time.monotonic()
        try:
            with pytest.raises(SandboxError, match="timed out"):
                sb.execute("sleep 25; echo finished")
            assert time.monotonic() - t0 < cfg.timeout
        finally:
            os.kill(pid, signal.SIGCONT)
        assert sb.execute("echo thawed").output == "thawed\n"
        # A daemon that goes away.
        threading.Timer(1.0, second_daemon.stop).start()
        t0 = time.monotonic()
        with pytest.raises(SandboxError):
            sb.execute("sleep 25; echo finished")
        assert time.monotonic() - t0 < cfg.timeout
        with pytest.raises(SandboxError):  # the next command fails fast too
            sb.execute("echo again")
    finally:
        t0 = time.monotonic()
        sb.close()  # never raises, never hangs on a dead daemon
        assert time.monotonic() - t0 < 15


def test_builtin_evaluator_grades_in_a_fresh_container(docker_api, tmp_path):
    cfg = EnvironmentConfig(environment_class="docker", timeout=60)
    opened: list[dsb.DockerSandbox] = []

    def factory(inst: Instance):
        sb = make_sandbox(inst, cfg, SandboxContext(run_id=RUN["t-eval"], environment_class="docker"))
        opened.append(sb)
        return sb

    ev = BuiltinEvaluator(factory)
    good = ev.evaluate(_pager().to_dict(), PAGER_FIX, run_id=RUN["t-eval"])
    assert (good.reward, good.success, good.info["status"]) == (1.0, True, "correct")
    bad = ev.evaluate(_pager().to_dict(), "", run_id=RUN["t-eval"])
    assert (bad.reward, bad.success, bad.info["status"]) == (0.0, False, "no_patch")
    # Protected files on docker too: a rewrite of tests.py beside a wrong fix is dropped.
    rewrite = (
        "--- a/tests.py\n+++ b/tests.py\n@@ -1,1 +1,1 @@\n-"
        + _first_line(DEMO / "repos/pager/tests.py")
        + "\n+import sys; sys.exit(0)\n"
    )
    gamed = ev.evaluate(_pager().to_dict(), rewrite, run_id=RUN["t-eval"])
    assert (gamed.reward, gamed.info["status"], gamed.info["protected_changed"]) == (
        0.0,
        "no_patch",
        ["tests.py"],
    )

    # The performance task: tests, then base and patched benchmark timed in the container.
    (perf,) = json.loads(docker_dataset(tmp_path / "ds.json", ["demo__dedupe-perf"]).read_text())
    fast = ev.evaluate(perf, _dedupe_fix(tmp_path), run_id=RUN["t-eval"])
    assert fast.info["status"] == "correct" and fast.success, fast.info
    assert fast.speedup > 1.5 and 0 < fast.reward <= 1
    assert (
        len(fast.info["base_times"]) == len(fast.info["patched_times"]) == 10
    )  # the demo task asks for 10 repeats
    assert fast.info["speedup_test"]["significant"] is True and fast.info["protected_changed"] == []

    # One container per graded patch; the empty and the protected-only patches need none.
    assert len(opened) == 2 and len({sb.container_id for sb in opened}) == 2
    assert containers_with(docker_api, run_id=RUN["t-eval"]) == []


def _dedupe_fix(tmp_path) -> str:
    """The demo's scripted fix of the dedupe task as a patch (made with git, as a rollout would)."""
    replies = json.loads((DEMO / "replies.json").read_text())["demo__dedupe-perf"]
    (reply,) = [r for r in replies if "cat <<'EOF' > dupes.py" in r]
    body = reply.split("cat <<'EOF' > dupes.py\n", 1)[1].split("\nEOF", 1)[0] + "\n"
    repo = tmp_path / "dedupe"
    shutil.copytree(DEMO / "repos" / "dedupe", repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    (repo / "dupes.py").write_text(body)
    return subprocess.run(["git", "diff"], cwd=repo, check=True, capture_output=True, text=True).stdout


def test_preflight_names_the_server_or_the_image(docker_api, docker_tcp):
    dsb.preflight([docker_tcp], [IMAGE], "never")  # fine: answers and has the image
    with pytest.raises(UserError, match="docker server 127.0.0.1:1 does not answer"):
        dsb.preflight(["127.0.0.1:1"], [IMAGE], "if-missing")
    with pytest.raises(UserError, match="image agentdata-tui-test:nope is not on docker server .*'never'"):
        dsb.preflight([docker_tcp], ["agentdata-tui-test:nope"], "never")
    # No network here: a missing image cannot be pulled either, and the error says so.
    with pytest.raises(UserError, match="cannot be pulled"):
        dsb.preflight(None, ["localhost:1/agentdata-tui-test:nope"], "if-missing")
    # At rollout time: the engine's in-stream pull error becomes a SandboxError naming the image.
    with pytest.raises(SandboxError, match="cannot pull image localhost:1/agentdata-tui-test:nope"):
        dsb.ensure_image(dsb.get_server(None), "localhost:1/agentdata-tui-test:nope", "always")


def test_cleanup_removes_leftovers_of_dead_processes_only(docker_api):
    import io
    import subprocess
    import sys
    import tarfile

    # Containers that are only created, from a one-file image: vfs copies nothing worth waiting for.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("empty")
        tar.addfile(info, io.BytesIO(b""))
    try:
        docker_api.inspect_image("agentdata-tui-test:empty")
    except Exception:
        docker_api.import_image_from_data(buf.getvalue(), repository="agentdata-tui-test", tag="empty")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    made = []
    for run_id, owner in ((RUN["t-clean"], f"{host}:{dead.pid}"), (RUN["t-clean"], f"{host}:{os.getpid()}")):
        c = docker_api.create_container(
            "agentdata-tui-test:empty",
            entrypoint=["sleep"],
            command=["600"],
            labels={dsb.LABEL: "1", dsb.LABEL_RUN: run_id, dsb.LABEL_OWNER: owner},
            host_config=docker_api.create_host_config(network_mode="none"),
        )
        made.append(c["Id"])
    try:
        (rep,) = dsb.cleanup(None, run_id=RUN["t-clean"])
        assert rep.removed == [made[0][:12]] and rep.skipped_live == [made[1][:12]] and not rep.failed
        r = subprocess.run(
            [sys.executable, "-m", "agentdata_tui", "cleanup", "--run-id", RUN["t-clean"], "--include-live"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0 and r.stdout.strip() == "local: removed 1 container", r.stderr
        assert containers_with(docker_api, run_id=RUN["t-clean"]) == []
    finally:
        for cid in made:
            with contextlib.suppress(Exception):
                docker_api.remove_container(cid, force=True)


def _first_line(path) -> str:
    return path.read_text().splitlines()[0]
