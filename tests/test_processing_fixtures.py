"""Shared test data for the processing tests: small seed-shaped training data in both layouts.

Not tests themselves; imported by tests/test_processing_*.py and tests/test_cli_process*.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentdata_tui.records import Example
from agentdata_tui.writer import write_training_data

SEED_METADATA = {
    "model_name": "Qwen/Qwen3-8B",
    "temperature": 1.0,
    "max_tokens": 8000,
    "config_file": "/path/to/config.yaml",
    "dataset_file": "/path/to/dataset.json",
    "workers": 4,
}

DIFF = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"


def text_mode_messages(task: str, think: bool = False) -> list[dict[str, Any]]:
    first = "THOUGHT: look at the code.\n\n```bash\ncat calc.py\n```"
    if think:
        first = "<think>\nThe bug is probably in add.\n</think>\n\n" + first
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Please solve this issue: {task}"},
        {"role": "assistant", "content": first},
        {
            "role": "user",
            "content": "<returncode>0</returncode>\n<output>\ndef add(a, b):\n    return a - b\n</output>",
        },
        {"role": "assistant", "content": "THOUGHT: fix it.\n\n```bash\nsed -i 's/a - b/a + b/' calc.py\n```"},
        {"role": "user", "content": "<returncode>0</returncode>\n<output>\n</output>"},
        {"role": "assistant", "content": "Done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"},
    ]


def tool_mode_messages(task: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Please solve this issue: {task}"},
        {
            "role": "assistant",
            "content": "Running a command.",
            "reasoning_content": "I should read calc.py first.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "bash", "arguments": '{"command": "cat calc.py"}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": "<returncode>1</returncode>\n<output>\nboom\n</output>",
        },
    ]


def seed_examples() -> list[dict[str, Any]]:
    """Nine examples: three instances x three samples, mixed modes, rewards, statuses."""
    out = []
    plan = [
        # instance, sample, reward, success, exit_status, mode, speedup
        ("task_001", 0, 1.0, True, "Submitted", "text", 1.5),
        ("task_001", 1, 0.0, False, "LimitsExceeded", "tool", None),
        ("task_001", 2, 1.0, True, "Submitted", "think", 2.5),
        ("task_002", 0, 0.0, False, "FormatError", "tool", None),
        ("task_002", 1, 0.0, False, "Submitted", "text", None),
        ("task_002", 2, 0.55, True, "Submitted", "text", 1.2),
        ("task_003", 0, 0.0, False, "LimitsExceeded", "tool", None),
        ("task_003", 1, 0.0, False, "LimitsExceeded", "text", None),
        ("task_003", 2, 0.25, False, "Submitted", "think", 1.0),
    ]
    for iid, sample, reward, success, status, mode, speedup in plan:
        task = f"Fix add() in calc.py ({iid})"
        messages = (
            tool_mode_messages(task) if mode == "tool" else text_mode_messages(task, think=mode == "think")
        )
        n_assistant = sum(1 for m in messages if m["role"] == "assistant")
        out.append(
            {
                "instance_id": iid,
                "problem_statement": task,
                "messages": messages,
                "git_diff": DIFF if success else "",
                "exit_status": status,
                "reward": reward,
                "speedup": speedup,
                "success": success,
                "model_calls": n_assistant,
                "evaluation_info": {"status": "correct" if success else "tests_failed"},
                "error": None,
                "metadata": {"worker": sample},
                "sample_index": sample,
                "attempt": 1,
                "steps": [
                    {"prompt_tokens": 100 * (i + 1), "completion_tokens": 10, "command": None}
                    for i in range(n_assistant)
                ],
            }
        )
    return out


def summary_of(examples: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(examples)
    ok = sum(1 for e in examples if e["success"])
    return {
        "total_examples": n,
        "successful": ok,
        "failed": n - ok,
        "average_reward": sum(e["reward"] for e in examples if isinstance(e["reward"], float)) / n
        if n
        else 0.0,
        "total_model_calls": sum(e["model_calls"] for e in examples),
    }


def write_seed_file(path: Path, examples: list[dict[str, Any]] | None = None) -> Path:
    """The seed's layout, pretty-printed (indent=2): read through the ijson path."""
    examples = seed_examples() if examples is None else examples
    doc = {"metadata": SEED_METADATA, "examples": examples, "summary": summary_of(examples)}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def write_fast_file(path: Path, examples: list[dict[str, Any]] | None = None) -> Path:
    """The same data written by TrainingDataWriter (line-per-example fast path)."""
    examples = seed_examples() if examples is None else examples
    write_training_data(path, (Example.model_validate(e) for e in examples), SEED_METADATA)
    return path
