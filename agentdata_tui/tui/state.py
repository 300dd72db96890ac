"""The dashboard's state, folded from ``events.jsonl`` v1 events (Textual-free, unit-testable).

The dashboard only ever calls :meth:`DashboardState.apply` with a batch of events and reads
the result at most ten times a second; nothing here knows about widgets. The counts are the
run's reducer's (``runner.counts.RunCounts``, the same the CLI progress shows): pairs counted
once, a retry replacing its attempt, a cancelled rollout counted apart, each ``run_started``
(a resume) beginning a new session. This module adds what only a dashboard shows: workers,
rollouts and their steps. Memory stays bounded on long runs: finished rollouts beyond
``keep_finished`` are forgotten (the browser reads them from ``examples.jsonl`` anyway).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agentdata_tui.runner.counts import CANCELLED, RunCounts


@dataclass
class StepView:
    step: int
    command: str
    returncode: int | None
    assistant: str
    observation: str
    prompt_tokens: int
    completion_tokens: int
    model_latency_s: float | None
    exec_time_s: float | None


@dataclass
class RolloutView:
    rollout_id: str
    instance_id: str
    sample_index: int
    attempt: int
    worker: str
    started_t: float
    problem_statement: str = ""
    steps: list[StepView] = field(default_factory=list)
    finished: dict[str, Any] | None = None
    finished_t: float | None = None

    @property
    def status(self) -> str:
        if self.finished is None:
            return "running"
        if self.finished.get("exit_status") == CANCELLED:
            return "cancelled"
        if self.finished.get("error"):
            return "error"
        return "succeeded" if self.finished.get("success") else "failed"


@dataclass
class WorkerView:
    worker: str
    rollout_id: str | None = None
    instance_id: str = ""
    sample_index: int = 0
    step: int = 0
    last_command: str = ""
    started_t: float | None = None
    status: str = "idle"


@dataclass
class Metrics:
    done: int
    total: int
    running: int
    succeeded: int
    failed: int
    errors: int
    cancelled: int
    done_before: int
    success_rate: float
    average_reward: float
    rollouts_per_min: float
    tokens_per_s: float
    elapsed_s: float
    eta_s: float | None
    finished: bool
    stopped: bool = False
    status: str = "running"  # the reducer's: waiting | running | finished | stopped | failed | aborted
    reason: str | None = None


class DashboardState:
    """Everything the dashboard shows, from events only (a live run or a finished one)."""

    def __init__(
        self, clock: Callable[[], float] = time.time, keep_finished: int = 200, recent: int = 50
    ) -> None:
        self.clock = clock
        self.run_id: str | None = None
        self.total = 0
        self.workers_n = 0
        self.settings: dict[str, Any] = {}
        self.started_t: float | None = None
        self.finished_t: float | None = None
        self.run_finished: dict[str, Any] | None = None
        self.counts = RunCounts()
        self.tokens = 0
        self.session_tokens = 0  # completion tokens since this session's run_started
        self.finished_seen = 0  # rollout_finished events, cancelled ones too
        self.paused = False  # from the runner's control events
        self.control_workers: int | None = None
        self.events_seen = 0
        self.last_t: float | None = None
        # Set by the dashboard when the run's process is gone without run_finished (killed):
        # time then stops at its last event instead of growing forever.
        self.stale = False
        self.workers: dict[str, WorkerView] = {}
        self.rollouts: OrderedDict[str, RolloutView] = OrderedDict()
        self.recent: deque[RolloutView] = deque(maxlen=recent)
        self.dirty_workers: set[str] = set()
        self.dirty_rollouts: set[str] = set()
        self._keep_finished = keep_finished
        self._finished_order: deque[str] = deque()

    # -- folding -------------------------------------------------------------
    def apply(self, events: Iterable[dict[str, Any]]) -> None:
        events = list(events)
        self.counts.apply(events)
        for ev in events:
            self.events_seen += 1
            t = ev.get("t")
            if isinstance(t, (int, float)):
                self.last_t = float(t)
            handler = getattr(self, "_on_" + str(ev.get("type")), None)
            if handler is not None:
                handler(ev)

    def _t(self, ev: dict[str, Any]) -> float:
        t = ev.get("t")
        return float(t) if isinstance(t, (int, float)) else self.clock()

    def _on_run_started(self, ev: dict[str, Any]) -> None:
        """A run, or a new session of it (a resume): what was running before is gone."""
        self.run_id = ev.get("run_id")
        self.total = int(ev.get("total") or 0)
        self.workers_n = int(ev.get("workers") or 0)
        self.settings = ev.get("settings") or {}
        self.started_t = self._t(ev)
        self.session_tokens = 0
        self.paused = False
        self.control_workers = None
        self.run_finished = None
        self.finished_t = None
        for w in self.workers.values():
            if w.status == "running":
                w.status = "stopped"
        self.workers = {}
        self.dirty_workers.add("*")

    def _on_rollout_started(self, ev: dict[str, Any]) -> None:
        rid = str(ev.get("rollout_id"))
        worker = str(ev.get("worker", "?"))
        t = self._t(ev)
        view = RolloutView(
            rollout_id=rid,
            instance_id=str(ev.get("instance_id", "?")),
            sample_index=int(ev.get("sample_index") or 0),
            attempt=int(ev.get("attempt") or 1),
            worker=worker,
            started_t=t,
            problem_statement=str(ev.get("problem_statement") or ""),
        )
        self.rollouts[rid] = view
        w = self.workers.setdefault(worker, WorkerView(worker))
        w.rollout_id, w.instance_id, w.sample_index = rid, view.instance_id, view.sample_index
        w.step, w.last_command, w.started_t, w.status = 0, "", t, "running"
        self.dirty_workers.add(worker)
        self.dirty_rollouts.add(rid)

    def _on_step(self, ev: dict[str, Any]) -> None:
        rid = str(ev.get("rollout_id"))
        view = self.rollouts.get(rid)
        step = StepView(
            step=int(ev.get("step") or 0),
            command=str(ev.get("command") or ""),
            returncode=ev.get("returncode"),
            assistant=str(ev.get("assistant") or ""),
            observation=str(ev.get("observation") or ""),
            prompt_tokens=int(ev.get("prompt_tokens") or 0),
            completion_tokens=int(ev.get("completion_tokens") or 0),
            model_latency_s=ev.get("model_latency_s"),
            exec_time_s=ev.get("exec_time_s"),
        )
        self.tokens += step.completion_tokens
        self.session_tokens += step.completion_tokens
        if view is None:
            return
        view.steps.append(step)
        self.dirty_rollouts.add(rid)
        w = self.workers.get(view.worker)
        if w is not None and w.rollout_id == rid:
            w.step = step.step
            w.last_command = step.command
            self.dirty_workers.add(view.worker)

    def _on_rollout_finished(self, ev: dict[str, Any]) -> None:
        rid = str(ev.get("rollout_id"))
        view = self.rollouts.get(rid)
        if view is None:  # started before we began to follow (should not happen with a full log)
            view = RolloutView(
                rid, str(ev.get("instance_id", "?")), int(ev.get("sample_index") or 0), 1, "?", self._t(ev)
            )
            self.rollouts[rid] = view
        view.finished = ev
        view.finished_t = self._t(ev)
        self.finished_seen += 1
        self.recent.appendleft(view)
        w = self.workers.get(view.worker)
        if w is not None and w.rollout_id == rid:
            w.status = view.status
            self.dirty_workers.add(view.worker)
        self.dirty_rollouts.add(rid)
        self._finished_order.append(rid)
        while len(self._finished_order) > self._keep_finished:
            old = self._finished_order.popleft()
            if all(w.rollout_id != old for w in self.workers.values()):
                self.rollouts.pop(old, None)

    def _on_control(self, ev: dict[str, Any]) -> None:
        """The runner's answer to a control command: its state after it."""
        if isinstance(ev.get("paused"), bool):
            self.paused = ev["paused"]
        if isinstance(ev.get("workers"), int) and not isinstance(ev.get("workers"), bool):
            self.control_workers = ev["workers"]

    def _on_run_finished(self, ev: dict[str, Any]) -> None:
        self.run_finished = ev
        self.finished_t = self._t(ev)
        for w in self.workers.values():
            if w.status == "running":
                w.status = "stopped"
                self.dirty_workers.add(w.worker)

    # -- reading -------------------------------------------------------------
    @property
    def running(self) -> int:
        return sum(1 for w in self.workers.values() if w.status == "running")

    def now(self) -> float:
        if self.finished_t is not None:
            return self.finished_t
        if self.stale and self.last_t is not None:
            return self.last_t
        return self.clock()

    def elapsed(self, since: float | None) -> float:
        return max(0.0, self.now() - since) if since is not None else 0.0

    @property
    def done(self) -> int:
        return self.counts.figures().done

    def metrics(self) -> Metrics:
        f = self.counts.figures()
        elapsed = self.elapsed(self.started_t)
        session_done = f.session.done
        rate = session_done / elapsed if elapsed > 0 else 0.0
        remaining = f.remaining
        stopped = f.status == "stopped"
        if stopped or f.status in ("failed", "aborted"):
            eta: float | None = None
        elif f.finished or remaining == 0:
            eta = 0.0
        elif self.stale:
            eta = None
        else:
            eta = remaining / rate if rate > 0 else None
        whole = f.whole
        return Metrics(
            done=f.done,
            total=f.total or self.total,
            running=self.running,
            succeeded=whole.succeeded,
            failed=whole.failed,
            errors=whole.errors,
            cancelled=f.cancelled,
            done_before=f.done_before,
            success_rate=whole.success_rate,
            average_reward=whole.average_reward,
            rollouts_per_min=rate * 60.0,
            tokens_per_s=self.session_tokens / elapsed if elapsed > 0 else 0.0,
            elapsed_s=elapsed,
            eta_s=eta,
            finished=f.finished,
            stopped=stopped,
            status=f.status,
            reason=f.reason,
        )

    def take_dirty(self) -> tuple[set[str], set[str]]:
        workers, rollouts = self.dirty_workers, self.dirty_rollouts
        self.dirty_workers, self.dirty_rollouts = set(), set()
        return workers, rollouts


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
