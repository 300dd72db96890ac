"""Run folders in the events.jsonl v1 schema (DESIGN §3), for the dashboard's tests and screenshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentdata_tui.records import Example
from agentdata_tui.writer import dumps, write_training_data

T0 = 1_700_000_000.0


def example(i: int, *, reward: float, sample: int = 0, long_output: bool = False) -> Example:
    listing = "\n".join(f"src/module_{j}.py" for j in range(60 if long_output else 3))
    return Example(
        instance_id=f"demo__task-{i % 5}",
        problem_statement=f"Task {i % 5}: the paginator drops the last page when total is a multiple of {i % 5 + 2}.",
        messages=[
            {"role": "system", "content": "You are a helpful assistant that can interact with a computer."},
            {"role": "user", "content": f"Please solve this issue: task {i % 5}"},
            {
                "role": "assistant",
                "content": "THOUGHT: Let me look at the repository first.\n\n```bash\nls -R src | head\n```",
                "reasoning_content": "The bug is probably an off-by-one in page_range.",
            },
            {"role": "user", "content": f"<returncode>0</returncode>\n<output>\n{listing}\n</output>"},
            {
                "role": "assistant",
                "content": "THOUGHT: Fix the range bound.\n\n```bash\nsed -i 's/range(1, n)/range(1, n + 1)/' paginator.py"
                " && echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```",
            },
        ],
        git_diff=(
            "diff --git a/paginator.py b/paginator.py\n--- a/paginator.py\n+++ b/paginator.py\n"
            "@@ -10,3 +10,3 @@ def page_range(total, per_page):\n-    return range(1, n)\n+    return range(1, n + 1)\n"
        ),
        exit_status="Submitted",
        reward=reward,
        speedup=1.8 if i % 5 == 4 else None,
        success=reward >= 1.0,
        model_calls=2,
        evaluation_info={
            "status": "correct" if reward >= 1.0 else "tests_failed",
            "tests": {"passed": 3, "failed": 0 if reward >= 1 else 1},
        },
        sample_index=sample,
        steps=[
            {
                "model_latency_s": 0.8,
                "prompt_tokens": 1200,
                "completion_tokens": 60,
                "finish_reason": "stop",
                "command": "ls -R src | head",
                "returncode": 0,
                "exec_time_s": 0.01,
            },
            {
                "model_latency_s": 1.1,
                "prompt_tokens": 1500,
                "completion_tokens": 80,
                "finish_reason": "stop",
                "command": "sed -i 's/range(1, n)/range(1, n + 1)/' paginator.py",
                "returncode": 0,
                "exec_time_s": 0.02,
            },
        ],
        metadata={"model_name": "test-model", "worker": i % 4},
    )


def examples(n: int = 12, samples: int = 1) -> list[Example]:
    rewards = [1.0, 0.0, 1.0, 0.5, 1.0, 0.0, 0.25, 1.0]
    return [
        example(i, reward=rewards[i % len(rewards)], sample=i // 5 if samples > 1 else 0, long_output=i == 0)
        for i in range(n)
    ]


def write_file(path: Path, n: int = 12, samples: int = 1) -> Path:
    write_training_data(path, examples(n, samples), {"model_name": "test-model", "workers": 4})
    return path


def write_run(
    run_dir: Path,
    *,
    total: int = 8,
    finished: int = 8,
    workers: int = 4,
    complete: bool = True,
    pid: int | None = None,
) -> Path:
    """A run folder as the runner leaves it: ``finished`` rollouts done, the rest in flight."""
    run_dir.mkdir(parents=True, exist_ok=True)
    events: list[dict[str, Any]] = []
    t = T0

    def emit(type_: str, **fields: Any) -> None:
        events.append({"v": 1, "t": round(t, 3), "type": type_, **fields})

    emit(
        "run_started",
        run_id="run-0001",
        total=total,
        workers=workers,
        settings={"model": "test-model", "workers": workers},
    )
    # Finished rollouts are distinct (instance, sample) pairs, as in a real run (readers keep one
    # example per pair); the in-flight ones keep sample 0, which the snapshots show.
    exs = [
        ex if i < 5 or i >= finished else ex.model_copy(update={"sample_index": i // 5})
        for i, ex in enumerate(examples(total))
    ]
    lines = []
    for i, ex in enumerate(exs):
        t += 1.0
        rid = f"r{i}"
        emit(
            "rollout_started",
            rollout_id=rid,
            instance_id=ex.instance_id,
            sample_index=ex.sample_index,
            attempt=1,
            worker=i % workers,
            problem_statement=ex.problem_statement,
        )
        n_steps = 2 if i < finished else 1
        for s in range(n_steps):
            t += 0.5
            msg = ex.messages[2 + 2 * s]
            emit(
                "step",
                rollout_id=rid,
                step=s + 1,
                command=ex.steps[s].command,
                returncode=0,
                prompt_tokens=1200,
                completion_tokens=60,
                model_latency_s=0.8,
                exec_time_s=0.01,
                assistant=msg["content"],
                observation=ex.messages[3]["content"] if s == 0 else "",
            )
        if i < finished:
            t += 0.5
            emit(
                "rollout_finished",
                rollout_id=rid,
                exit_status=ex.exit_status,
                reward=ex.reward,
                speedup=ex.speedup,
                success=ex.success,
                model_calls=2,
                error=None,
            )
            lines.append(dumps(ex.to_dict()))
    if complete:
        t += 0.5
        emit("run_finished", counts={"done": finished}, elapsed=t - T0)
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    (run_dir / "examples.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    run_json: dict[str, Any] = {
        "run_id": "run-0001",
        "status": "finished" if complete else "running",
        "metadata": {"model_name": "test-model"},
    }
    if pid is not None:
        run_json["pid"] = pid
    (run_dir / "run.json").write_text(json.dumps(run_json), encoding="utf-8")
    return run_dir


def compare_inputs(folder: Path) -> tuple[Path, Path]:
    """Two 'models' on the same three tasks, two samples each, with patches that differ."""

    def patched(ex: Example, line: str, extra_file: bool = False) -> Example:
        diff = (
            "diff --git a/paginator.py b/paginator.py\n--- a/paginator.py\n+++ b/paginator.py\n"
            f"@@ -10,3 +10,3 @@ def page_range(total, per_page):\n-    return range(1, n)\n+    {line}\n"
        )
        if extra_file:
            diff += (
                "diff --git a/tests/test_pages.py b/tests/test_pages.py\n--- a/tests/test_pages.py\n"
                "+++ b/tests/test_pages.py\n@@ -1,2 +1,3 @@\n import paginator\n+assert True\n"
            )
        ex.git_diff = diff
        return ex

    a, b = [], []
    for i in range(6):
        task, sample = i % 3, i // 3
        ea = example(task, reward=1.0 if sample == 0 else 0.0, sample=sample)
        a.append(patched(ea, "return range(1, n + 1)"))
        eb = example(task, reward=1.0 if task != 1 else 0.0, sample=sample)
        if task == 2:
            ea.speedup = 1.6 if sample == 0 else 1.3  # the second one failed its tests: not counted
            eb.speedup = 16.9 if sample == 1 else 2.3
        for ex in (ea, eb):
            if ex.speedup is not None:
                ex.evaluation_info = dict(
                    ex.evaluation_info or {},
                    speedup=ex.speedup,
                    min_speedup=1.2,
                    speedup_flagged=ex.speedup > 10,
                    speedup_test={
                        "name": "mann_whitney_u",
                        "alternative": "patched_faster",
                        "alpha": 0.05,
                        "p_value": 0.004,
                        "significant": True,
                    },
                )
        b.append(
            patched(
                eb, "return range(1, n + 2)" if task == 1 else "return range(1, n + 1)", extra_file=task == 0
            )
        )
        ea.metadata = dict(ea.metadata, model_name="model-a")
        eb.metadata = dict(eb.metadata, model_name="model-b")
    pa, pb = folder / "model_a.json", folder / "model_b.json"
    write_training_data(pa, a, {"model_name": "model-a"})
    write_training_data(pb, b, {"model_name": "model-b"})
    return pa, pb
