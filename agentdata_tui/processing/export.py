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
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic_core import to_json

from agentdata_tui.atomic import atomic_writer
from agentdata_tui.errors import UserError
from agentdata_tui.processing import scrub_secrets
from agentdata_tui.processing.messages import (
    parse_arguments,
    split_reasoning,
    split_think,
    text_of,
    tool_calls_of,
)
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
from agentdata_tui.records import Example, SummaryBuilder, example_ids
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
#
# One line per example: ``{"messages": [...], "metadata": {...}, "tools": str | null}``, the
# shape TRL's SFTTrainer and the Hugging Face chat templates take unchanged (DESIGN §3):
# - message keys only where they have a value (a present ``tool_calls`` key is a call for
#   Llama-3.1's template); ``tool_calls`` a list of ``{id, type, function: {name, arguments}}``
#   with ``arguments`` an object (``tool_arguments="string"``: the OpenAI wire convention);
# - ``tools``: the tool schema the model was offered, as a JSON string (TRL ``json.loads`` a
#   string ``tools`` column before templating; a string keeps the schema byte-exact, where Arrow
#   would fill keys absent from one tool's JSON schema with None and change the rendered
#   prompt); null on examples without tool calls, so no template renders an empty tool list;
# - ``metadata``: the same keys with the same non-null types on every line (Arrow fixes a
#   column's type from the first block it reads).
# ``datasets`` (>= 4.7) loads message lists whose dicts have different key sets as
# ``List(Json())``: every message comes back exactly as written, no None-filled keys. It
# decides that from the first block of the file (10 MB by default), so when a file mixes
# shapes (text-only and tool-call conversations, a ``merge`` of both) and the first line of the
# widest shape lies beyond that block, that one line is moved to the top (said on stderr and
# in the .meta.json file); every other line keeps its order.

# datasets' JSON loader reads this much before fixing the columns' types (``chunksize``).
DATASETS_FIRST_BLOCK = 10 << 20

ToolArguments = Literal["object", "string"]
TOOL_ARGUMENT_MODES: tuple[str, ...] = ("object", "string")

# Exit statuses that say the infrastructure failed, not the agent: left out of SFT by default.
INFRASTRUCTURE_FAILURES: tuple[str, ...] = ("ModelError", "SandboxError", "Error")
NO_ASSISTANT_TURN = "no assistant turn"
RESOLVED_STATUSES: frozenset[str] = frozenset({"correct", "correct_no_speedup"})

SFT_FORMAT = "agentdata-tui-sft"
SFT_FORMAT_VERSION = 2

# The datasets ``Features`` that load any SFT file of this tool (also several files at once),
# as code for README and the .meta.json file.
SFT_FEATURES_CODE = (
    "from datasets import Features, Json, List, Value\n"
    'features = Features({"messages": List(Json()), "metadata": Json(), "tools": Value("string")})'
)


def sft_skip_reason(ex: Example) -> str | None:
    """Why ``export_sft`` leaves ``ex`` out by default (None: it is kept).

    Infrastructure failures (the exit status names which) and examples with no assistant turn
    (nothing to learn from; TRL's ``assistant_only_loss`` aborts on them). Agent outcomes
    (``LimitsExceeded``, failed tests, ...) are kept: ``--min-reward`` and ``--successful-only``
    are for those.
    """
    if ex.exit_status in INFRASTRUCTURE_FAILURES:
        return ex.exit_status
    if not any(m.get("role") == "assistant" for m in ex.messages):
        return NO_ASSISTANT_TURN
    return None


@dataclass
class SftReport:
    """What an SFT export did (or would do): the CLI prints it, the TUI's export dialog shows
    it, and ``<output>.meta.json`` records it."""

    offered: int = 0  # examples that reached the export (after the selection criteria)
    written: int = 0
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> count
    include_errors: bool = False
    tools_missing: int = 0  # tool-call examples without a recorded tool schema (tools: null)
    first_line_from: int | None = None  # 1-based input line moved to the top (see above)

    @property
    def left_out_total(self) -> int:
        return sum(self.left_out.values())

    def describe_left_out(self) -> str:
        """``"left out 3 examples (2 ModelError, 1 no assistant turn); --include-errors keeps them"``."""
        if not self.left_out:
            return ""
        parts = ", ".join(f"{n:,} {reason}" for reason, n in sorted(self.left_out.items()))
        noun = "example" if self.left_out_total == 1 else "examples"
        return f"left out {self.left_out_total:,} {noun} ({parts}); --include-errors keeps them"

    def to_dict(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "written": self.written,
            "left_out": dict(sorted(self.left_out.items())),
            "include_errors": self.include_errors,
            "tools_missing": self.tools_missing,
            "first_line_from": self.first_line_from,
        }


def preview_sft(examples: ExamplesArg, *, include_errors: bool = False) -> SftReport:
    """The counts ``export_sft`` would report, without writing (the TUI's export dialog shows
    them next to its "include errors" toggle)."""
    report = SftReport(include_errors=include_errors)
    for ex in _iterate(examples):
        report.offered += 1
        reason = None if include_errors else sft_skip_reason(ex)
        if reason is None:
            report.written += 1
        else:
            report.left_out[reason] = report.left_out.get(reason, 0) + 1
    return report


def reasoning_of(msg: dict[str, Any], content: str) -> tuple[str | None, str]:
    """``(reasoning, rest)`` of an assistant message: its ``reasoning_content`` and a leading
    ``<think>`` block of its content (closed, or unclosed: cut at max_tokens), both kept."""
    rc = msg.get("reasoning_content")
    rc = rc.strip() if isinstance(rc, str) and rc.strip() else None
    think, rest = split_reasoning(content) if content.lstrip().startswith("<think>") else (None, content)
    think = think or None
    if rc is None or think is None or rc == think:
        return rc or think, rest
    return f"{rc}\n\n{think}", rest


def _sft_tool_calls(raw: Any, tool_arguments: ToolArguments) -> list[dict[str, Any]]:
    calls = tool_calls_of(raw)
    if tool_arguments == "object":
        for call in calls:
            fn = call["function"]
            fn["arguments"] = parse_arguments(fn["arguments"])
    return calls


def clean_message(
    msg: dict[str, Any], reasoning: Reasoning = "inline", tool_arguments: ToolArguments = "object"
) -> dict[str, Any]:
    """One message in the SFT shape: ``role`` and ``content`` (a string) always; ``tool_calls``
    on assistant messages that made calls, ``tool_call_id`` (and ``name``) on tool messages,
    ``reasoning_content`` in ``field`` mode on assistant messages that reasoned; nothing else.

    Reasoning modes touch assistant messages only (an observation that starts with
    ``<think>`` is data). The answer after the reasoning is the same string in every mode.
    """
    content = msg.get("content")
    if content.__class__ is not str:
        content = text_of(content)
    role = msg.get("role")
    role = role if role.__class__ is str else str(role or "")
    out: dict[str, Any] = {"role": role, "content": content}
    if role == "assistant":
        thought, rest = reasoning_of(msg, content)
        if reasoning == "inline":
            out["content"] = f"<think>\n{thought}\n</think>\n\n{rest}" if thought else rest
        else:
            out["content"] = rest
            if reasoning == "field" and thought:
                out["reasoning_content"] = thought
        calls = _sft_tool_calls(msg.get("tool_calls"), tool_arguments) if msg.get("tool_calls") else None
        if calls:
            out["tool_calls"] = calls
    elif role == "tool":
        tcid = msg.get("tool_call_id")
        if tcid not in (None, ""):
            out["tool_call_id"] = str(tcid)
        name = msg.get("name")
        if isinstance(name, str) and name:
            out["name"] = name
    return out


def is_resolved(ex: Example) -> bool:
    """The tests passed (evaluation status ``correct`` or ``correct_no_speedup``): on a
    performance task this differs from ``success``, which also needs the speedup."""
    info = ex.evaluation_info or {}
    return info.get("status") in RESOLVED_STATUSES


def sft_metadata(
    ex: Example, *, with_patch: bool = False, file_metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Per-line metadata: fixed keys, fixed non-null types (Arrow fixes a column's type from
    the first block it reads). "" for an unknown string, 0 for unknown token counts;
    ``speedup`` is 0.0 where no benchmark ran, with ``has_speedup`` false."""
    run_id, rollout_id = example_ids(ex)
    model_name = ex.metadata.get("model_name") or (file_metadata or {}).get("model_name") or ""
    out = {
        "instance_id": ex.instance_id,
        "run_id": run_id,
        "rollout_id": rollout_id,
        "sample_index": int(ex.sample_index),
        "attempt": int(ex.attempt),
        "model_name": str(model_name),
        "reward": float(ex.reward or 0.0),
        "success": bool(ex.success),
        "resolved": is_resolved(ex),
        "speedup": float(ex.speedup) if ex.speedup is not None else 0.0,
        "has_speedup": ex.speedup is not None,
        "exit_status": ex.exit_status or "",
        "model_calls": int(ex.model_calls or 0),
        "assistant_steps": ex.assistant_steps,
        "prompt_tokens": sum(s.prompt_tokens or 0 for s in ex.steps),
        "completion_tokens": sum(s.completion_tokens or 0 for s in ex.steps),
    }
    if with_patch:
        out["git_diff"] = ex.git_diff or ""
    return out


def _tools_of(ex: Example, file_metadata: dict[str, Any] | None) -> tuple[Any, bool]:
    """``(tools, missing)``: the schema offered to the model (the example's, else the file's),
    and whether a tool-call example has none recorded."""
    tools = _schema(ex.metadata.get("tools"))
    if tools:
        return tools, False
    made_calls = any(m.get("tool_calls") for m in ex.messages if m.get("role") == "assistant")
    if not made_calls:
        return None, False
    tools = _schema((file_metadata or {}).get("tools"))
    return (tools, False) if tools else (None, True)


def _schema(tools: Any) -> Any:
    """A recorded tool schema as a list (one recorded as a JSON string is decoded once)."""
    if isinstance(tools, str):
        with contextlib.suppress(ValueError):
            return json.loads(tools)
        return None
    return tools


def _apply_system_prompt(messages: list[dict[str, Any]], system_prompt: str | bool | None) -> None:
    """``None``: as recorded; ``False``: the system message removed; a string: it replaces
    the system message's content (or becomes the first message when there is none)."""
    if system_prompt is None or system_prompt is True:
        return
    at = next((i for i, m in enumerate(messages) if m["role"] == "system"), None)
    if system_prompt is False:
        if at is not None:
            del messages[at]
    elif at is None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    else:
        messages[at] = {"role": "system", "content": system_prompt}


def sft_record(
    ex: Example,
    reasoning: Reasoning = "inline",
    *,
    tool_arguments: ToolArguments = "object",
    with_patch: bool = False,
    system_prompt: str | bool | None = None,
    file_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    messages = [clean_message(m, reasoning, tool_arguments) for m in ex.messages]
    _apply_system_prompt(messages, system_prompt)
    tools, _ = _tools_of(ex, file_metadata)
    return {
        "messages": messages,
        "metadata": sft_metadata(ex, with_patch=with_patch, file_metadata=file_metadata),
        "tools": json.dumps(tools, ensure_ascii=False) if tools else None,
    }


def _shape(record: dict[str, Any]) -> tuple[bool, bool]:
    """(messages of different key sets, tools present): what datasets must see in block 1."""
    first = None
    mixed = False
    for m in record["messages"]:
        if first is None:
            first = m.keys()
        elif m.keys() != first:
            mixed = True
            break
    return mixed, record["tools"] is not None


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


class _ShapeTracker:
    """Remembers the shape of line 1 and the first line of the widest shape (and where it is),
    so the finished file can lead with it."""

    def __init__(self) -> None:
        self.first: tuple[bool, bool] | None = None
        self.best: tuple[tuple[bool, bool], int, int, int] | None = None  # shape, index, offset, len
        self.offset = 0
        self.index = 0

    def add(self, shape: tuple[bool, bool], length: int) -> None:
        if self.first is None:
            self.first = shape
        if self.best is None or shape > self.best[0]:
            self.best = (shape, self.index, self.offset, length)
        self.offset += length
        self.index += 1

    def move(self) -> tuple[int, int, int] | None:
        if self.best is None or self.first is None or self.best[0] <= self.first:
            return None
        if self.best[2] < DATASETS_FIRST_BLOCK:  # in the first block already
            return None
        _, index, offset, length = self.best
        return index, offset, length


def _lead_with(path: Path, offset: int, length: int) -> None:
    """Rewrite ``path`` (atomically) with the line at ``offset`` first, the rest in order."""
    with open(path, "rb") as src, atomic_writer(path, "wb") as out:
        src.seek(offset)
        out.write(src.read(length))
        src.seek(0)
        remaining = offset
        while remaining:
            chunk = src.read(min(remaining, 1 << 20))
            out.write(chunk)
            remaining -= len(chunk)
        src.seek(offset + length)
        shutil.copyfileobj(src, out, 1 << 20)


def meta_path(output: str | os.PathLike[str]) -> Path:
    """``<output>.meta.json``: an export's criteria and counts, beside the file."""
    return Path(str(output) + ".meta.json")


def write_export_meta(output: str | os.PathLike[str], meta: dict[str, Any]) -> Path:
    """Write ``<output>.meta.json`` (atomically): what was exported from where, how, and the
    counts. The CLI and the TUI both get it from :func:`export_sft`."""
    from agentdata_tui import __version__

    doc = {
        **scrub_secrets(meta),
        "output": Path(output).name,
        "tool_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    target = meta_path(output)
    with atomic_writer(target) as fh:
        fh.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return target


def export_sft(
    examples: ExamplesArg,
    output: str | os.PathLike[str],
    *,
    reasoning: Reasoning = "inline",
    tool_arguments: ToolArguments = "object",
    include_errors: bool = False,
    with_patch: bool = False,
    system_prompt: str | bool | None = None,
    file_metadata: dict[str, Any] | None = None,
    max_per_task: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    report: SftReport | None = None,
    meta: dict[str, Any] | None = None,
) -> int:
    """Write one SFT line per example (DESIGN §3) and ``<output>.meta.json``; returns the
    number of lines written.

    Examples :func:`sft_skip_reason` names are left out unless ``include_errors``; ``report``
    (when given) is filled with the counts. ``system_prompt``: None keeps the recorded system
    message, False removes it, a string replaces it. ``file_metadata`` is the input's metadata
    (run-level tool schema and model name for examples that lack their own). ``meta`` adds
    fields (the input, the selection criteria) to the .meta.json file; ``meta=None`` writes
    it too, with what this call knows.
    """
    if reasoning not in REASONING_MODES:
        raise UserError(f"--reasoning must be one of {', '.join(REASONING_MODES)}, got '{reasoning}'")
    if tool_arguments not in TOOL_ARGUMENT_MODES:
        raise UserError(
            f"--tool-arguments must be one of {', '.join(TOOL_ARGUMENT_MODES)}, got '{tool_arguments}'"
        )
    if max_per_task is not None and max_per_task < 1:
        raise UserError(f"--max-per-task must be at least 1, got {max_per_task}")
    report = report if report is not None else SftReport()
    report.include_errors = include_errors
    options = {
        "reasoning": reasoning,
        "tool_arguments": tool_arguments,
        "with_patch": with_patch,
        "system_prompt": system_prompt,
        "file_metadata": file_metadata,
    }

    def lines() -> Iterator[tuple[Example, bytes, tuple[bool, bool]]]:
        for ex in _iterate(examples):
            report.offered += 1
            if progress is not None:
                progress(report.offered)
            reason = None if include_errors else sft_skip_reason(ex)
            if reason is not None:
                report.left_out[reason] = report.left_out.get(reason, 0) + 1
                continue
            record = sft_record(ex, **options)  # type: ignore[arg-type]
            if record["tools"] is None and _tools_of(ex, file_metadata)[1]:
                report.tools_missing += 1
            # pydantic-core's Rust serialiser: ~4x json.dumps, UTF-8 bytes directly (the hot
            # path of a 1 GB export); plain compact JSON, non-ASCII kept as UTF-8.
            yield ex, to_json(record) + b"\n", _shape(record)

    out = Path(output)
    shapes = _ShapeTracker()
    if max_per_task is None:
        with atomic_writer(out, "wb") as fh:
            for _, line, shape in lines():
                fh.write(line)
                shapes.add(shape, len(line))
                report.written += 1
    else:
        report.written = _export_sft_sampled(lines(), out, max_per_task, seed, shapes)
    move = shapes.move()
    if move is not None:
        index, offset, length = move
        _lead_with(out, offset, length)
        report.first_line_from = index + 1
    write_export_meta(
        out,
        {
            "format": SFT_FORMAT,
            "format_version": SFT_FORMAT_VERSION,
            **(meta or {}),
            "reasoning": reasoning,
            "tool_arguments": tool_arguments,
            "include_errors": include_errors,
            "with_patch": with_patch,
            "system_prompt": _describe_system_prompt(system_prompt),
            "max_per_task": max_per_task,
            "seed": seed if max_per_task is not None else None,
            "counts": report.to_dict(),
            "tools_field": "JSON string of the offered tool schema on tool-call examples, null otherwise",
            "datasets_features": SFT_FEATURES_CODE,
        },
    )
    return report.written


def _describe_system_prompt(system_prompt: str | bool | None) -> dict[str, Any]:
    if system_prompt is None or system_prompt is True:
        return {"mode": "as recorded"}
    if system_prompt is False:
        return {"mode": "removed"}
    digest = hashlib.sha256(system_prompt.encode("utf-8")).hexdigest()
    return {"mode": "replaced", "sha256": digest, "chars": len(system_prompt)}


def _export_sft_sampled(
    lines: Iterable[tuple[Example, bytes, tuple[bool, bool]]],
    output: Path,
    max_per_task: int,
    seed: int,
    shapes: _ShapeTracker,
) -> int:
    output.parent.mkdir(parents=True, exist_ok=True)
    interned: dict[str, str] = {}  # one string object per task, however many lines it has
    task_of_line: list[str] = []
    lengths: list[int] = []
    line_shapes: list[tuple[bool, bool]] = []
    fd, spool_path = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".spool", dir=output.parent)
    try:
        with os.fdopen(fd, "w+b") as spool:
            for ex, line, shape in lines:
                spool.write(line)
                lengths.append(len(line))
                line_shapes.append(shape)
                task_of_line.append(interned.setdefault(ex.instance_id, ex.instance_id))
            keep = choose_per_task(task_of_line, max_per_task, seed)
            spool.seek(0)
            count = 0
            with atomic_writer(output, "wb") as out:
                for i, length in enumerate(lengths):
                    chunk = spool.read(length)
                    if i in keep:
                        out.write(chunk)
                        shapes.add(line_shapes[i], length)
                        count += 1
            return count
    finally:
        with contextlib.suppress(OSError):
            os.unlink(spool_path)


__all__ = [
    "INFRASTRUCTURE_FAILURES",
    "SFT_FEATURES_CODE",
    "ExtendedSummary",
    "SftReport",
    "example_ids",
    "is_resolved",
    "meta_path",
    "preview_sft",
    "sft_skip_reason",
    "write_export_meta",
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
