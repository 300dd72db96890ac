"""The browser's index of a training-data input (Textual-free, so it is unit-testable and benchmarkable).

A large file is never held in memory: indexing keeps, per example, only the fields the
table shows and the text filter searches, plus the byte offset of its line; an example is
read from disk (``reader.read_example_at``) only when it is shown or exported. Inputs that
are not one-example-per-line (ijson layouts, mini-swe-agent trajectories) cannot be
addressed by offset, so their examples are kept from the single pass over them.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdata_tui.processing.select import Criteria
from agentdata_tui.reader import ExampleSource, RawItem, open_input, read_example_at
from agentdata_tui.records import Example, with_ids

SEARCH_CHARS = 20_000  # problem-statement characters kept for the text filter


class Row:
    """One example as the table sees it: a few fields and where to find the rest."""

    __slots__ = (
        "pos",
        "instance_id",
        "sample_index",
        "attempt",
        "reward",
        "speedup",
        "success",
        "steps",
        "exit_status",
        "error",
        "search",
        "offset",
        "length",
        "src",
    )

    def __init__(
        self,
        pos: int,
        instance_id: str,
        sample_index: int,
        attempt: int,
        reward: float,
        speedup: float | None,
        success: bool,
        steps: int,
        exit_status: str,
        error: bool,
        search: str,
        offset: int | None,
        length: int | None,
        src: int = 0,
    ) -> None:
        self.pos = pos
        self.src = src  # which input of the index (browse opens several side by side)
        self.instance_id = instance_id
        self.sample_index = sample_index
        self.attempt = attempt
        self.reward = reward
        self.speedup = speedup
        self.success = success
        self.steps = steps
        self.exit_status = exit_status
        self.error = error
        self.search = search
        self.offset = offset
        self.length = length

    def __repr__(self) -> str:
        return f"Row({self.pos}, {self.instance_id!r}, sample={self.sample_index}, reward={self.reward})"


def _number(value: Any, default: float | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value) if math.isfinite(value) else default


def row_from_raw(pos: int, item: RawItem, src: int = 0) -> Row:
    """Only the row fields, without validating the whole example (validation happens on show)."""
    d = item.data if isinstance(item.data, dict) else {}
    steps = d.get("steps")
    if isinstance(steps, list) and steps:
        n_steps = len(steps)
    else:
        messages = d.get("messages")
        n_steps = (
            sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
            if isinstance(messages, list)
            else 0
        )
    instance_id = str(d.get("instance_id", "?"))
    problem = d.get("problem_statement")
    problem = problem[:SEARCH_CHARS] if isinstance(problem, str) else ""
    sample = d.get("sample_index")
    attempt = d.get("attempt")
    return Row(
        pos=pos,
        instance_id=instance_id,
        sample_index=sample if isinstance(sample, int) else 0,
        attempt=attempt if isinstance(attempt, int) else 1,
        reward=_number(d.get("reward"), 0.0) or 0.0,
        speedup=_number(d.get("speedup"), None),
        success=bool(d.get("success")),
        steps=n_steps,
        exit_status=str(d.get("exit_status") or ""),
        error=d.get("error") is not None,
        search=(instance_id + "\n" + problem).lower(),
        offset=item.offset,
        length=item.length,
        src=src,
    )


@dataclass(frozen=True)
class RowFilter:
    """The browser's filter bar: what the table shows, and therefore what gets exported."""

    min_reward: float | None = None
    successful_only: bool = False
    text: str = ""

    def matches(self, row: Row) -> bool:
        if self.min_reward is not None and row.reward < self.min_reward:
            return False
        if self.successful_only and not row.success:
            return False
        return not self.text or self.text.lower() in row.search

    @property
    def active(self) -> bool:
        return self.min_reward is not None or self.successful_only or bool(self.text)

    def criteria(self) -> Criteria:
        """The same conditions as the processing commands' selection (what exports record)."""
        return Criteria(
            min_reward=self.min_reward, successful_only=self.successful_only, text=self.text or None
        )

    def describe(self) -> str:
        parts = []
        if self.min_reward is not None:
            parts.append(f"reward ≥ {self.min_reward:g}")
        if self.successful_only:
            parts.append("successful only")
        if self.text:
            parts.append(f"text '{self.text}'")
        return " · ".join(parts) if parts else "none (every example)"


SORT_KEYS: dict[str, Callable[[Row], Any]] = {
    "file order": lambda r: r.pos,
    "instance": lambda r: (r.instance_id, r.sample_index, r.attempt),
    "sample": lambda r: (r.sample_index, r.instance_id),
    "reward": lambda r: r.reward,
    "speedup": lambda r: -math.inf if r.speedup is None else r.speedup,
    "success": lambda r: r.success,
    "steps": lambda r: r.steps,
    "exit status": lambda r: r.exit_status,
}


def input_labels(paths: list[Path]) -> list[str]:
    """Short names telling the inputs apart: the file name, with its folder when names repeat."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.parent.name}/{p.name}" for p in paths]


class ExampleIndex:
    """Rows of one input or several (runs or models to compare), filled by :meth:`build` (run
    it in a worker thread), examples on demand."""

    def __init__(
        self, path: str | Path | list[str | Path], *, cache_size: int = 16, all_attempts: bool = False
    ) -> None:
        paths = [Path(x) for x in path] if isinstance(path, (list, tuple)) else [Path(path)]
        if not paths:
            raise ValueError("no input")
        self.paths = paths
        self.path = paths[0]
        # raises InputError for bad input, naming the file; a run folder shows its latest
        # attempts unless all_attempts
        self.sources: list[ExampleSource] = [open_input(p, all_attempts=all_attempts) for p in paths]
        self.source = self.sources[0]
        self.labels = input_labels(paths)
        self.data_file = self.source.data_file
        self.by_offset = all(src.line_indexable for src in self.sources)
        self.rows: list[Row] = []
        self.complete = False
        self._held: dict[int, Example] = {}  # pos -> Example, for inputs without offsets
        self._cache: OrderedDict[int, Example] = OrderedDict()
        self._cache_size = cache_size

    @property
    def multiple(self) -> bool:
        return len(self.sources) > 1

    @property
    def metadata(self) -> dict[str, Any]:
        if not self.multiple:
            return self.source.metadata
        return {
            "inputs": [
                {"path": str(p), "metadata": src.metadata}
                for p, src in zip(self.paths, self.sources, strict=True)
            ]
        }

    def build(
        self,
        batch_rows: int = 2000,
        batch_seconds: float = 0.1,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[list[Row]]:
        """Index the input, yielding new rows in batches (by count or by time, whichever first).

        The first batch is yielded after the first row so the table shows something at once.
        """
        batch: list[Row] = []
        last = time.monotonic()
        first = True
        for src, item in self._raw_items():
            if cancelled():
                return
            pos = len(self.rows)
            if not self.sources[src].line_indexable or item.offset is None:
                item.where = item.where or str(self.paths[src])
                self._held[pos] = self.sources[src].example_of(item)
            row = row_from_raw(pos, item, src)
            self.rows.append(row)
            batch.append(row)
            now = time.monotonic()
            if first or len(batch) >= batch_rows or now - last >= batch_seconds:
                yield batch
                batch = []
                last = now
                first = False
        if batch:
            yield batch
        self.complete = True

    def _raw_items(self) -> Iterator[tuple[int, RawItem]]:
        for src, source in enumerate(self.sources):
            for item in source.iter_raw():
                yield src, item

    def build_all(self) -> ExampleIndex:
        for _ in self.build():
            pass
        return self

    def load(self, row: Row) -> Example:
        """The whole example of a row: from the small LRU cache, memory, or its line on disk."""
        cached = self._cache.get(row.pos)
        if cached is not None:
            self._cache.move_to_end(row.pos)
            return cached
        held = self._held.get(row.pos)
        if held is not None:
            return held
        assert row.offset is not None
        example = self._read_at(row)
        self._cache[row.pos] = example
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return example

    def _read_at(self, row: Row) -> Example:
        """The example of a row from its line on disk, with its ids (derived for older records)."""
        assert row.offset is not None
        source = self.sources[row.src]
        ex = read_example_at(source.data_file, row.offset, row.length)
        return with_ids(ex, lambda: source.run_id)

    def iter_examples(self, rows: Iterable[Row]) -> Iterator[Example]:
        """Examples of ``rows`` read one at a time (exports and statistics stream them)."""
        for row in rows:
            held = self._held.get(row.pos)
            if held is not None:
                yield held
            else:
                assert row.offset is not None
                yield self._read_at(row)

    def select(
        self, flt: RowFilter, sort: str = "file order", reverse: bool = False, upto: int | None = None
    ) -> list[Row]:
        """The filtered, sorted rows among the first ``upto`` (the index may still be growing)."""
        source = self.rows[:upto] if upto is not None else self.rows
        rows = [r for r in source if flt.matches(r)] if flt.active else list(source)
        if sort != "file order" or reverse:
            rows.sort(key=SORT_KEYS[sort], reverse=reverse)
        return rows
