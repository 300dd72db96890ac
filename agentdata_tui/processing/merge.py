"""``merge``: several runs or files into one training-data file.

Streams every input in turn; only the set of rollout identities ``(run_id, rollout_id)``
(see :func:`agentdata_tui.records.example_ids`) is kept in memory. Two examples are duplicates
only when they are the same rollout (a run's ``X.json`` and its ``X.run/``, or one file given
twice); different runs of the same dataset are all kept. The first copy wins.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentdata_tui.processing import scrub_secrets
from agentdata_tui.processing.export import ExtendedSummary
from agentdata_tui.processing.select import ProgressFn
from agentdata_tui.reader import ExampleSource, open_input
from agentdata_tui.records import example_ids
from agentdata_tui.writer import TrainingDataWriter


@dataclass
class MergeResult:
    written: int = 0
    duplicates: int = 0
    per_source: list[dict[str, Any]] = field(default_factory=list)


def merge(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    metadata_extra: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    all_attempts: bool = False,
) -> MergeResult:
    """Merge ``inputs`` (anything :func:`open_input` reads) into ``output``.

    The output's metadata lists the sources with their own metadata; per-source counts
    (read, kept, duplicates) are known only at the end and go into the summary.
    """
    sources: list[ExampleSource] = [
        open_input(p, all_attempts=all_attempts) for p in inputs
    ]  # fail early on a bad path
    metadata: dict[str, Any] = {
        "merged_from": [
            {"path": str(src.path), "kind": src.kind, "metadata": scrub_secrets(src.metadata)}
            for src in sources
        ],
        **(metadata_extra or {}),
    }
    result = MergeResult()
    seen: set[tuple[str, str]] = set()
    summary = ExtendedSummary()
    with TrainingDataWriter(output, metadata) as writer:
        writer.summary = summary
        for src in sources:
            read = dups = 0
            for ex in src:
                read += 1
                key = example_ids(ex)  # the reader has filled in the ids of older records
                if key in seen:
                    dups += 1
                    continue
                seen.add(key)
                writer.write(ex)
                if progress is not None:
                    progress(writer.count)
            result.duplicates += dups
            result.per_source.append(
                {
                    "path": str(src.path),
                    "examples_read": read,
                    "examples_kept": read - dups,
                    "duplicates": dups,
                }
            )
        result.written = writer.count
        summary.extra["merge"] = {"duplicates_dropped": result.duplicates, "sources": result.per_source}
    return result
