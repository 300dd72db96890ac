"""Token-level data for RL trainers (verl, SkyRL, prime-rl, NeMo-RL): no re-tokenizing.

A run made with ``model.capture_tokens: true`` keeps, per model call, the token ids the server
saw and sampled in ``X.run/tokens.jsonl`` (one line per call, keyed by ``rollout_id`` and
``step``; see :meth:`agentdata_tui.runner.store.RunStore.append_tokens`). ``export_rl`` writes one line per rollout:

- ``"format": "sequence"`` when every call's prompt extends the previous call's prompt plus
  completion (true for chat templates that only append): ``input_ids`` is the last call's
  prompt + completion, ``loss_mask`` is 1 on tokens the model sampled and 0 on the prompt and
  the observations, ``logprobs`` the sampled tokens' log-probabilities (null where the mask
  is 0, or where the server gave none);
- ``"format": "per_call"`` otherwise (e.g. Qwen3's template drops earlier ``<think>`` blocks,
  so a later prompt is not an extension): ``calls`` holds each call's ``prompt_token_ids``,
  ``completion_token_ids`` and ``logprobs`` as the server saw them, with
  ``not_prefix_at_step`` naming the first call that broke the chain. Never a spliced sequence
  that no call saw.

Every line carries the reward, the ids, and ``group_id`` (the instance within the run, for
GRPO-style grouping). What the server did not return is null, never invented; a rollout with
a call lacking prompt or completion token ids has no line (counted and said).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agentdata_tui.atomic import atomic_writer
from agentdata_tui.processing.export import is_resolved, write_export_meta
from agentdata_tui.processing.select import ProgressFn
from agentdata_tui.reader import ReaderWarning
from agentdata_tui.records import Example, example_ids
from agentdata_tui.runner.store import TOKENS

RL_FORMAT = "agentdata-tui-rl"
RL_FORMAT_VERSION = 1
NOT_CAPTURED = "token ids not captured"


def run_folder_of(path: str | os.PathLike[str]) -> Path | None:
    """The run folder of an input: ``X.run/`` itself, its ``examples.jsonl``, or ``X.json``."""
    p = Path(path)
    if p.is_dir() and (p / "examples.jsonl").exists():
        return p
    if p.name == "examples.jsonl":
        return p.parent
    if p.suffix == ".json" and p.with_suffix(".run").is_dir():
        return p.with_suffix(".run")
    return None


def load_tokens(run_folder: str | os.PathLike[str]) -> dict[str, dict[int, dict[str, Any]]]:
    """``rollout_id -> step -> record`` from ``tokens.jsonl`` (a torn last line is skipped).

    Held in memory: token ids are the bulk of this data, so the RL export reads one run at a
    time; the training-data files stay small because the ids live here.
    """
    path = Path(run_folder) / TOKENS
    out: dict[str, dict[int, dict[str, Any]]] = {}
    if not path.exists():
        return out
    torn = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key, step = str(rec["rollout_id"]), int(rec["step"])
            except (ValueError, KeyError, TypeError):
                torn += 1  # a killed writer's torn line (the store starts a new line after it)
                continue
            out.setdefault(key, {})[step] = rec
    if torn:
        warnings.warn(f"{path}: skipped {torn} torn line(s) a killed run left", ReaderWarning, stacklevel=2)
    return out


def _is_prefix(prefix: list[int], seq: list[int]) -> bool:
    return len(prefix) <= len(seq) and seq[: len(prefix)] == prefix


def rl_record(ex: Example, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The RL line of one rollout from its calls' token records (in step order)."""
    run_id, rollout_id = example_ids(ex)
    line: dict[str, Any] = {
        "run_id": run_id,
        "rollout_id": rollout_id,
        "group_id": f"{run_id}/{ex.instance_id}",
        "instance_id": ex.instance_id,
        "sample_index": ex.sample_index,
        "attempt": ex.attempt,
        "reward": ex.reward,
        "success": ex.success,
        "resolved": is_resolved(ex),
        "speedup": ex.speedup,
        "exit_status": ex.exit_status,
        "n_calls": len(calls),
    }
    broke_at = None
    for k in range(1, len(calls)):
        before = calls[k - 1]["prompt_token_ids"] + calls[k - 1]["token_ids"]
        if not _is_prefix(before, calls[k]["prompt_token_ids"]):
            broke_at = k
            break
    if broke_at is None:
        input_ids: list[int] = []
        mask: list[int] = []
        logprobs: list[float | None] = []
        for call in calls:
            new_prompt = call["prompt_token_ids"][len(input_ids) :]
            input_ids += new_prompt
            mask += [0] * len(new_prompt)
            logprobs += [None] * len(new_prompt)
            completion = call["token_ids"]
            lp = call.get("logprobs")
            lp = lp if isinstance(lp, list) and len(lp) == len(completion) else [None] * len(completion)
            input_ids += completion
            mask += [1] * len(completion)
            logprobs += lp
        line.update(
            {
                "format": "sequence",
                "prompt_length": len(calls[0]["prompt_token_ids"]),
                "input_ids": input_ids,
                "loss_mask": mask,
                "logprobs": logprobs,
            }
        )
    else:
        line.update(
            {
                "format": "per_call",
                "not_prefix_at_step": broke_at,
                "calls": [
                    {
                        "step": step,
                        "prompt_token_ids": c["prompt_token_ids"],
                        "completion_token_ids": c["token_ids"],
                        "logprobs": c.get("logprobs"),
                    }
                    for step, c in enumerate(calls)
                ],
            }
        )
    return line


def export_rl(
    examples: Iterable[Example],
    tokens: dict[str, dict[int, dict[str, Any]]],
    output: str | os.PathLike[str],
    *,
    progress: ProgressFn | None = None,
    left_out: dict[str, int] | None = None,
    stats: dict[str, int] | None = None,
    meta: dict[str, Any] | None = None,
) -> int:
    """Write one RL line per rollout with captured tokens (atomically) and
    ``<output>.meta.json``; returns how many lines. ``left_out`` counts the rest by reason,
    ``stats`` the lines by format."""
    left_out = left_out if left_out is not None else {}
    counts = stats if stats is not None else {}
    counts.update(sequence=0, per_call=0)
    seen = 0

    def lines() -> Iterator[str]:
        nonlocal seen
        for ex in examples:
            seen += 1
            if progress is not None:
                progress(seen)
            _, rollout_id = example_ids(ex)
            by_step = tokens.get(rollout_id, {})
            # one record per answered call (a call that failed has no step and no tokens)
            calls = [by_step.get(i) for i in range(len(ex.steps))]
            if not calls or any(
                c is None
                or not isinstance(c.get("prompt_token_ids"), list)
                or not isinstance(c.get("token_ids"), list)
                for c in calls
            ):
                left_out[NOT_CAPTURED] = left_out.get(NOT_CAPTURED, 0) + 1
                continue
            record = rl_record(ex, calls)  # type: ignore[arg-type]
            counts[record["format"]] += 1
            yield json.dumps(record, ensure_ascii=False) + "\n"

    written = 0
    with atomic_writer(output) as fh:
        for text in lines():
            fh.write(text)
            written += 1
    with contextlib.suppress(OSError):
        write_export_meta(
            output,
            {
                "format": RL_FORMAT,
                "format_version": RL_FORMAT_VERSION,
                **(meta or {}),
                "counts": {"offered": seen, "written": written, **counts, "left_out": left_out},
            },
        )
    return written
