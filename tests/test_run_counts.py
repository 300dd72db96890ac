"""Issue 8 item 8: the counts reducer over the event log, and the CLI progress on top of it."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

from servers.model_server import ModelServer, ScriptedResponder
from test_runner import SUBMIT, jsonl, make_runner, read_events, scripts_for, write_dataset

from agentdata_tui.dataset import load_dataset
from agentdata_tui.runner.counts import RunCounts
from agentdata_tui.runner.progress import PlainProgress


def ev(type_: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "t": 0.0, "type": type_, **fields}


def started(rid: str, iid: str, sample: int = 0, attempt: int = 1) -> dict[str, Any]:
    return ev(
        "rollout_started", rollout_id=rid, instance_id=iid, sample_index=sample, attempt=attempt, worker=0
    )


def finished(rid: str, iid: str, *, success: bool = True, error: str | None = None, attempt: int = 1, **kw):
    return ev(
        "rollout_finished",
        rollout_id=rid,
        instance_id=iid,
        sample_index=0,
        attempt=attempt,
        exit_status=kw.get("exit_status", "Submitted"),
        reward=1.0 if success else 0.0,
        success=success,
        error=error,
    )


def test_a_retried_attempt_replaces_the_one_before() -> None:
    c = RunCounts()
    c.apply([ev("run_started", run_id="r", total=2, pending=2, done_before=0)])
    c.apply(
        [
            started("a1", "a"),
            finished("a1", "a", success=False, error="ModelError: x", exit_status="ModelError"),
        ]
    )
    c.apply([started("a2", "a", attempt=2), finished("a2", "a", attempt=2)])
    c.apply([started("b1", "b"), finished("b1", "b")])
    f = c.figures()
    assert (f.done, f.total, f.retried) == (2, 2, 1)
    assert (f.session.succeeded, f.session.errors, f.session.success_rate) == (2, 0, 1.0)


def test_cancelled_is_neither_done_nor_failed() -> None:
    c = RunCounts()
    c.apply([ev("run_started", run_id="r", total=5, pending=5, done_before=0)])
    for i in range(4):
        c.apply([started(f"r{i}", f"t{i}"), finished(f"r{i}", f"t{i}")])
    c.apply(
        [
            started("r4", "t4"),
            ev("rollout_finished", rollout_id="r4", exit_status="Cancelled", cancelled=True),
        ]
    )
    c.apply([ev("run_finished", stopped=True)])
    f = c.figures()
    assert (f.done, f.cancelled, f.session.failed, f.session.errors, f.status) == (4, 1, 0, 0, "stopped")


def test_run_started_resets_the_session_and_honours_done_before() -> None:
    """The issue's repro: a resumed run showed `finished` and `done 2/2` with a rollout in flight."""
    c = RunCounts()
    c.apply([ev("run_started", run_id="r", total=3, pending=3, done_before=0)])
    c.apply([started("x1", "a"), finished("x1", "a"), started("x2", "b"), finished("x2", "b", success=False)])
    c.apply([started("x3", "c")])  # killed: never finished
    c.apply([ev("run_finished", stopped=True)])
    c.apply([ev("run_started", run_id="r", total=3, pending=1, done_before=2), started("y1", "c")])
    f = c.figures()
    assert (f.status, f.done, f.running, f.done_before, f.sessions) == ("running", 2, 1, 2, 2)
    assert f.session.done == 0 and f.whole.done == 2 and f.whole.success_rate == 0.5
    c.apply([finished("y1", "c")])
    f = c.figures()
    assert (f.done, f.session.done, f.session.success_rate) == (3, 1, 1.0)
    assert f.whole.success_rate == 2 / 3, "the whole run's figures are not this session's"
    # done_before may hold pairs whose events a kill lost: it is the runner's count that counts
    c2 = RunCounts()
    c2.apply([ev("run_started", run_id="r", total=4, pending=1, done_before=3)])
    assert c2.figures().done == 3


def test_cli_progress_of_a_retried_run_never_counts_past_the_total(tmp_path: Path) -> None:
    """The issue's repro: `[4/3] … finished: 4/3 done` when an attempt was retried."""
    ds = load_dataset(write_dataset(tmp_path, 3))
    out = tmp_path / "x.json"
    buf = io.StringIO()
    with ModelServer(ScriptedResponder(scripts_for(3))) as server:
        server.add_faults(("error", 400, "invalid request: injected"))
        runner = make_runner(server, ds, out, workers=1, retry_errors=1)
        runner.listeners.append(PlainProgress(buf, every_s=3600))
        outcome = runner.run()
    assert outcome.counts["retried"] == 1
    text = buf.getvalue()
    assert "[4/3]" not in text and "[3/3]" in text
    assert text.strip().splitlines()[-1].startswith("finished: 3/3 done, success 100%")
    # the dashboard folds the same log to the same figures
    c = RunCounts()
    c.apply(read_events(out.with_suffix(".run")))
    f = c.figures()
    assert (f.done, f.total, f.retried, f.status, f.whole.success_rate) == (3, 3, 1, "finished", 1.0)


class _StopAfterFirst:
    """Stops the run when its first rollout finishes, then lets the held requests go."""

    def __init__(self, runner, gate: threading.Event) -> None:
        self.runner, self.gate = runner, gate

    def run_started(self, total: int, pending: int, done_before: int) -> None: ...

    def rollout_finished(self, example, elapsed_s: float) -> None:
        self.runner.request_stop()
        self.gate.set()

    def run_finished(self, counts, elapsed_s: float, stopped: bool) -> None: ...


class _HoldOthers:
    """Scripted replies; every task but task-000 waits for ``gate`` (so it is in flight at the stop)."""

    def __init__(self, inner, gate: threading.Event) -> None:
        self.inner, self.gate = inner, gate

    def __call__(self, body):
        if "[task-000]" not in json.dumps(body.get("messages") or []):
            self.gate.wait(120)
        return self.inner(body)


def test_a_stopped_then_resumed_run_counts_what_the_file_holds(tmp_path: Path) -> None:
    """The issue's repro: after a stop `5/5 done` while the file held 4; after --resume mixed rates."""
    ds = load_dataset(write_dataset(tmp_path, 4))
    out = tmp_path / "s.json"
    scripts = scripts_for(4, steps=6)
    scripts["[task-000]"] = [scripts["[task-000]"][-2], SUBMIT]  # one quick rollout
    gate = threading.Event()
    with ModelServer(_HoldOthers(ScriptedResponder(scripts), gate)) as server:
        runner = make_runner(server, ds, out, workers=2)
        runner.listeners.append(_StopAfterFirst(runner, gate))
        first = runner.run()
        assert first.stopped
        c = RunCounts()
        c.apply(read_events(out.with_suffix(".run")))
        f = c.figures()
        recorded = len(jsonl(out.with_suffix(".run") / "examples.jsonl"))
        # Those running at the stop are cancelled: one, or two when the first rollout's worker had
        # already gone on to the next task while its patch was graded (evaluation overlap).
        cancelled = [e for e in read_events(out.with_suffix(".run")) if e.get("exit_status") == "Cancelled"]
        assert f.done == recorded == 1 and f.cancelled == len(cancelled) >= 1 and f.status == "stopped"
        buf = io.StringIO()
        again = make_runner(server, ds, out, workers=2, resume=True)
        again.listeners.append(PlainProgress(buf, every_s=3600))
        again.run()
    text = buf.getvalue()
    assert f"({recorded} before this session)" in text and "whole run: success 100%" in text
    assert f"this session: {4 - recorded} done" in text
    c = RunCounts()
    c.apply(read_events(out.with_suffix(".run")))
    f = c.figures()
    assert (f.done, f.total, f.status, f.sessions, f.done_before) == (4, 4, "finished", 2, recorded)
