"""Regrade: evaluate recorded patches again, without running the agent (issue 4 §4).

For when an evaluator changed or a benchmark was flaky. Any input the processing commands
accept is read as a stream; examples are graded by ``workers`` threads and written in input
order to a training-data file (at most ``2 × workers`` examples held at once, so memory stays
flat). Like a run, one failing evaluation does not stop the others: that example is written
with the error and reward 0. The previous result is kept under ``evaluation_info.previous``.

Instances come from the dataset by ``instance_id``: an example alone lacks the ``eval`` block.
Only an eval server with its own ``--dataset`` can do without (it looks instances up by id).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agentdata_tui import __version__
from agentdata_tui.dataset import Dataset, Instance
from agentdata_tui.interfaces import Evaluator
from agentdata_tui.reader import open_input
from agentdata_tui.records import Example
from agentdata_tui.writer import TrainingDataWriter

PREVIOUS_KEYS = ("reward", "success", "speedup", "error")


@dataclass
class RegradeStats:
    total: int = 0
    changed: int = 0  # reward or success differs from the recorded one
    failed: int = 0  # evaluation raised: written with the error, reward 0
    missing_instance: int = 0  # instance_id not in the dataset (counted in failed too)
    reward_sum: float = 0.0
    elapsed_s: float = 0.0
    failures: list[str] = field(default_factory=list)  # the first few, for the report

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "changed": self.changed,
            "failed": self.failed,
            "missing_instance": self.missing_instance,
            "average_reward": round(self.reward_sum / self.total, 6) if self.total else 0.0,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def previous_result(ex: Example) -> dict[str, Any]:
    prev: dict[str, Any] = {k: getattr(ex, k) for k in PREVIOUS_KEYS}
    prev["evaluation_info"] = ex.evaluation_info
    return prev


def instance_for(ex: Example, by_id: dict[str, Instance] | None) -> Instance | None:
    """The dataset's instance; without a dataset (an eval server with its own), the example's fields."""
    if by_id is not None:
        return by_id.get(ex.instance_id)
    return Instance(instance_id=ex.instance_id, problem_statement=ex.problem_statement or "")


def regrade_example(
    ex: Example, instance: Instance | None, evaluator: Evaluator, *, run_id: str
) -> tuple[Example, str | None]:
    """The example with a fresh evaluation (or the failure recorded); returns (example, failure)."""
    prev = previous_result(ex)
    t0 = time.monotonic()
    failure: str | None = None
    if instance is None:
        failure = f"instance_id '{ex.instance_id}' is not in the dataset"
    else:
        try:
            res = evaluator.evaluate(
                instance.to_dict(), ex.git_diff or "", run_id=run_id, sample_index=ex.sample_index
            )
        except Exception as exc:  # eval server down, evaluation sandbox failed, ...
            failure = f"evaluation failed: {exc}"
    update: dict[str, Any]
    if failure is None:
        info = dict(res.info or {})
        info["previous"] = prev
        info["regraded_at"] = _now_iso()
        info["regrade_s"] = round(time.monotonic() - t0, 3)
        update = {
            "reward": float(res.reward),
            "success": bool(res.success),
            "speedup": res.speedup,
            "evaluation_info": info,
            # An earlier evaluation failure is resolved; a rollout's own error stays.
            "error": None if (ex.error or "").startswith("evaluation failed") else ex.error,
        }
    else:
        update = {
            "reward": 0.0,
            "success": False,
            "speedup": None,
            "evaluation_info": {
                "status": "error",
                "error": failure,
                "previous": prev,
                "regraded_at": _now_iso(),
            },
            "error": failure,
        }
    meta = dict(ex.metadata or {})
    if failure is not None:
        meta["error_kind"] = "evaluation"
    elif (ex.error or "").startswith("evaluation failed"):
        meta["error_kind"] = None
    update["metadata"] = meta
    return ex.model_copy(update=update), failure


def regrade(
    input_path: str | Path,
    output_path: str | Path,
    evaluator: Evaluator,
    dataset: Dataset | None,
    *,
    workers: int = 4,
    settings: dict[str, Any] | None = None,
    progress: Callable[[RegradeStats], None] | None = None,
    stop: threading.Event | None = None,
    all_attempts: bool = False,
) -> RegradeStats:
    """Regrade every example of ``input_path`` into ``output_path`` (written atomically).

    A run folder gives its latest attempt per (instance, sample) unless ``all_attempts``; each
    example keeps its ``run_id`` and ``rollout_id`` (derived by the reader for older records)."""
    source = open_input(input_path, all_attempts=all_attempts)
    by_id = dataset.by_id() if dataset is not None else None
    stats = RegradeStats()
    run_id = f"regrade-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    metadata = dict(source.metadata or {})
    metadata["regrade"] = {
        "run_id": run_id,
        "input": str(input_path),
        "dataset_file": str(dataset.path) if dataset else None,
        "dataset_sha256": dataset.sha256 if dataset else None,
        "workers": workers,
        "tool_version": __version__,
        "started_at": _now_iso(),
        **(settings or {}),
    }
    t0 = time.monotonic()
    window: deque[tuple[Example, Future]] = deque()

    def finish(writer: TrainingDataWriter, ex: Example, fut: Future) -> None:
        new, failure = fut.result()
        writer.write(new)
        stats.total += 1
        stats.reward_sum += new.reward
        if failure is not None:
            stats.failed += 1
            stats.missing_instance += by_id is not None and ex.instance_id not in by_id
            if len(stats.failures) < 10:
                stats.failures.append(f"{ex.instance_id}#{ex.sample_index}: {failure}")
        elif (new.reward, new.success) != (ex.reward, ex.success):
            stats.changed += 1
        stats.elapsed_s = time.monotonic() - t0
        if progress is not None:
            progress(stats)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="regrade")
    try:
        with TrainingDataWriter(output_path, metadata) as writer:
            for ex in source:
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                fut = pool.submit(regrade_example, ex, instance_for(ex, by_id), evaluator, run_id=run_id)
                window.append((ex, fut))
                while len(window) >= 2 * workers:
                    finish(writer, *window.popleft())
            while window:
                finish(writer, *window.popleft())
    except BaseException:
        # Interrupted or failed: cancel what has not started, and end what runs quickly by
        # removing its containers (a local evaluation ends at its command timeout).
        for _, fut in window:
            fut.cancel()
        docker_mod = sys.modules.get("agentdata_tui.sandbox.docker")
        if docker_mod is not None:
            docker_mod.close_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    stats.elapsed_s = time.monotonic() - t0
    return stats


class ProgressPrinter:
    """One line on stderr about once a second (and at the end): done, changed, failed, rate."""

    def __init__(self, stream=None, interval: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last = 0.0
        self._printed = -1

    def __call__(self, stats: RegradeStats) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self.line(stats)

    def final(self, stats: RegradeStats) -> None:
        """The closing line, unless the last progress line already said the same."""
        if stats.total != self._printed:
            self.line(stats)

    def line(self, stats: RegradeStats) -> None:
        self._printed = stats.total
        rate = stats.total / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
        print(
            f"regrade: {stats.total} done, {stats.changed} changed, {stats.failed} failed "
            f"({rate:.2f}/s, {stats.elapsed_s:.0f}s)",
            file=self.stream,
            flush=True,
        )


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
