"""Streaming writer of the training-data file (DESIGN §3).

The output is ordinary JSON, laid out with one example per line so that readers (and the
browser's index) can go line by line instead of parsing the whole document. It is written
to a temporary file and renamed at the end: a failure never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentdata_tui.atomic import atomic_writer
from agentdata_tui.records import Example, SummaryBuilder


def dumps(obj: Any) -> str:
    """Compact one-line JSON, UTF-8 kept readable."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


class TrainingDataWriter:
    """Write examples as they come; the summary is recomputed from what was written."""

    def __init__(self, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.metadata = dict(metadata or {})
        self.summary = SummaryBuilder()
        self.count = 0
        self._ctx = None
        self._fh = None

    def __enter__(self) -> TrainingDataWriter:
        self._ctx = atomic_writer(self.path)
        self._fh = self._ctx.__enter__()
        self._fh.write('{"metadata": ' + dumps(self.metadata) + ",\n")
        self._fh.write('"examples": [\n')
        return self

    def write(self, example: Example) -> None:
        assert self._fh is not None, "use TrainingDataWriter as a context manager"
        if self.count:
            self._fh.write(",\n")
        # pydantic-core serialises ~3x faster than json.dumps(model_dump()), and writes NaN as null.
        self._fh.write(example.model_dump_json())
        self.summary.add(example)
        self.count += 1

    def write_all(self, examples: Iterable[Example]) -> int:
        for ex in examples:
            self.write(ex)
        return self.count

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._ctx is not None and self._fh is not None
        if exc_type is None:
            self._fh.write("\n" if self.count else "")
            self._fh.write("],\n")
            self._fh.write('"summary": ' + dumps(self.summary.build()) + "}\n")
        return bool(self._ctx.__exit__(exc_type, exc, tb))


def write_training_data(
    path: str | os.PathLike[str], examples: Iterable[Example], metadata: dict[str, Any] | None = None
) -> int:
    with TrainingDataWriter(path, metadata) as w:
        return w.write_all(examples)
