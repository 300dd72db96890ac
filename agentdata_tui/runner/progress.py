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

SUMMARY_EVERY_S = 10.0


class _Stats:
    def __init__(self) -> None:
        self.total = 0
        self.done_before = 0
        self.done = 0
        self.successful = 0
        self.reward_sum = 0.0
        self.errors = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def add(self, ex: Example) -> None:
        with self.lock:
            self.done += 1
            self.successful += bool(ex.success)
            self.reward_sum += ex.reward or 0.0
            self.errors += ex.error is not None

    def line(self) -> str:
        with self.lock:
            n = self.done
            rate = self.successful / n if n else 0.0
            avg = self.reward_sum / n if n else 0.0
            elapsed = time.monotonic() - self.started
            left = self.total - self.done_before - n
            eta = elapsed / n * left if n and left > 0 else 0.0
            return (
                f"{self.done_before + n}/{self.total} done, success {rate:.0%}, avg reward {avg:.3f}, "
                f"errors {self.errors}, elapsed {_hms(elapsed)}, ETA {_hms(eta) if n else '?'}"
            )


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

    def run_started(self, total: int, pending: int, done_before: int) -> None:
        self.stats.total, self.stats.done_before = total, done_before
        self.stats.started = time.monotonic()
        again = f" ({done_before} already done)" if done_before else ""
        self._print(f"run: {pending} rollouts to go of {total}{again}")

    def rollout_finished(self, example: Example, elapsed_s: float) -> None:
        self.stats.add(example)
        with self.stats.lock:
            n = self.stats.done_before + self.stats.done
        self._print(f"[{n}/{self.stats.total}] {describe(example, elapsed_s)}")

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

    def run_started(self, total: int, pending: int, done_before: int) -> None:
        self.stats.total, self.stats.done_before = total, done_before
        self.progress.start()
        self.task = self.progress.add_task(
            "rollouts", total=total, completed=done_before, rate="-", avg="-", errors=0
        )

    def rollout_finished(self, example: Example, elapsed_s: float) -> None:
        self.stats.add(example)
        s = self.stats
        with s.lock:
            rate = f"{s.successful / s.done:.0%}" if s.done else "-"
            avg = f"{s.reward_sum / s.done:.3f}" if s.done else "-"
            errors = s.errors
        if example.error:
            self.progress.console.print(
                f"[yellow]{describe(example, elapsed_s)}[/]", markup=True, highlight=False
            )
        self.progress.update(self.task, advance=1, rate=rate, avg=avg, errors=errors)

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
