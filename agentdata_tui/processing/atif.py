"""Harbor's Agent Trajectory Interchange Format (ATIF), pinned at ``ATIF-v1.8``.

``export_trajectory --format atif`` writes JSONL: each line one complete ATIF trajectory
document (what Harbor's ``Trajectory`` model validates). Per example:

- ``steps``: the system prompt and the task as ``system`` / ``user`` steps, then one ``agent``
  step per model call: ``message`` (the answer, reasoning split off), ``reasoning_content``,
  ``tool_calls`` (``arguments`` an object), ``observation`` (what came back: one result per
  tool or user message, ``source_call_id`` naming the call it answers), ``metrics``
  (prompt/completion tokens; token ids and logprobs where the run captured them), and ``extra``
  (command, return code, timings, finish reason);
- ``agent``: this tool, the model name and the tool definitions offered;
- ``extra``: our ids and the evaluation (reward, success, resolved, speedup, exit status, patch).

An example with no messages has no step to write (ATIF needs one): left out and counted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from agentdata_tui import __version__
from agentdata_tui.atomic import atomic_writer
from agentdata_tui.processing.export import example_ids, is_resolved, reasoning_of
from agentdata_tui.processing.messages import parse_arguments, text_of, tool_calls_of
from agentdata_tui.processing.select import ProgressFn
from agentdata_tui.records import Example

ATIF_VERSION = "ATIF-v1.8"
AGENT_NAME = "agentdata-tui"

# (rollout_id, step index from 0) -> {"prompt_token_ids", "token_ids", "logprobs"} of that call
TokenLookup = Callable[[str, int], dict[str, Any] | None]


def message_calls(ex: Example) -> list[int]:
    """For each assistant message in order, the index of its model call in ``ex.steps``.

    A reply rejected for its format is not in mini-swe-agent 2.x's conversation (the step
    keeps it as ``rejected_reply``), so steps and assistant messages need not pair one to one.
    """
    return [i for i, s in enumerate(ex.steps) if getattr(s, "rejected_reply", None) is None]


def _agent_step(msg: dict[str, Any], recorded: Any, model_name: str | None) -> dict[str, Any]:
    reasoning, rest = reasoning_of(msg, text_of(msg.get("content")))
    step: dict[str, Any] = {"source": "agent", "message": rest, "llm_call_count": 1}
    if model_name:
        step["model_name"] = model_name
    if reasoning:
        step["reasoning_content"] = reasoning
    calls = []
    for call in tool_calls_of(msg.get("tool_calls")):
        args = parse_arguments(call["function"]["arguments"])
        calls.append(
            {
                "tool_call_id": call["id"],
                "function_name": call["function"]["name"],
                # ATIF wants an object; a reply whose arguments were not JSON keeps them as text
                "arguments": args if isinstance(args, dict) else {"_unparsed_arguments": args},
            }
        )
    if calls:
        step["tool_calls"] = calls
    if recorded is not None:
        metrics = {
            k: getattr(recorded, k)
            for k in ("prompt_tokens", "completion_tokens")
            if getattr(recorded, k) is not None
        }
        if metrics:
            step["metrics"] = metrics
        extra = {
            k: getattr(recorded, k)
            for k in (
                "command",
                "returncode",
                "exec_time_s",
                "model_latency_s",
                "finish_reason",
                "timed_out",
                "output_truncated",
            )
            if getattr(recorded, k) is not None
        }
        if extra:
            step["extra"] = extra
    return step


def to_atif(
    ex: Example,
    *,
    file_metadata: dict[str, Any] | None = None,
    tokens: TokenLookup | None = None,
) -> dict[str, Any]:
    """One example as an ATIF trajectory document (a dict ready for ``json.dumps``)."""
    file_metadata = file_metadata or {}
    run_id, rollout_id = example_ids(ex)
    model_name = ex.metadata.get("model_name") or file_metadata.get("model_name") or None
    tools = ex.metadata.get("tools") or file_metadata.get("tools") or None
    steps: list[dict[str, Any]] = []
    open_step: dict[str, Any] | None = None  # the agent step observations attach to
    call_of = message_calls(ex)
    n_agent = 0
    for msg in ex.messages:
        role = msg.get("role")
        if role == "assistant":
            call = call_of[n_agent] if n_agent < len(call_of) else None
            recorded = ex.steps[call] if call is not None else None
            open_step = _agent_step(msg, recorded, model_name)
            if tokens is not None and rollout_id and call is not None:
                captured = tokens(rollout_id, call)
                if captured:
                    metrics = open_step.setdefault("metrics", {})
                    for ours, theirs in (
                        ("prompt_token_ids", "prompt_token_ids"),
                        ("token_ids", "completion_token_ids"),
                        ("logprobs", "logprobs"),
                    ):
                        if captured.get(ours) is not None:
                            metrics[theirs] = captured[ours]
            steps.append(open_step)
            n_agent += 1
        elif open_step is not None and role in ("tool", "user"):
            result: dict[str, Any] = {"content": text_of(msg.get("content"))}
            call_ids = {c["tool_call_id"] for c in open_step.get("tool_calls", [])}
            if role == "tool" and msg.get("tool_call_id") in call_ids:
                result["source_call_id"] = msg["tool_call_id"]
            open_step.setdefault("observation", {"results": []})["results"].append(result)
        else:
            source = "system" if role == "system" else "user"
            steps.append({"source": source, "message": text_of(msg.get("content"))})
    for i, step in enumerate(steps, start=1):
        step["step_id"] = i
    prompt = [s.prompt_tokens for s in ex.steps if s.prompt_tokens is not None]
    completion = [s.completion_tokens for s in ex.steps if s.completion_tokens is not None]
    final: dict[str, Any] = {"total_steps": len(steps)}
    if prompt:
        final["total_prompt_tokens"] = sum(prompt)
    if completion:
        final["total_completion_tokens"] = sum(completion)
    cost = ex.metadata.get("cost")
    if isinstance(cost, int | float) and cost:
        final["total_cost_usd"] = float(cost)
    agent: dict[str, Any] = {"name": AGENT_NAME, "version": __version__}
    if model_name:
        agent["model_name"] = str(model_name)
    if tools:
        agent["tool_definitions"] = tools
    doc: dict[str, Any] = {
        "schema_version": ATIF_VERSION,
        "trajectory_id": rollout_id or f"{ex.instance_id}__s{ex.sample_index}__a{ex.attempt}",
        "agent": agent,
        "steps": steps,
        "final_metrics": final,
        "extra": {
            "instance_id": ex.instance_id,
            "sample_index": ex.sample_index,
            "attempt": ex.attempt,
            "run_id": run_id or None,
            "rollout_id": rollout_id or None,
            "reward": ex.reward,
            "success": ex.success,
            "resolved": is_resolved(ex),
            "speedup": ex.speedup,
            "exit_status": ex.exit_status,
            "model_calls": ex.model_calls,
            "error": ex.error,
            "evaluation_info": ex.evaluation_info,
            "git_diff": ex.git_diff,
            "problem_statement": ex.problem_statement,
        },
    }
    if run_id:
        doc["session_id"] = run_id
    return doc


def export_atif(
    examples: Iterable[Example],
    output: str | os.PathLike[str],
    *,
    file_metadata: dict[str, Any] | None = None,
    tokens: TokenLookup | None = None,
    progress: ProgressFn | None = None,
    left_out: dict[str, int] | None = None,
) -> int:
    """Write one ATIF document per line (atomically); returns how many. Examples with no
    messages are counted in ``left_out["no messages"]``."""
    count = seen = 0
    with atomic_writer(output) as fh:
        for ex in examples:
            seen += 1
            if progress is not None:
                progress(seen)
            if not ex.messages:
                if left_out is not None:
                    left_out["no messages"] = left_out.get("no messages", 0) + 1
                continue
            doc = to_atif(ex, file_metadata=file_metadata, tokens=tokens)
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
            count += 1
    return count
