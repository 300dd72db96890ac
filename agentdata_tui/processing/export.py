"""Exports: filtered training data and SFT JSONL (trajectories: :mod:`.trajectory`, re-exported).

Every export streams (one example in memory at a time) and writes through
:mod:`agentdata_tui.atomic`, so a failure half-way (e.g. a truncated input) leaves no partial
output and an older output file intact.

``examples`` is any iterable of :class:`Example` (the CLI passes a filtered reader, the TUI its
already-filtered selection), or a zero-argument callable returning one. ``export_sft`` with
``max_per_task`` needs to see every example of a task before choosing, but must not hold
whole examples: it converts each example once, spools the converted line to a temporary file
next to the output (keeping only the instance id per line), chooses, then copies the chosen
lines in input order. So a one-shot iterator is enough, and the input is parsed only once.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic_core import to_json

from agentdata_tui.atomic import atomic_writer
from agentdata_tui.errors import UserError
from agentdata_tui.processing import scrub_secrets
from agentdata_tui.processing.messages import split_think, text_of, tool_calls_of
from agentdata_tui.processing.select import ProgressFn

# The trajectory exports live in their own module, re-exported so that every export is
# importable from one place (the TUI's export screen does).
from agentdata_tui.processing.trajectory import (
    export_trajectory,
    mini_traj_filename,
    to_mini_trajectory,
    trajectory_record,
    trajectory_steps,
)
from agentdata_tui.records import Example, SummaryBuilder
from agentdata_tui.writer import TrainingDataWriter

Reasoning = Literal["inline", "field", "strip"]
REASONING_MODES: tuple[str, ...] = ("inline", "field", "strip")

ExamplesArg = Iterable[Example] | Callable[[], Iterable[Example]]


def _iterate(examples: ExamplesArg) -> Iterable[Example]:
    return examples() if callable(examples) else examples


# -- filtered training data ------------------------------------------------------


class ExtendedSummary(SummaryBuilder):
    """The recomputed summary plus what a processing step did (its counts are known only at
    the end, while the metadata is written first)."""

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.extra: dict[str, Any] = dict(extra or {})

    def build(self) -> dict[str, Any]:
        return {**super().build(), **self.extra}


def write_filtered(
    examples: ExamplesArg,
    output: str | os.PathLike[str],
    metadata: dict[str, Any] | None,
    progress: ProgressFn | None = None,
    *,
    summary_extra: Callable[[int], dict[str, Any]] | None = None,
) -> int:
    """Write ``examples`` as a training-data file (summary recomputed); returns how many.

    ``summary_extra(count)`` may add figures to the summary once the stream is done (the CLI
    records how many examples were read and dropped there).
    """
    with TrainingDataWriter(output, scrub_secrets(metadata or {})) as writer:
        summary = ExtendedSummary()
        writer.summary = summary
        for ex in _iterate(examples):
            writer.write(ex)
            if progress is not None:
                progress(writer.count)
        if summary_extra is not None:
            summary.extra.update(summary_extra(writer.count))
        return writer.count


# -- SFT -----------------------------------------------------------------------------


def clean_message(msg: dict[str, Any], reasoning: Reasoning = "inline") -> dict[str, Any]:
    """One message in the SFT schema: the same keys with the same non-null types on every line.

    Hugging Face ``datasets`` fixes a JSON file's Arrow schema from its first chunk (10 MB):
    a field that is null (or an empty list) throughout that chunk gets the type ``null`` and
    any later real value fails to load. So "none" is the empty string everywhere, and
    ``tool_calls`` is the OpenAI list encoded as a JSON string (``""`` when there are none;
    ``json.loads`` it before applying a chat template). ``reasoning_content`` exists only in
    ``field`` mode. (Written for speed: it runs for every message of a 1 GB export.)
    """
    content = msg.get("content")
    if content.__class__ is not str:
        content = text_of(content)
    rc = msg.get("reasoning_content")
    if rc is not None and (rc.__class__ is not str or not rc.strip()):
        rc = None
    if reasoning == "inline":
        if rc is not None and not content.lstrip().startswith("<think>"):
            content = f"<think>\n{rc.strip()}\n</think>\n\n{content}"
    elif "<think>" in content[:256]:
        think, rest = split_think(content)
        if think is not None:
            content = rest
            rc = rc or think
    calls = msg.get("tool_calls")
    tcid = msg.get("tool_call_id")
    role = msg.get("role")
    out: dict[str, Any] = {
        "role": role if role.__class__ is str else str(role or ""),
        "content": content,
        "tool_calls": to_json(tool_calls_of(calls)).decode() if calls else "",
        "tool_call_id": "" if tcid is None else str(tcid),
    }
    if reasoning == "field":
        out["reasoning_content"] = rc or ""
    return out


def sft_metadata(ex: Example) -> dict[str, Any]:
    """Per-line metadata: fixed keys, fixed non-null types (see :func:`clean_message` for why).

    ``speedup`` is 0.0 where no benchmark ran, with ``has_speedup`` false.
    """
    return {
        "instance_id": ex.instance_id,
        "sample_index": int(ex.sample_index),
        "attempt": int(ex.attempt),
        "reward": float(ex.reward or 0.0),
        "speedup": float(ex.speedup) if ex.speedup is not None else 0.0,
        "has_speedup": ex.speedup is not None,
        "success": bool(ex.success),
        "model_calls": int(ex.model_calls or 0),
        "exit_status": ex.exit_status or "",
        "assistant_steps": ex.assistant_steps,
    }


def sft_record(ex: Example, reasoning: Reasoning = "inline") -> dict[str, Any]:
    return {"messages": [clean_message(m, reasoning) for m in ex.messages], "metadata": sft_metadata(ex)}


def _sft_line(ex: Example, reasoning: Reasoning) -> bytes:
    # pydantic-core's Rust serialiser: ~4x json.dumps, and UTF-8 bytes directly (the hot path
    # of a 1 GB export). Output is plain compact JSON, non-ASCII kept as UTF-8.
    return to_json(sft_record(ex, reasoning)) + b"\n"


def choose_per_task(task_of_line: list[str], max_per_task: int, seed: int) -> set[int]:
    """Line numbers to keep: at most ``max_per_task`` per task, a seeded random choice.

    Each task draws from its own generator seeded by ``(seed, instance_id)``, so the choice for
    one task does not change when other tasks are filtered in or out.
    """
    by_task: dict[str, list[int]] = {}
    for line, task in enumerate(task_of_line):
        by_task.setdefault(task, []).append(line)
    keep: set[int] = set()
    for task, lines in by_task.items():
        if len(lines) <= max_per_task:
            keep.update(lines)
        else:
            keep.update(random.Random(f"{seed}:{task}").sample(lines, max_per_task))
    return keep


def export_sft(
    examples: ExamplesArg,
    output: str | os.PathLike[str],
    *,
    reasoning: Reasoning = "inline",
    max_per_task: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> int:
    """Write one SFT line per example (DESIGN §3); returns the number of lines written."""
    if reasoning not in REASONING_MODES:
        raise UserError(f"--reasoning must be one of {', '.join(REASONING_MODES)}, got '{reasoning}'")
    if max_per_task is not None and max_per_task < 1:
        raise UserError(f"--max-per-task must be at least 1, got {max_per_task}")
    if max_per_task is None:
        count = 0
        with atomic_writer(output, "wb") as fh:
            for ex in _iterate(examples):
                fh.write(_sft_line(ex, reasoning))
                count += 1
                if progress is not None:
                    progress(count)
        return count
    return _export_sft_sampled(_iterate(examples), Path(output), reasoning, max_per_task, seed, progress)


def _export_sft_sampled(
    examples: Iterable[Example],
    output: Path,
    reasoning: Reasoning,
    max_per_task: int,
    seed: int,
    progress: ProgressFn | None,
) -> int:
    output.parent.mkdir(parents=True, exist_ok=True)
    interned: dict[str, str] = {}  # one string object per task, however many lines it has
    task_of_line: list[str] = []
    lengths: list[int] = []
    fd, spool_path = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".spool", dir=output.parent)
    try:
        with os.fdopen(fd, "w+b") as spool:
            for n, ex in enumerate(examples, start=1):
                line = _sft_line(ex, reasoning)
                spool.write(line)
                lengths.append(len(line))
                task_of_line.append(interned.setdefault(ex.instance_id, ex.instance_id))
                if progress is not None:
                    progress(n)
            keep = choose_per_task(task_of_line, max_per_task, seed)
            spool.seek(0)
            count = 0
            with atomic_writer(output, "wb") as out:
                for i, length in enumerate(lengths):
                    chunk = spool.read(length)
                    if i in keep:
                        out.write(chunk)
                        count += 1
            return count
    finally:
        with contextlib.suppress(OSError):
            os.unlink(spool_path)


__all__ = [
    "ExtendedSummary",
    "choose_per_task",
    "clean_message",
    "export_sft",
    "export_trajectory",
    "mini_traj_filename",
    "sft_metadata",
    "sft_record",
    "split_think",
    "to_mini_trajectory",
    "trajectory_record",
    "trajectory_steps",
    "write_filtered",
]
