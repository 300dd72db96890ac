"""Regrade: evaluate recorded patches again, without running the agent (issue 4 §4).

For when an evaluator changed or a benchmark was flaky. Any input the processing commands
accept is read as a stream; examples are graded by ``workers`` threads and written in input
order to a training-data file (at most ``2 × workers`` examples held at once, so memory stays
flat). Like a run, one failing evaluation does not stop the others: that example is written
with the error and reward 0. The previous result is kept under ``evaluation_info.previous``.

Instances come from the dataset by ``instance_id``: an example alone lacks the ``eval`` block.
Without ``--dataset`` the data names its own (issue 9): the ``dataset_file`` of its metadata —
and of each example's, so a merge of several runs regrades too — resolved against the data
file's folder, then the current one, and checked against the recorded ``dataset_sha256``; when
that fails nothing is graded (one line says why). Only an eval server with its own
``--dataset`` can do without any (it looks instances up by id).

Attempts that ended in ModelError, SandboxError or Error were never graded by the runner (there
is nothing meaningful to grade); they keep their result unless ``regrade_errors``.
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
from agentdata_tui.dataset import Dataset, Instance, load_dataset
from agentdata_tui.errors import InputError, UserError
from agentdata_tui.interfaces import Evaluator
from agentdata_tui.reader import open_input
from agentdata_tui.records import Example
from agentdata_tui.writer import TrainingDataWriter

PREVIOUS_KEYS = ("reward", "success", "speedup", "error")
NOT_GRADED = ("ModelError", "SandboxError", "Error")  # the runner's own rule: nothing to grade


@dataclass
class RecordedDatasets:
    """The datasets the examples came from, by sha256, as their metadata names them."""

    by_sha: dict[str, Dataset]
    default: Dataset | None = None  # the file's own (examples without a hash of their own)

    def dataset_of(self, ex: Example) -> Dataset | None:
        sha = (ex.metadata or {}).get("dataset_sha256")
        if isinstance(sha, str) and sha in self.by_sha:
            return self.by_sha[sha]
        return self.default

    @property
    def instances(self) -> list[Instance]:
        return [i for ds in self.by_sha.values() for i in ds.instances]


def _find_dataset(name: str, sha: str | None, bases: list[Path]) -> Dataset:
    p = Path(name)
    candidates = [p] if p.is_absolute() else [b / p for b in bases]
    if p.is_absolute():  # moved with the data: look beside it too (the hash says whether it is the one)
        candidates += [b / p.name for b in bases]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        tried = ", ".join(dict.fromkeys(str(c) for c in candidates))
        raise UserError(
            f"regrade: the data's dataset_file '{name}' is not found (tried {tried}); pass --dataset"
        )
    try:
        ds = load_dataset(found)
    except InputError as exc:
        raise UserError(f"regrade: the data's dataset: {exc}") from None
    if sha and ds.sha256 != sha:
        raise UserError(
            f"regrade: {found} is not the dataset the data was made with (sha256 {ds.sha256[:12]}..., "
            f"recorded {sha[:12]}...); pass --dataset {found} to grade against it anyway"
        )
    return ds


def datasets_from_metadata(input_path: str | Path, *, all_attempts: bool = False) -> RecordedDatasets | None:
    """The datasets the data's metadata names (None: it names none), every instance found, or a
    one-line UserError."""
    source = open_input(input_path, all_attempts=all_attempts)
    meta = source.metadata or {}
    data_dir = source.data_file.resolve().parent
    bases = list(dict.fromkeys([data_dir, source.path.resolve().parent, Path.cwd()]))
    file_name, file_sha = meta.get("dataset_file"), meta.get("dataset_sha256")
    wanted: dict[str | None, set[str]] = {}  # sha (None: unknown) -> file names
    needed: dict[str | None, set[str]] = {}  # sha -> instance ids
    for ex in source:
        em = ex.metadata or {}
        name, sha = em.get("dataset_file") or file_name, em.get("dataset_sha256") or file_sha
        if not name:
            if wanted or needed:
                raise UserError(f"regrade: example {ex.instance_id} names no dataset_file; pass --dataset")
            continue
        wanted.setdefault(sha, set()).add(str(name))
        needed.setdefault(sha, set()).add(ex.instance_id)
    if not wanted:
        return None
    by_sha: dict[str, Dataset] = {}
    for sha, names in wanted.items():
        ds = _find_dataset(sorted(names)[0], sha, bases)
        by_sha[ds.sha256] = ds
        missing = sorted(needed[sha] - set(ds.by_id()))
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise UserError(
                f"regrade: instance '{missing[0]}'{more} not in the dataset {ds.path}; pass --dataset"
            )
    default = by_sha.get(file_sha) if file_sha else None
    if default is None and file_name and len(by_sha) == 1:
        default = next(iter(by_sha.values()))
    return RecordedDatasets(by_sha, default)


@dataclass
class RegradeStats:
    total: int = 0
    changed: int = 0  # reward or success differs from the recorded one
    failed: int = 0  # evaluation raised: written with the error, reward 0
    missing_instance: int = 0  # instance_id not in the dataset (counted in failed too)
    kept: int = 0  # ModelError/SandboxError/Error attempts kept as they were (not regrade_errors)
    reward_sum: float = 0.0
    elapsed_s: float = 0.0
    failures: list[str] = field(default_factory=list)  # the first few, for the report

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "changed": self.changed,
            "failed": self.failed,
            "missing_instance": self.missing_instance,
            "kept": self.kept,
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


def _located(inst: Instance | None, ds: Dataset | None) -> Instance | None:
    """The instance with its repo_path made absolute against its own dataset's folder."""
    if inst is None or ds is None or not inst.repo_path:
        return inst
    return inst.model_copy(update={"repo_path": str(ds.repo_dir(inst))})


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
    dataset: Dataset | RecordedDatasets | None,
    *,
    regrade_errors: bool = False,
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
    if isinstance(dataset, Dataset):
        recorded = RecordedDatasets({dataset.sha256: dataset}, dataset)
        explicit = dataset
    else:
        recorded, explicit = dataset, None
    ids: dict[int, dict[str, Instance]] = {}

    def lookup(ex: Example) -> tuple[Instance | None, bool]:
        """(the instance to grade, whether a dataset was searched for it)."""
        ds = explicit or (recorded.dataset_of(ex) if recorded else None)
        if ds is None:
            return instance_for(ex, None), False
        by_id = ids.setdefault(id(ds), ds.by_id())
        return _located(by_id.get(ex.instance_id), ds), True

    stats = RegradeStats()
    run_id = f"regrade-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    metadata = dict(source.metadata or {})
    metadata["regrade"] = {
        "run_id": run_id,
        "input": str(input_path),
        "dataset_file": str(explicit.path) if explicit else None,
        "dataset_sha256": explicit.sha256 if explicit else None,
        "datasets_from_metadata": sorted(str(d.path) for d in recorded.by_sha.values())
        if recorded and not explicit
        else None,
        "regrade_errors": regrade_errors,
        "workers": workers,
        "tool_version": __version__,
        "started_at": _now_iso(),
        **(settings or {}),
    }
    t0 = time.monotonic()
    window: deque[tuple[Example, Future | None, bool]] = deque()

    def finish(writer: TrainingDataWriter, ex: Example, fut: Future | None, missing: bool) -> None:
        if fut is None:  # not graded: kept as it was
            writer.write(ex)
            stats.total += 1
            stats.kept += 1
            stats.reward_sum += ex.reward or 0.0
            stats.elapsed_s = time.monotonic() - t0
            if progress is not None:
                progress(stats)
            return
        new, failure = fut.result()
        writer.write(new)
        stats.total += 1
        stats.reward_sum += new.reward
        if failure is not None:
            stats.failed += 1
            stats.missing_instance += missing
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
                if ex.exit_status in NOT_GRADED and not regrade_errors:
                    window.append((ex, None, False))
                else:
                    inst, searched = lookup(ex)
                    fut = pool.submit(regrade_example, ex, inst, evaluator, run_id=run_id)
                    window.append((ex, fut, searched and inst is None))
                while len(window) >= 2 * workers:
                    finish(writer, *window.popleft())
            while window:
                finish(writer, *window.popleft())
    except BaseException:
        # Interrupted or failed: cancel what has not started, and end what runs quickly by
        # removing its containers (a local evaluation ends at its command timeout).
        for _, fut, _ in window:
            if fut is not None:
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
