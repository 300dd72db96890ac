"""Live control (issue 13 §3): ``ctl PATH pause|resume|workers N|cancel ID|requeue-errors``.

A real runner (loopback model server, local sandbox, built-in evaluator) runs in a thread;
commands go through the run folder's control channel exactly as ``ctl`` and the dashboard send
them, and every assertion waits on something the run does (events, requests, the pause gate).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_runner import SUBMIT, make_runner, scripts_for, write_dataset

from agentdata_tui.dataset import load_dataset
from agentdata_tui.errors import UserError
from agentdata_tui.events import EventTail
from agentdata_tui.runner.control import parse_command, send_command


def wait_until(pred, timeout: float = 60.0, what: str = "condition", show=None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f": {show()}" if show else ""))
        time.sleep(0.02)


class Events:
    """The run's event log as the test sees it grow."""

    def __init__(self, run_dir: Path) -> None:
        self.tail = EventTail(run_dir / "events.jsonl")
        self.all: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        self.all.extend(self.tail.read())
        return self.all

    def of(self, type_: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.read() if e["type"] == type_ and all(e.get(k) == v for k, v in match.items())]


def start(runner) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.setdefault("outcome", runner.run()), daemon=True)
    t.start()
    return t, result


def long_script(iid: str, steps: int) -> list[str]:
    return [f"THOUGHT: step.\n\n```bash\necho {iid} step\n```"] * steps + [SUBMIT]


def test_parse_command_errors() -> None:
    assert parse_command("workers", "8") == {"command": "workers", "workers": 8}
    assert parse_command("requeue_errors") == {"command": "requeue-errors"}
    for cmd, arg, msg in [
        ("workers", "x", "number"),
        ("workers", "0", "at least 1"),
        ("cancel", None, "id of a running rollout"),
        ("pause", "3", "takes no argument"),
        ("explode", None, "unknown control command"),
    ]:
        with pytest.raises(UserError, match=msg):
            parse_command(cmd, arg)


def test_pause_holds_every_model_request_then_resume_finishes(tmp_path: Path) -> None:
    n = 6
    ds = load_dataset(write_dataset(tmp_path, n))
    out = tmp_path / "pause.json"
    run_dir = out.with_suffix(".run")
    with ModelServer(ScriptedResponder(scripts_for(n, steps=8)), latency=0.1) as server:
        runner = make_runner(server, ds, out, workers=3)
        t, result = start(runner)
        wait_until(lambda: server.request_count >= 4, what="rollouts under way")
        answer = send_command(out, "pause")
        assert answer["ok"] and answer["paused"] is True and answer["detail"].startswith("paused")
        ev = Events(run_dir)
        live = runner.control.live()
        assert live, "rollouts were running when the pause came"
        # Every running rollout reaches the gate before its next request; none is in flight.
        wait_until(
            lambda: runner.control.held == len(runner.control.live()) > 0,
            what="rollouts held",
            show=lambda: (runner.control.held, runner.control.live(), server.request_count),
        )
        wait_until(lambda: server.in_flight == 0, what="requests already sent to finish")
        held_at = server.request_count
        started_at = len(ev.of("rollout_started"))
        assert runner.control.live() <= live  # no rollout started while paused
        # Still held after the control reader has answered another command (a full round trip).
        assert send_command(out, "workers", "3")["ok"]
        assert server.request_count == held_at and server.in_flight == 0
        assert len(ev.of("rollout_started")) == started_at
        # The real command, as a user types it.
        proc = subprocess.run(
            [sys.executable, "-m", "agentdata_tui", "ctl", str(out), "resume"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0 and proc.stdout.startswith("ok: resumed"), proc.stdout + proc.stderr
        assert "paused: no" in proc.stdout
        t.join(120)
    assert not t.is_alive()
    outcome = result["outcome"]
    assert outcome.exit_code == 0 and outcome.written == n and outcome.counts["successful"] == n
    controls = ev.of("control")
    assert [c["command"] for c in controls] == ["pause", "workers", "resume"]
    assert controls[0]["paused"] is True and controls[0]["ok"] is True and controls[0]["id"]


def test_workers_n_changes_concurrency(tmp_path: Path) -> None:
    n = 16
    ds = load_dataset(write_dataset(tmp_path, n))
    out = tmp_path / "workers.json"
    ev = Events(out.with_suffix(".run"))
    with ModelServer(ScriptedResponder(scripts_for(n, steps=3)), latency=0.1) as server:
        runner = make_runner(server, ds, out, workers=1)
        t, result = start(runner)
        wait_until(lambda: server.request_count >= 3, what="the first rollout")
        assert server.max_in_flight == 1  # one rollout (one model request) at a time so far
        up = send_command(out, "workers", "4")
        assert up["ok"] and up["workers"] == 4
        wait_until(lambda: server.max_in_flight >= 4, what="four model requests at once")
        down = send_command(out, "workers", "2")
        assert down["ok"] and down["workers"] == 2 and down["detail"] == "workers 4 → 2"
        # The surplus threads end as their rollouts do; from then on at most two requests at once.
        wait_until(lambda: runner._n_workers == 2, what="the surplus workers to end")
        with server._lock:
            server.max_in_flight = server.in_flight
        seen = server.request_count
        wait_until(lambda: server.request_count >= seen + 6, what="requests after the change")
        assert server.max_in_flight <= 2
        t.join(180)
    assert not t.is_alive() and result["outcome"].written == n
    events = ev.read()
    assert len({e["worker"] for e in events if e["type"] == "rollout_started"}) >= 4
    assert [e["workers"] for e in events if e["type"] == "control"] == [4, 2]


def test_cancel_ends_exactly_that_rollout(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 3))
    out = tmp_path / "cancel.json"
    run_dir = out.with_suffix(".run")
    scripts = scripts_for(3, steps=2)
    scripts["[task-001]"] = long_script("task-001", 400)
    ev = Events(run_dir)
    with ModelServer(ScriptedResponder(scripts), latency=0.05) as server:
        runner = make_runner(server, ds, out, workers=3)
        t, result = start(runner)
        wait_until(lambda: ev.of("rollout_started", instance_id="task-001"), what="task-001 to start")
        target = ev.of("rollout_started", instance_id="task-001")[0]["rollout_id"]
        wait_until(lambda: ev.of("step", rollout_id=target), what="task-001's first step")
        unknown = send_command(out, "cancel", "no-such-rollout")
        assert unknown["ok"] is False and "no running rollout" in unknown["detail"]
        answer = send_command(out, "cancel", target)
        assert answer["ok"] and answer["rollout_id"] == target
        t.join(120)
    assert not t.is_alive()
    outcome = result["outcome"]
    assert outcome.counts["cancelled"] == 1 and outcome.written == 2 and not outcome.stopped
    fin = {e["rollout_id"]: e for e in ev.read() if e["type"] == "rollout_finished"}
    assert fin[target]["exit_status"] == "Cancelled" and fin[target]["cancelled_by"] == "ctl"
    assert [e for e in fin.values() if e["exit_status"] == "Cancelled"] == [fin[target]]
    assert len(ev.of("step", rollout_id=target)) < 400
    lines = [json.loads(x) for x in (run_dir / "examples.jsonl").read_text().splitlines()]
    assert sorted(d["instance_id"] for d in lines) == ["task-000", "task-002"]
    assert all(d["success"] for d in lines)


def test_requeue_errors_reruns_the_errored_pairs(tmp_path: Path, unisolated) -> None:
    marker = tmp_path / "first-attempt-done"
    setup = f"test -e {marker} || {{ touch {marker}; echo flaky; exit 1; }}"
    ds = load_dataset(write_dataset(tmp_path, 2, extra={"task-000": {"setup_command": setup}}))
    out = tmp_path / "requeue.json"
    run_dir = out.with_suffix(".run")
    scripts = scripts_for(2)
    scripts["[task-001]"] = long_script("task-001", 400)  # keeps the run going
    ev = Events(run_dir)
    with ModelServer(ScriptedResponder(scripts), latency=0.05) as server:
        runner = make_runner(server, ds, out, workers=2)
        t, result = start(runner)
        wait_until(lambda: ev.of("rollout_finished", instance_id="task-000"), what="task-000's error")
        assert ev.of("rollout_finished", instance_id="task-000")[0]["exit_status"] == "SandboxError"
        answer = send_command(out, "requeue-errors")
        assert answer["ok"] and answer["requeued"] == 1
        wait_until(lambda: len(ev.of("rollout_finished", instance_id="task-000")) == 2, what="the re-run")
        # Nothing errored is left: a second requeue finds nothing.
        assert send_command(out, "requeue-errors")["requeued"] == 0
        long_id = ev.of("rollout_started", instance_id="task-001")[0]["rollout_id"]
        assert send_command(out, "cancel", long_id)["ok"]
        t.join(120)
    assert not t.is_alive()
    lines = [json.loads(x) for x in (run_dir / "examples.jsonl").read_text().splitlines()]
    attempts = [
        (d["attempt"], d["exit_status"], d["success"]) for d in lines if d["instance_id"] == "task-000"
    ]
    assert attempts == [(1, "SandboxError", False), (2, "Submitted", True)]
    assert result["outcome"].counts["requeued"] == 1


def test_ctl_without_a_live_run_is_a_one_line_error(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 1))
    out = tmp_path / "done.json"
    with ModelServer(ScriptedResponder(scripts_for(1))) as server:
        make_runner(server, ds, out, workers=1).run()
    for argv, msg in [
        ([str(out), "pause"], "no run is going there (status finished)"),
        ([str(tmp_path / "nothing.json"), "pause"], "no run folder"),
        ([str(out), "workers", "zero"], "workers needs a number"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "agentdata_tui", "ctl", *argv], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2 and msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
