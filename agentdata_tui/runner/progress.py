"""Progress of a run on the terminal: a Rich bar in a terminal, plain lines everywhere else.

Under nohup, CI or a pipe there is nobody to redraw a bar for, and escape codes would litter
the log: one line per finished rollout and a summary every 10 seconds instead. Both are run
listeners (see ``runner.RunListener``), called from worker threads.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from agentdata_tui.records import Example
from agentdata_tui.runner.counts import Figures, RunCounts, Tally

SUMMARY_EVERY_S = 10.0


class _Stats:
    """The progress line, from the run's figures (:class:`~agentdata_tui.runner.counts.RunCounts`).

    Attached to a runner, the figures are the runner's own (folded from its events); used alone
    (library code, tests), the listener calls feed an own reducer the same events.
    """

    def __init__(self) -> None:
        self.counts = RunCounts()
        self.own = True
        self.started = time.monotonic()

    def attach(self, counts: RunCounts) -> None:
        self.counts, self.own = counts, False

    def started_run(self, total: int, pending: int, done_before: int) -> None:
        self.started = time.monotonic()
        if self.own:
            self.counts.apply_one(
                {"type": "run_started", "total": total, "pending": pending, "done_before": done_before}
            )

    def add(self, ex: Example) -> None:
        if self.own:
            self.counts.apply_one(
                {
                    "type": "rollout_finished",
                    "instance_id": ex.instance_id,
                    "sample_index": ex.sample_index,
                    "attempt": ex.attempt,
                    "exit_status": ex.exit_status,
                    "reward": ex.reward,
                    "success": ex.success,
                    "error": ex.error,
                }
            )

    def figures(self) -> Figures:
        return self.counts.figures()

    def line(self) -> str:
        f = self.figures()
        s = f.session
        elapsed = time.monotonic() - self.started
        left = f.remaining
        eta = elapsed / s.done * left if s.done and left > 0 else 0.0
        cancelled = f", cancelled {f.cancelled}" if f.cancelled else ""
        timing = f"elapsed {_hms(elapsed)}, ETA {_hms(eta) if s.done or not left else '?'}"
        if not f.resumed:
            return f"{f.done}/{f.total} done, {_tally(s)}{cancelled}, {timing}"
        return (
            f"{f.done}/{f.total} done ({f.done_before} before this session); whole run: {_tally(f.whole)}; "
            f"this session: {s.done} done, {_tally(s)}{cancelled}; {timing}"
        )


def _tally(t: Tally) -> str:
    return f"success {t.success_rate:.0%}, avg reward {t.average_reward:.3f}, errors {t.errors}"


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def describe(ex: Example, elapsed_s: float) -> str:
    tag = f"{ex.instance_id}#{ex.sample_index}" + (f" (attempt {ex.attempt})" if ex.attempt > 1 else "")
    bits = [tag, ex.exit_status or "?", f"reward {ex.reward:.2f}"]
    if ex.speedup is not None:
        bits.append(f"speedup {ex.speedup:.2f}x")
    bits.append("success" if ex.success else "no success")
    bits.append(f"{ex.model_calls} calls, {elapsed_s:.1f}s")
    if ex.error:
        bits.append("error: " + ex.error.splitlines()[0][:160])
    return " | ".join(bits)


class PlainProgress:
    """One line per finished rollout, a summary every 10 s; never an escape code."""

    def __init__(self, stream: IO[str] | None = None, every_s: float = SUMMARY_EVERY_S) -> None:
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self.stats = _Stats()
        self._last_summary = time.monotonic()
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def attach(self, counts: RunCounts) -> None:
        self.stats.attach(counts)

    def run_started(self, total: int, pending: int, done_before: int) -> None:
        self.stats.started_run(total, pending, done_before)
        again = f" ({done_before} already done)" if done_before else ""
        self._print(f"run: {pending} rollouts to go of {total}{again}")

    def rollout_finished(self, example: Example, elapsed_s: float) -> None:
        self.stats.add(example)
        f = self.stats.figures()
        self._print(f"[{f.done}/{f.total}] {describe(example, elapsed_s)}")

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_summary >= self.every_s:
            self._last_summary = now
            self._print("progress: " + self.stats.line())

    def run_finished(self, counts: dict[str, Any], elapsed_s: float, stopped: bool) -> None:
        head = "stopped" if stopped else "finished"
        self._print(f"{head}: " + self.stats.line())


class RichProgress:
    """A live bar: done/total, success rate, average reward, ETA."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=stream or sys.stdout)
        self.stats = _Stats()
        self.progress = Progress(
            TextColumn("[bold]rollouts"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "success {task.fields[rate]}  avg reward {task.fields[avg]}  errors {task.fields[errors]}"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = None

    def attach(self, counts: RunCounts) -> None:
        self.stats.attach(counts)

    def run_started(self, total: int, pending: int, done_before: int) -> None:
        self.stats.started_run(total, pending, done_before)
        self.progress.start()
        self.task = self.progress.add_task(
            "rollouts", total=total, completed=done_before, rate="-", avg="-", errors=0
        )

    def rollout_finished(self, example: Example, elapsed_s: float) -> None:
        self.stats.add(example)
        f = self.stats.figures()
        t = f.whole if f.resumed else f.session  # the whole run's, as the bar counts the whole run
        rate = f"{t.success_rate:.0%}" if t.done else "-"
        avg = f"{t.average_reward:.3f}" if t.done else "-"
        if example.error:
            self.progress.console.print(
                f"[yellow]{describe(example, elapsed_s)}[/]", markup=True, highlight=False
            )
        self.progress.update(self.task, completed=f.done, rate=rate, avg=avg, errors=t.errors)

    def tick(self) -> None:
        return None

    def run_finished(self, counts: dict[str, Any], elapsed_s: float, stopped: bool) -> None:
        self.progress.stop()
        head = "stopped" if stopped else "finished"
        self.console.print(f"{head}: " + self.stats.line(), highlight=False)


def make_progress(stream: IO[str] | None = None) -> PlainProgress | RichProgress:
    out = stream or sys.stdout
    isatty = getattr(out, "isatty", lambda: False)
    return RichProgress(out) if isatty() else PlainProgress(out)
