"""Step-structured trajectory exports: (thought, action, observation) triples for behaviour
cloning and next-action prediction, and mini-swe-agent 2.x ``.traj.json`` files (its
inspector opens them; this tool's reader reads them back)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agentdata_tui import __version__
from agentdata_tui.atomic import atomic_writer
from agentdata_tui.errors import UserError
from agentdata_tui.processing import scrub_secrets
from agentdata_tui.processing.messages import ACTION_RE, RETURNCODE_RE, split_think, text_of, tool_calls_of
from agentdata_tui.processing.select import ProgressFn
from agentdata_tui.records import Example, SummaryBuilder
from agentdata_tui.writer import dumps

TRAJECTORY_FORMATS: tuple[str, ...] = ("json", "mini-swe-agent", "atif")
MINI_TRAJECTORY_FORMAT = "mini-swe-agent-1.1"

ExamplesArg = Iterable[Example] | Callable[[], Iterable[Example]]


def _iterate(examples: ExamplesArg) -> Iterable[Example]:
    return examples() if callable(examples) else examples


def _action_of(msg: dict[str, Any], recorded: str | None) -> str | None:
    """The command of an assistant turn: as recorded in ``steps``, else from its tool call or
    its fenced bash block."""
    if recorded:
        return recorded
    for tc in tool_calls_of(msg.get("tool_calls")):
        try:
            args = json.loads(tc["function"]["arguments"] or "{}")
        except ValueError:
            return tc["function"]["arguments"]
        if isinstance(args, dict) and "command" in args:
            return str(args["command"])
        return tc["function"]["arguments"]
    m = ACTION_RE.search(text_of(msg.get("content")))
    return m.group(1) if m else None


def _thought_of(msg: dict[str, Any]) -> tuple[str, str | None]:
    """``(thought, reasoning)``: the text around the action block, and any separate reasoning."""
    reasoning, content = split_think(text_of(msg.get("content")))
    rc = msg.get("reasoning_content")
    if isinstance(rc, str) and rc.strip():
        reasoning = rc.strip()
    thought = ACTION_RE.sub("", content).strip()
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
            obs = text_of(msg.get("content"))
            last = steps[-1]
            last["observation"] = obs if last["observation"] is None else last["observation"] + "\n" + obs
            if last["returncode"] is None:
                m = RETURNCODE_RE.search(obs)
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
    tokens: Any = None,
    left_out: dict[str, int] | None = None,
) -> int:
    """``fmt="json"``: one file ``{"metadata", "trajectories": [...], "summary"}``, one trajectory
    per line; ``fmt="mini-swe-agent"``: a folder of ``.traj.json`` files; ``fmt="atif"``: JSONL,
    one Harbor ATIF document per line (:mod:`.atif`; ``tokens`` looks up captured token ids,
    ``left_out`` counts examples it cannot represent). Returns how many."""
    if fmt == "mini-swe-agent":
        return _export_mini(_iterate(examples), Path(output), metadata or {}, progress)
    if fmt == "atif":
        from agentdata_tui.processing.atif import export_atif

        return export_atif(
            _iterate(examples),
            output,
            file_metadata=metadata,
            tokens=tokens,
            progress=progress,
            left_out=left_out,
        )
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
                calls = tool_calls_of(raw.get("tool_calls"))
                if calls:
                    action["tool_call_id"] = calls[0]["id"]
                actions.append(action)
            msg["extra"] = {"actions": actions}
            last_returncode_target = {"rc": recorded.returncode if recorded else None}
            n_assistant += 1
        elif role in ("user", "tool") and last_returncode_target is not None:
            rc = last_returncode_target["rc"]
            if rc is None:
                m = RETURNCODE_RE.search(text_of(msg.get("content")))
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
            "run_id": ex.metadata.get("run_id"),
            "rollout_id": ex.metadata.get("rollout_id"),
            "problem_statement": ex.problem_statement,
            "sample_index": ex.sample_index,
            "attempt": ex.attempt,
            "reward": ex.reward,
            "speedup": ex.speedup,
            "success": ex.success,
            "evaluation_info": ex.evaluation_info,
            "error": ex.error,
            "model_calls": ex.model_calls,
            "metadata": scrub_secrets(dict(ex.metadata or {})),
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
