"""Issue 8 items 1, 2 and 11: any output name, one writer per run folder (real processes), one
orchestration place. Runs talk real HTTP to the loopback model server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_runner import jsonl, scripts_for, write_dataset

from agentdata_tui.procs import pid_alive
from agentdata_tui.reader import open_input
from agentdata_tui.runner.store import LOCK, RunLock, RunLocked, lock_holder

REPO = Path(__file__).resolve().parents[1]


class GateResponder:
    """Scripted replies, each held until ``gate`` opens: a run stays live, holding its lock,
    for exactly as long as the test needs (no sleeps)."""

    def __init__(self, n: int) -> None:
        self.inner = ScriptedResponder(scripts_for(n))
        self.arrived = threading.Event()
        self.gate = threading.Event()

    def __call__(self, body: dict[str, Any]):
        self.arrived.set()
        assert self.gate.wait(120), "the test never opened the gate"
        return self.inner(body)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["PYTHONPATH"] = str(REPO)
    return env


def _cmd(dataset: Path, server: ModelServer, out: Path | str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agentdata_tui",
        "generate-multi",
        "--dataset",
        str(dataset),
        "--base-url",
        server.base_url,
        "--model",
        "test-model",
        "--output",
        str(out),
        "--workers",
        "2",
        *extra,
    ]


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=300)


# -- item 1: any output name ------------------------------------------------------------------


def test_output_named_run_json_keeps_its_data_and_force_moves_only_the_run(tmp_path: Path) -> None:
    """The issue's repro: `--output DIR/run.json` made DIR the run folder (0 examples, exit 0) and
    `--force` then renamed the whole of DIR; in the current folder it ended in a traceback."""
    ds = write_dataset(tmp_path, 2)
    work = tmp_path / "DIR"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    out = work / "run.json"
    with ModelServer(ScriptedResponder(scripts_for(2))) as server:
        res = _run(_cmd(ds, server, out))
        assert res.returncode == 0, res.stderr
        assert len(list(open_input(out))) == 2
        assert (work / "run.run" / "examples.jsonl").exists() and (work / "notes.txt").exists()
        res = _run(_cmd(ds, server, out, "--force"))
        assert res.returncode == 0, res.stderr
        names = sorted(p.name for p in work.iterdir())
        assert "notes.txt" in names and "run.json" in names and "run.run" in names
        assert any(n.startswith("run.run.old-") for n in names)
        assert any(n.startswith("run.json.old-") for n in names), "the stale X.json is set aside too"
        assert len(list(open_input(out))) == 2
        # in the current folder, by a relative name
        res = _run(_cmd(ds, server, "run.json"), cwd=work)
        assert res.returncode == 2 and "--resume" in res.stderr and "Traceback" not in res.stderr
        res = _run(_cmd(ds, server, "run.json", "--force"), cwd=work)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert (work / "notes.txt").read_text() == "mine"
        # a folder as --output: one line
        res = _run(_cmd(ds, server, work))
        assert (
            res.returncode == 2 and "is a folder" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        )


# -- item 2: one writer per run folder -----------------------------------------------------------


def test_a_live_run_refuses_resume_force_and_a_second_run(tmp_path: Path) -> None:
    """The issue's repro: `--force` 4 s after a live run moved its folder from under it."""
    ds = write_dataset(tmp_path, 2)
    out = tmp_path / "live.json"
    run_dir = tmp_path / "live.run"
    gate = GateResponder(2)
    with ModelServer(gate) as server:
        proc = subprocess.Popen(
            _cmd(ds, server, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert gate.arrived.wait(120), "the run never asked the model"
            assert lock_holder(run_dir) == proc.pid
            assert (run_dir / LOCK).read_text().strip() == str(proc.pid)
            for extra in ((), ("--resume",), ("--force",), ("--resume", "--force")):
                res = _run(_cmd(ds, server, out, *extra))
                assert res.returncode == 2, (extra, res.stderr)
                assert f"pid {proc.pid}" in res.stderr and len(res.stderr.strip().splitlines()) == 1, (
                    res.stderr
                )
            assert not list(tmp_path.glob("live.run.old-*")), "nothing was moved"
            gate.gate.set()
            assert proc.wait(120) == 0
        finally:
            gate.gate.set()
            if proc.poll() is None:
                proc.kill()
    assert lock_holder(run_dir) is None, "the lock goes with its holder"
    assert len(jsonl(run_dir / "examples.jsonl")) == 2


def test_two_resumes_started_together_one_runs(tmp_path: Path) -> None:
    """The issue's repro: two `--resume` started together both ran and wrote attempts twice."""
    ds = write_dataset(tmp_path, 4)
    out = tmp_path / "twice.json"
    with ModelServer(ScriptedResponder(scripts_for(4))) as server:
        first = _run(_cmd(ds, server, out, "--max-tasks", "1"))
        assert first.returncode == 0, first.stderr
        gate = GateResponder(4)
        server.responder = gate
        procs = [
            subprocess.Popen(
                _cmd(ds, server, out, "--resume", "--force", "--max-tasks", "4"),  # 3 more tasks
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            assert gate.arrived.wait(120)
            # the loser exits by itself while the winner waits at the gate
            loser = None
            while loser is None:
                for p in procs:
                    try:
                        p.wait(0.1)
                    except subprocess.TimeoutExpired:
                        continue
                    loser = p
            _, err = loser.communicate()
            assert loser.returncode == 2 and "is in use" in err, err
            gate.gate.set()
            winner = next(p for p in procs if p is not loser)
            assert winner.wait(120) == 0
            assert f"pid {winner.pid}" in err
        finally:
            gate.gate.set()
            for p in procs:
                if p.poll() is None:
                    p.kill()
    lines = jsonl(tmp_path / "twice.run" / "examples.jsonl")
    keys = [(d["instance_id"], d["sample_index"], d["attempt"]) for d in lines]
    assert len(keys) == len(set(keys)) == 4, "no attempt written twice"


def test_a_killed_holders_lock_is_taken_over(tmp_path: Path) -> None:
    ds = write_dataset(tmp_path, 2)
    out = tmp_path / "k.json"
    run_dir = tmp_path / "k.run"
    gate = GateResponder(2)
    with ModelServer(gate) as server:
        proc = subprocess.Popen(
            _cmd(ds, server, out),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert gate.arrived.wait(120)
            os.killpg(proc.pid, signal.SIGKILL)  # the run and any child it was forking
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert (run_dir / LOCK).read_text().strip() == str(proc.pid), "the dead holder's pid is still inside"
        deadline = time.monotonic() + 30  # a child forked at the kill shares the lock until it execs
        while lock_holder(run_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lock_holder(run_dir) is None
        gate.gate.set()
        res = _run(_cmd(ds, server, out, "--resume"))
    assert res.returncode == 0, res.stderr
    assert len(list(open_input(out))) == 2
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_run_lock_in_process_and_across_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "x.run"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from agentdata_tui.runner.store import RunLock; "
            f"RunLock(Path({str(run_dir)!r})).acquire(); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert lock_holder(run_dir) == child.pid
        with pytest.raises(RunLocked, match=f"pid {child.pid}"):
            RunLock(run_dir).acquire()
    finally:
        child.communicate("", timeout=30)
    assert lock_holder(run_dir) is None
    mine = RunLock(run_dir).acquire()
    try:
        assert lock_holder(run_dir) == os.getpid()
    finally:
        mine.release()


# -- item 11: one orchestration place, one pid helper -----------------------------------------------


def test_cli_and_demo_call_the_core_orchestration() -> None:
    cli_generate = (REPO / "agentdata_tui" / "cli" / "generate.py").read_text()
    demo = (REPO / "agentdata_tui" / "demo" / "run.py").read_text()
    assert "def execute_run" not in cli_generate and "runner.execute import" in cli_generate
    assert "agentdata_tui.cli" not in demo and "runner.execute import" in demo
    sources = [p.read_text() for p in (REPO / "agentdata_tui").rglob("*.py")]
    assert sum("def pid_alive" in s or "def _pid_alive" in s or "def _alive(" in s for s in sources) == 1


def test_pid_alive_says_no_to_a_zombie_and_to_the_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
    assert not pid_alive(proc.pid)
    proc.wait()
    assert not pid_alive(proc.pid) and not pid_alive(None) and not pid_alive(0)
    assert pid_alive(os.getpid())


def test_the_refusal_names_a_holder_that_has_not_written_its_pid_yet(tmp_path: Path) -> None:
    """Between a runner's flock and its pid write, another start must still name it (not
    'pid unknown', nor the previous holder's pid left in the file)."""
    run_dir = tmp_path / "x.run"
    run_dir.mkdir()
    (run_dir / LOCK).write_text("999999999\n")  # a previous, dead holder's pid
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(run_dir / LOCK)!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(0.3)\n"
            "os.pwrite(fd, f'{os.getpid()}\\n'.ljust(24).encode(), 0)\nsys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_holder(run_dir) == holder.pid
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
            RunLock(run_dir).acquire()
    finally:
        holder.communicate("\n", timeout=30)
