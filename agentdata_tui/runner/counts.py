"""The figures of a run, folded from its event log (DESIGN §3, issue 8 item 8). Textual-free.

One reducer for every display of a run: the CLI progress (fed in-process, event by event) and
the TUI dashboard (fed from ``events.jsonl``). What it counts:

- (instance_id, sample_index) **pairs**, never attempts: a retried attempt replaces the one
  before it, so ``done`` never exceeds ``total``;
- a rollout a stop cancelled (``rollout_finished`` with ``exit_status: "Cancelled"``) is counted
  apart, as ``cancelled``: neither done nor failed (it was never recorded and runs again);
- each ``run_started`` begins a new **session** (a resume): the session's state (running
  rollouts, its counts, an earlier ``run_finished``) is reset, so a resumed run shows live;
- **whole-run** figures (``done`` includes the pairs done before this session, ``done_before``
  of ``run_started``) are kept apart from **this session's** (``session``), each labelled.

Usage: ``counts = RunCounts(); counts.apply(events); f = counts.figures()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CANCELLED = "Cancelled"

Pair = tuple[str, int]


@dataclass(frozen=True)
class Outcome:
    """How a pair's latest recorded attempt ended."""

    attempt: int
    success: bool
    error: bool
    reward: float

    @property
    def status(self) -> str:  # succeeded | failed | error
        return "error" if self.error else ("succeeded" if self.success else "failed")


@dataclass(frozen=True)
class Tally:
    """Counts over a set of pairs. ``done == succeeded + failed + errors``."""

    done: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: int = 0
    reward_sum: float = 0.0

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.done if self.done else 0.0

    @property
    def average_reward(self) -> float:
        return self.reward_sum / self.done if self.done else 0.0

    @staticmethod
    def of(outcomes: Iterable[Outcome]) -> Tally:
        done = succeeded = failed = errors = 0
        reward = 0.0
        for o in outcomes:
            done += 1
            reward += o.reward
            if o.error:
                errors += 1
            elif o.success:
                succeeded += 1
            else:
                failed += 1
        return Tally(done, succeeded, failed, errors, reward)

    def as_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": self.errors,
            "success_rate": round(self.success_rate, 6),
            "average_reward": round(self.average_reward, 6),
        }


@dataclass(frozen=True)
class Figures:
    """What a display shows. ``done`` and ``whole`` are the whole run's; ``session`` this session's.

    ``whole`` tallies the pairs whose outcome the event log tells (all sessions); ``done`` is
    ``done_before + session.done``, the runner's own count of recorded pairs, capped at ``total``.
    """

    total: int
    done: int
    done_before: int
    pending: int
    running: int
    cancelled: int
    retried: int
    whole: Tally
    session: Tally
    sessions: int
    status: str  # waiting | running | finished | stopped | failed | aborted
    run_id: str | None = None
    reason: str | None = None  # why a failed run failed (run_finished's "error")

    @property
    def finished(self) -> bool:
        return self.status in ("finished", "stopped", "failed", "aborted")

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.done)

    @property
    def resumed(self) -> bool:
        return self.sessions > 1 or self.done_before > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "done_before": self.done_before,
            "pending": self.pending,
            "running": self.running,
            "cancelled": self.cancelled,
            "retried": self.retried,
            "whole_run": self.whole.as_dict(),
            "this_session": self.session.as_dict(),
            "status": self.status,
        }


@dataclass
class _Session:
    started_t: float | None = None
    total: int = 0
    pending: int = 0
    done_before: int = 0
    pairs: dict[Pair, Outcome] = field(default_factory=dict)
    running: dict[str, Pair] = field(default_factory=dict)  # rollout_id -> pair
    cancelled: int = 0
    retried: int = 0
    finished: dict[str, Any] | None = None


class RunCounts:
    """Folds v1 events into :class:`Figures`. Thread-safe; unknown event types are ignored."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.sessions = 0
        self.pairs: dict[Pair, Outcome] = {}  # every session's latest outcome per pair
        self.session = _Session()
        self._lock = threading.Lock()

    def apply(self, events: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            for ev in events:
                handler = _HANDLERS.get(str(ev.get("type")))
                if handler is not None:
                    handler(self, ev)

    def apply_one(self, event: dict[str, Any]) -> None:
        self.apply((event,))

    # -- handlers ---------------------------------------------------------------------
    def _run_started(self, ev: dict[str, Any]) -> None:
        self.sessions += 1
        self.run_id = ev.get("run_id") or self.run_id
        total = _int(ev.get("total"))
        done_before = ev.get("done_before")
        if not isinstance(done_before, int):  # an older log: what earlier sessions recorded
            done_before = min(total, len(self.pairs)) if total else len(self.pairs)
        pending = ev.get("pending")
        self.session = _Session(
            started_t=_float(ev.get("t")),
            total=total,
            pending=pending if isinstance(pending, int) else max(0, total - done_before),
            done_before=done_before,
        )

    def _rollout_started(self, ev: dict[str, Any]) -> None:
        pair = (str(ev.get("instance_id")), _int(ev.get("sample_index")))
        self.session.running[str(ev.get("rollout_id"))] = pair

    def _rollout_finished(self, ev: dict[str, Any]) -> None:
        s = self.session
        rid = str(ev.get("rollout_id"))
        started = s.running.pop(rid, None)
        if ev.get("exit_status") == CANCELLED or ev.get("cancelled"):
            s.cancelled += 1
            return
        iid = ev.get("instance_id")
        pair = (str(iid), _int(ev.get("sample_index"))) if iid is not None else started
        if pair is None:
            return
        reward = ev.get("reward")
        outcome = Outcome(
            attempt=_int(ev.get("attempt"), 1),
            success=bool(ev.get("success")),
            error=bool(ev.get("error")),
            reward=float(reward)
            if isinstance(reward, (int, float)) and not isinstance(reward, bool)
            else 0.0,
        )
        if pair in s.pairs:
            s.retried += 1  # a later attempt of the same pair replaces the earlier one
        s.pairs[pair] = outcome
        self.pairs[pair] = outcome

    def _run_finished(self, ev: dict[str, Any]) -> None:
        self.session.finished = ev
        self.session.running.clear()

    # -- reading ----------------------------------------------------------------------
    def figures(self) -> Figures:
        with self._lock:
            s = self.session
            if self.sessions == 0:
                status = "waiting"
            elif s.finished is None:
                status = "running"
            else:
                status = _finished_status(s.finished)
            total = s.total
            done = s.done_before + len(s.pairs)
            if total:
                done = min(done, total)
            reason = s.finished.get("error") if s.finished else None
            return Figures(
                total=total,
                done=done,
                done_before=s.done_before,
                pending=s.pending,
                running=len(s.running),
                cancelled=s.cancelled,
                retried=s.retried,
                whole=Tally.of(self.pairs.values()),
                session=Tally.of(s.pairs.values()),
                sessions=self.sessions,
                status=status,
                run_id=self.run_id,
                reason=reason if isinstance(reason, str) else None,
            )

    def outcome(self, instance_id: str, sample_index: int) -> Outcome | None:
        with self._lock:
            return self.pairs.get((instance_id, sample_index))


def _finished_status(ev: dict[str, Any]) -> str:
    status = ev.get("status")
    if isinstance(status, str) and status:
        return status
    return "stopped" if ev.get("stopped") else "finished"


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_HANDLERS = {
    "run_started": RunCounts._run_started,
    "rollout_started": RunCounts._rollout_started,
    "rollout_finished": RunCounts._rollout_finished,
    "run_finished": RunCounts._run_finished,
}
