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
    ) -> None:
        self.pos = pos
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


def row_from_raw(pos: int, item: RawItem) -> Row:
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


class ExampleIndex:
    """Rows of an input, filled by :meth:`build` (run it in a worker thread), examples on demand."""

    def __init__(self, path: str | Path, *, cache_size: int = 16, all_attempts: bool = False) -> None:
        self.path = Path(path)
        # raises InputError for bad input; a run folder shows its latest attempts unless all_attempts
        self.source: ExampleSource = open_input(self.path, all_attempts=all_attempts)
        self.data_file = self.source.data_file
        self.by_offset = self.source.line_indexable
        self.rows: list[Row] = []
        self.complete = False
        self._held: dict[int, Example] = {}  # pos -> Example, for inputs without offsets
        self._cache: OrderedDict[int, Example] = OrderedDict()
        self._cache_size = cache_size

    @property
    def metadata(self) -> dict[str, Any]:
        return self.source.metadata

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
        for item in self.source.iter_raw():
            if cancelled():
                return
            pos = len(self.rows)
            if not self.by_offset or item.offset is None:
                item.where = item.where or str(self.path)
                self._held[pos] = self.source.example_of(item)
            row = row_from_raw(pos, item)
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
        ex = read_example_at(self.data_file, row.offset, row.length)
        return with_ids(ex, lambda: self.source.run_id)

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
