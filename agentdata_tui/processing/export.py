"""Exports: filtered training data, SFT JSONL, step-structured trajectories, mini-swe-agent files.

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
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic_core import to_json

from agentdata_tui import __version__
from agentdata_tui.atomic import atomic_writer
from agentdata_tui.errors import UserError
from agentdata_tui.processing import scrub_secrets
from agentdata_tui.processing.select import ProgressFn
from agentdata_tui.records import Example, SummaryBuilder
from agentdata_tui.writer import TrainingDataWriter, dumps

Reasoning = Literal["inline", "field", "strip"]
REASONING_MODES: tuple[str, ...] = ("inline", "field", "strip")
TRAJECTORY_FORMATS: tuple[str, ...] = ("json", "mini-swe-agent")
MINI_TRAJECTORY_FORMAT = "mini-swe-agent-1.1"

ExamplesArg = Iterable[Example] | Callable[[], Iterable[Example]]

_THINK_RE = re.compile(r"\A\s*<think>(.*?)</think>\s*", re.DOTALL)
_ACTION_RE = re.compile(r"```(?:bash|sh|mswea_bash_command)[ \t]*\n(.*?)\n```", re.DOTALL)
_RETURNCODE_RE = re.compile(r"<returncode>\s*(-?\d+)\s*</returncode>")


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
    with TrainingDataWriter(output, scrub_secrets(metadata or {}), compact=True) as writer:
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


def _text(content: Any) -> str:
    """Message content as a string: Arrow needs one type per column (no str/list mixtures)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return json.dumps(content, ensure_ascii=False)


def _tool_calls(raw: Any) -> list[dict[str, Any]]:
    """Tool calls in one fixed shape: ``{id, type, function: {name, arguments (a JSON string)}}``."""
    out = []
    for tc in raw or []:
        if not isinstance(tc, dict):
            continue
        fn = tc.get("function") or {}
        args = fn.get("arguments", "")
        out.append(
            {
                "id": str(tc.get("id") or ""),
                "type": str(tc.get("type") or "function"),
                "function": {
                    "name": str(fn.get("name") or ""),
                    "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False),
                },
            }
        )
    return out


def split_think(content: str) -> tuple[str | None, str]:
    """``(reasoning, rest)`` when content starts with a closed ``<think>`` block, else ``(None, content)``."""
    m = _THINK_RE.match(content)
    if m is None:
        return None, content
    return m.group(1).strip(), content[m.end() :]


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
        content = _text(content)
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
        "tool_calls": json.dumps(_tool_calls(calls), ensure_ascii=False) if calls else "",
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


# -- step-structured trajectories -------------------------------------------------------


def _action_of(msg: dict[str, Any], recorded: str | None) -> str | None:
    """The command of an assistant turn: as recorded in ``steps``, else from its tool call or
    its fenced bash block."""
    if recorded:
        return recorded
    for tc in _tool_calls(msg.get("tool_calls")):
        try:
            args = json.loads(tc["function"]["arguments"] or "{}")
        except ValueError:
            return tc["function"]["arguments"]
        if isinstance(args, dict) and "command" in args:
            return str(args["command"])
        return tc["function"]["arguments"]
    m = _ACTION_RE.search(_text(msg.get("content")))
    return m.group(1) if m else None


def _thought_of(msg: dict[str, Any]) -> tuple[str, str | None]:
    """``(thought, reasoning)``: the text around the action block, and any separate reasoning."""
    reasoning, content = split_think(_text(msg.get("content")))
    rc = msg.get("reasoning_content")
    if isinstance(rc, str) and rc.strip():
        reasoning = rc.strip()
    thought = _ACTION_RE.sub("", content).strip()
    if thought.upper().startswith("THOUGHT:"):
        thought = thought[len("THOUGHT:") :].strip()
    return thought, reasoning


def trajectory_steps(ex: Example) -> list[dict[str, Any]]:
    """(thought, action, observation, returncode) per assistant turn, in order.

    The observation is what came back before the next assistant turn (user or tool messages,
    joined); the final submitting turn has none.
    """
    steps: list[dict[str, Any]] = []
    n_assistant = 0
    for msg in ex.messages:
        role = msg.get("role")
        if role == "assistant":
            recorded = ex.steps[n_assistant] if n_assistant < len(ex.steps) else None
            thought, reasoning = _thought_of(msg)
            steps.append(
                {
                    "thought": thought,
                    "reasoning": reasoning,
                    "action": _action_of(msg, recorded.command if recorded else None),
                    "observation": None,
                    "returncode": recorded.returncode if recorded else None,
                }
            )
            n_assistant += 1
        elif role in ("user", "tool") and steps:
            obs = _text(msg.get("content"))
            last = steps[-1]
            last["observation"] = obs if last["observation"] is None else last["observation"] + "\n" + obs
            if last["returncode"] is None:
                m = _RETURNCODE_RE.search(obs)
                if m:
                    last["returncode"] = int(m.group(1))
    return steps


def trajectory_record(ex: Example) -> dict[str, Any]:
    return {
        "instance_id": ex.instance_id,
        "sample_index": ex.sample_index,
        "attempt": ex.attempt,
        "problem_statement": ex.problem_statement,
        "steps": trajectory_steps(ex),
        "git_diff": ex.git_diff,
        "reward": ex.reward,
        "speedup": ex.speedup,
        "success": ex.success,
        "exit_status": ex.exit_status,
        "model_calls": ex.model_calls,
    }


def export_trajectory(
    examples: ExamplesArg,
    output: str | os.PathLike[str],
    *,
    fmt: str = "json",
    metadata: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> int:
    """``fmt="json"``: one file ``{"metadata", "trajectories": [...], "summary"}``, one trajectory
    per line; ``fmt="mini-swe-agent"``: a folder of ``.traj.json`` files. Returns how many."""
    if fmt == "mini-swe-agent":
        return _export_mini(_iterate(examples), Path(output), metadata or {}, progress)
    if fmt != "json":
        raise UserError(f"--format must be one of {', '.join(TRAJECTORY_FORMATS)}, got '{fmt}'")
    count = 0
    summary = SummaryBuilder()
    with atomic_writer(output) as fh:
        fh.write('{"metadata": ' + dumps(scrub_secrets(metadata or {})) + ",\n")
        fh.write('"trajectories": [\n')
        for ex in _iterate(examples):
            if count:
                fh.write(",\n")
            fh.write(dumps(trajectory_record(ex)))
            summary.add(ex)
            count += 1
            if progress is not None:
                progress(count)
        fh.write("\n" if count else "")
        fh.write("],\n")
        fh.write('"summary": ' + dumps(summary.build()) + "}\n")
    return count


# -- mini-swe-agent 2.x trajectory files -----------------------------------------------------


def mini_traj_filename(ex: Example) -> str:
    """``<instance_id>[__s<sample>][__a<attempt>].traj.json``, made safe as a file name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", ex.instance_id).strip(".") or "example"
    if ex.sample_index:
        name += f"__s{ex.sample_index}"
    if ex.attempt != 1:
        name += f"__a{ex.attempt}"
    return name + ".traj.json"


def to_mini_trajectory(ex: Example, run_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """One example in mini-swe-agent 2.x's trajectory schema (what its inspector opens).

    Assistant messages carry ``extra.actions`` and observations ``extra.returncode`` as
    mini-swe-agent writes them; the run ends with its ``exit`` message. The evaluation, which
    mini-swe-agent does not have, goes to ``info.agentdata``.
    """
    run_metadata = run_metadata or {}
    messages: list[dict[str, Any]] = []
    n_assistant = 0
    last_returncode_target: dict[str, Any] | None = None
    for raw in ex.messages:
        msg = {k: v for k, v in raw.items() if k != "extra"}
        role = msg.get("role")
        if role == "assistant":
            recorded = ex.steps[n_assistant] if n_assistant < len(ex.steps) else None
            command = _action_of(raw, recorded.command if recorded else None)
            actions: list[dict[str, Any]] = []
            if command is not None:
                action: dict[str, Any] = {"command": command}
                calls = _tool_calls(raw.get("tool_calls"))
                if calls:
                    action["tool_call_id"] = calls[0]["id"]
                actions.append(action)
            msg["extra"] = {"actions": actions}
            last_returncode_target = {"rc": recorded.returncode if recorded else None}
            n_assistant += 1
        elif role in ("user", "tool") and last_returncode_target is not None:
            rc = last_returncode_target["rc"]
            if rc is None:
                m = _RETURNCODE_RE.search(_text(msg.get("content")))
                rc = int(m.group(1)) if m else None
            if rc is not None:
                msg["extra"] = {"returncode": rc}
            last_returncode_target = None
        messages.append(msg)
    exit_status = ex.exit_status or ""
    messages.append(
        {
            "role": "exit",
            "content": ex.git_diff if ex.git_diff else exit_status,
            "extra": {"exit_status": exit_status, "submission": ex.git_diff},
        }
    )
    model_name = ex.metadata.get("model_name") or run_metadata.get("model_name")
    info: dict[str, Any] = {
        "model_stats": {
            "instance_cost": float(ex.metadata.get("instance_cost") or 0.0),
            "api_calls": int(ex.model_calls or 0),
        },
        "mini_version": f"agentdata-tui {__version__}",
        "exit_status": exit_status,
        "submission": ex.git_diff,
        "agentdata": {
            "sample_index": ex.sample_index,
            "attempt": ex.attempt,
            "reward": ex.reward,
            "speedup": ex.speedup,
            "success": ex.success,
            "evaluation_info": ex.evaluation_info,
            "error": ex.error,
        },
    }
    if model_name:
        info["config"] = {"model": {"model_name": model_name}}
    return {
        "info": info,
        "messages": messages,
        "trajectory_format": MINI_TRAJECTORY_FORMAT,
        "instance_id": ex.instance_id,
    }


def _export_mini(
    examples: Iterable[Example], output: Path, run_metadata: dict[str, Any], progress: ProgressFn | None
) -> int:
    """Files go to a temporary sibling folder first and are moved in only when all were
    written: a failed export adds nothing to (and removes nothing from) the output folder."""
    if output.exists() and not output.is_dir():
        raise UserError(
            "--output must be a folder for --format mini-swe-agent, and this is a file", where=str(output)
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    count = 0
    try:
        used: set[str] = set()
        for ex in examples:
            name = mini_traj_filename(ex)
            if name in used:  # ids differing only in unsafe characters
                stem = name[: -len(".traj.json")]
                n = 2
                while f"{stem}__{n}.traj.json" in used:
                    n += 1
                name = f"{stem}__{n}.traj.json"
            used.add(name)
            with open(tmp / name, "w", encoding="utf-8") as fh:
                json.dump(to_mini_trajectory(ex, run_metadata), fh, ensure_ascii=False, indent=2)
            count += 1
            if progress is not None:
                progress(count)
        if not output.exists():
            os.replace(tmp, output)
        else:
            for name in sorted(used):
                os.replace(tmp / name, output / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return count
