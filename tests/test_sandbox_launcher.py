"""The local sandbox's one namespace and its launcher (``sandbox/launcher.py``), against an adversary.

Commands no longer get a bubblewrap each: they are started inside the sandbox's one namespace by
a launcher. What a command could do with that — leave a daemon behind for the next command (in
an evaluation: one that slows the base runs of a benchmark), kill or freeze the launcher, read
its memory, talk to the runner through its socket — is tried here on real processes.
"""

from __future__ import annotations

import threading
import time

import pytest
from host_procs import host_pids_with

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox.isolation import bwrap_path
from agentdata_tui.sandbox.local import LocalSandbox

pytestmark = pytest.mark.skipif(
    bwrap_path() is None, reason="bubblewrap is not installed (.ci/run installs it)"
)


@pytest.fixture
def sb():
    box = LocalSandbox(
        Instance(instance_id="adv", problem_statement="p"), EnvironmentConfig(), SandboxContext()
    )
    box.start()
    assert box.isolated and box._launcher is not None, "the launcher did not start"
    yield box
    box.close()


def test_nothing_a_command_starts_outlives_it(sb: LocalSandbox) -> None:
    # A daemon in every disguise: backgrounded, nohup'd, in a new session, double-forked.
    res = sb.execute(
        "sleep 300.4241 > /dev/null 2>&1 & nohup sleep 300.4242 > /dev/null 2>&1 & "
        "(setsid sleep 300.4243 > /dev/null 2>&1 &); ( ( sleep 300.4244 > /dev/null 2>&1 & ) & ); echo started",
        timeout=60,
    )
    assert res.returncode == 0 and res.output == "started\n" and res.exec_time_s < 30
    for arg in ("300.4241", "300.4242", "300.4243", "300.4244"):
        assert host_pids_with(arg) == [], arg
    # ... and the next command sees no trace of them either.
    seen = sb.execute("ps -eo args 2>/dev/null || cat /proc/[0-9]*/cmdline").output
    assert "300.424" not in seen


def test_a_daemon_holding_the_output_does_not_hold_the_command(sb: LocalSandbox) -> None:
    """A backgrounded job that keeps stdout open ends with its command (the pipe then closes)."""
    t0 = time.monotonic()
    res = sb.execute("sleep 300.4251 & echo out", timeout=30)
    assert res.output == "out\n" and not res.timed_out and time.monotonic() - t0 < 20


def test_a_command_can_neither_kill_nor_freeze_the_launcher(sb: LocalSandbox) -> None:
    """The launcher is the namespace's init: signals from inside that it does not handle are
    dropped by the kernel, SIGKILL and SIGSTOP included."""
    assert sb.execute("echo kept > kept.txt").returncode == 0
    for sig in ("KILL", "STOP", "TERM", "INT", "HUP", "QUIT", "USR1", "SEGV"):
        res = sb.execute(f"kill -{sig} 1; echo sent=$?; sleep 0.05; echo alive", timeout=30)
        assert res.returncode == 0 and "alive" in res.output and not res.timed_out, (sig, res)
    res = sb.execute("kill -9 -1; echo after")  # everything else it can see: nobody
    assert res.returncode == 0 and res.output.endswith("after\n")
    after = sb.execute("cat kept.txt; echo again", timeout=10)
    assert after.returncode == 0 and after.output == "kept\nagain\n"
    assert sb._launcher is not None and not sb._launcher.dead  # the same namespace all along


def test_a_launcher_killed_from_outside_is_replaced(sb: LocalSandbox) -> None:
    """Should the launcher die anyway (the machine's OOM killer, an operator), the command in
    flight ends as killed and the next one gets a new namespace over the same files."""
    import os
    import signal

    assert sb.execute("echo kept > kept.txt").returncode == 0
    first = sb._launcher
    assert first is not None
    threading.Timer(0.5, lambda: os.kill(first._init_pid, signal.SIGKILL)).start()
    res = sb.execute("sleep 300.4262; echo survived", timeout=60)
    assert res.returncode == -9 and "survived" not in res.output and res.exec_time_s < 30
    assert host_pids_with("300.4262") == []
    after = sb.execute("cat kept.txt")
    assert after.output == "kept\n" and sb._launcher is not first
    # ... and between two commands, too.
    second = sb._launcher
    assert second is not None and second._init_pid is not None
    os.kill(second._init_pid, signal.SIGKILL)
    second._proc.wait(10)
    assert sb.execute("cat kept.txt").output == "kept\n" and sb._launcher is not second


def test_the_launcher_cannot_be_read_or_traced(sb: LocalSandbox) -> None:
    res = sb.execute(
        "cat /proc/$PPID/environ > /dev/null; echo environ=$?; "
        "head -c 16 /proc/$PPID/mem > /dev/null; echo mem=$?; "
        "cat /proc/$PPID/maps > /dev/null; echo maps=$?; "
        "grep -c . /proc/$PPID/cmdline; echo cmdline=$?"
    )
    out = res.output
    assert "environ=0" not in out and "mem=0" not in out and "maps=0" not in out, out
    assert "cmdline=0" in out  # it is visible, as any process is: nothing secret is on it
    # ptrace needs a dumpable target (or CAP_SYS_PTRACE, which the command does not have)
    traced = sb.execute(
        'python3 -c "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); '
        "r = libc.ptrace(16, os.getppid(), 0, 0); print('attach', r, ctypes.get_errno())\""
    )
    assert traced.output.startswith("attach -1"), traced.output


def test_closing_the_sandbox_ends_a_running_command_at_once(sb: LocalSandbox) -> None:
    done = threading.Event()
    result = {}

    def run() -> None:
        try:
            result["res"] = sb.execute("echo begun; sleep 300.4271", timeout=600)
        except Exception as exc:  # a closed sandbox may say so
            result["exc"] = exc
        done.set()

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while not host_pids_with("300.4271"):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.02)
    sb.close()
    assert done.wait(30), "execute did not return after close"
    worker.join()
    assert host_pids_with("300.4271") == []
    if "res" in result:
        assert result["res"].returncode != 0


def test_descriptors_past_1024_work() -> None:
    """A thousand sandboxes hold a thousand sockets: numbers past select()'s limit of 1024 must
    work (reproduced at 1,024 rollouts: "filedescriptor out of range in select()")."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1400:
        if hard != resource.RLIM_INFINITY and hard < 1400:
            pytest.skip("the open-files limit is below 1,400 here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1400, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        box = LocalSandbox(
            Instance(instance_id="fd", problem_statement="p"), EnvironmentConfig(), SandboxContext()
        )
        box.start()
        try:
            assert box._launcher is not None and box._launcher._sock.fileno() > 1024
            res = box.execute("echo high")
            assert res.returncode == 0 and res.output == "high\n"
            assert box.execute("sleep 5", timeout=0.5).timed_out
            assert box.execute("echo again").output == "again\n"
        finally:
            box.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
