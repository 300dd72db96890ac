"""Benchmark of the processing subcommands on a realistic large training-data file.

Generates a ~1 GB file (about 20k examples of 30 messages with long tool outputs) with
:class:`TrainingDataWriter`, then runs ``analyze``, ``filter_data`` and ``export_sft`` each as
a subprocess through the real CLI and prints seconds, MB/s (input size / wall time) and the
subprocess's peak RSS. Targets (issue 2 §5): >= 100 MB/s and <= 300 MB peak RSS each.

    python tests/benchmarks/bench_processing.py              # ~1 GB
    python tests/benchmarks/bench_processing.py --size-mb 100 --keep /tmp/bench

Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentdata_tui.records import Example
from agentdata_tui.writer import TrainingDataWriter

TARGET_MBPS = 100.0
TARGET_RSS_MB = 300.0
MESSAGES = 30  # system + task + 14 (assistant, observation) pairs


def _observation(rng: random.Random, size: int) -> str:
    lines = []
    n = 0
    while n < size:
        line = f"src/module_{rng.randrange(500)}.py:{rng.randrange(2000)}: " + "x" * rng.randrange(20, 100)
        lines.append(line)
        n += len(line) + 1
    return "<returncode>0</returncode>\n<output>\n" + "\n".join(lines) + "\n</output>"


def _template(rng: random.Random, tool_mode: bool, obs_size: int) -> Example:
    messages = [
        {"role": "system", "content": "You are a helpful assistant that can interact with a computer. " * 20},
        {"role": "user", "content": "Please solve this issue: the parser drops the last record. " * 30},
    ]
    steps = []
    for i in range((MESSAGES - 2) // 2):
        command = f"grep -rn 'def parse' src/ | head -{i + 50}"
        if tool_mode:
            messages.append(
                {
                    "role": "assistant",
                    "content": f"Looking at the parser, step {i}.",
                    "reasoning_content": "I should inspect the parser code first. " * 10,
                    "tool_calls": [
                        {
                            "id": f"call_{i}",
                            "type": "function",
                            "function": {"name": "bash", "arguments": '{"command": "' + command + '"}'},
                        }
                    ],
                }
            )
            messages.append(
                {"role": "tool", "tool_call_id": f"call_{i}", "content": _observation(rng, obs_size)}
            )
        else:
            messages.append(
                {
                    "role": "assistant",
                    "content": "<think>\nThe parser likely has an off-by-one error.\n</think>\n\n"
                    f"THOUGHT: step {i}.\n\n```bash\n{command}\n```",
                }
            )
            messages.append({"role": "user", "content": _observation(rng, obs_size)})
        steps.append(
            {
                "model_latency_s": 1.5,
                "prompt_tokens": 4000 + 300 * i,
                "completion_tokens": 150,
                "finish_reason": "stop",
                "command": command,
                "returncode": 0,
                "exec_time_s": 0.05,
            }
        )
    return Example.model_validate(
        {
            "instance_id": "template",
            "problem_statement": "the parser drops the last record",
            "messages": messages,
            "git_diff": "diff --git a/src/p.py b/src/p.py\n--- a/src/p.py\n+++ b/src/p.py\n@@ -1 +1 @@\n-a\n+b\n"
            * 20,
            "exit_status": "Submitted",
            "model_calls": len(steps),
            "evaluation_info": {"status": "correct", "tests_passed": 12},
            "steps": steps,
        }
    )


def generate(path: Path, size_mb: float, seed: int = 0) -> int:
    """Write a ~size_mb training-data file; returns the number of examples.

    A few templates are built once and varied (ids, rewards, sample indices) so generation
    stays fast; serialisation still goes through the real writer.
    """
    rng = random.Random(seed)
    per_example = 50_000  # bytes, about: 14 observations of ~2.6 kB plus the rest
    n = max(1, int(size_mb * 1e6 / per_example))
    templates = [_template(rng, tool_mode=i % 2 == 1, obs_size=2600) for i in range(4)]
    statuses = ["Submitted", "Submitted", "Submitted", "LimitsExceeded", "FormatError"]
    with TrainingDataWriter(path, {"model_name": "bench-model", "dataset_file": "bench.json"}) as w:
        for i in range(n):
            base = templates[i % len(templates)]
            reward = round(rng.random(), 3) if i % 3 else 0.0
            ex = base.model_copy(
                update={
                    "instance_id": f"task_{i // 4:05d}",
                    "sample_index": i % 4,
                    "reward": reward,
                    "success": reward >= 0.5,
                    "speedup": round(0.8 + rng.random() * 2, 3) if i % 5 == 0 else None,
                    "exit_status": statuses[i % len(statuses)],
                }
            )
            w.write(ex)
    return n


def run_measured(cmd: list[str]) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB, exit code) of one subprocess, from wait4's
    per-child rusage. CPU time is printed too: on a shared machine, wall time also counts
    waiting for the disk and for other processes."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{err}", file=sys.stderr)
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


def components(data: Path, n: int = 3000) -> None:
    """In-process throughput of the per-example steps the commands spend their time in, and of
    the pydantic-core alternatives (for deciding where to optimise the reader and writer)."""
    import gc
    import itertools
    import json

    from pydantic_core import to_json

    from agentdata_tui.processing.export import sft_record
    from agentdata_tui.writer import dumps

    lines = []
    with open(data, "rb") as fh:
        fh.readline()
        fh.readline()
        for line in itertools.islice(fh, n):
            lines.append(line[:-2] if line.endswith(b",\n") else line[:-1])
    gc.freeze()
    mb = sum(map(len, lines)) / 1e6
    examples = [Example.model_validate_json(line) for line in lines[:300]]
    ex_mb = mb * len(examples) / len(lines)

    def rate(fn, items, size) -> float:
        start = time.perf_counter()
        for item in items:
            fn(item)
        return size / (time.perf_counter() - start)

    print(f"components over {len(lines):,} examples ({mb:,.0f} MB), MB/s:")
    print(f"  read  json.loads                    {rate(json.loads, lines, mb):8.0f}")
    print(
        f"  read  json.loads + model_validate   {rate(lambda b: Example.model_validate(json.loads(b)), lines, mb):8.0f}"
    )
    print(f"  read  model_validate_json           {rate(Example.model_validate_json, lines, mb):8.0f}")
    print(f"  write dumps(model_dump(mode=json))  {rate(lambda e: dumps(e.to_dict()), examples, ex_mb):8.0f}")
    print(
        f"  write model_dump_json               {rate(lambda e: e.model_dump_json(), examples, ex_mb):8.0f}"
    )
    print(
        f"  sft   sft_record + to_json          {rate(lambda e: to_json(sft_record(e)), examples, ex_mb):8.0f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=1000.0, help="size of the generated file (default 1000)")
    ap.add_argument(
        "--keep", metavar="DIR", help="work in DIR and keep the files (default: a temp dir, removed)"
    )
    ap.add_argument(
        "--components",
        action="store_true",
        help="also print in-process throughput of reading, validating and serialising one example",
    )
    args = ap.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_processing."))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "training_data.json"
    try:
        t0 = time.perf_counter()
        n = generate(data, args.size_mb)
        size_mb = data.stat().st_size / 1e6
        print(f"generated {n:,} examples, {size_mb:,.0f} MB in {time.perf_counter() - t0:.1f} s -> {data}")

        cli = [sys.executable, "-m", "agentdata_tui"]
        runs = {
            "analyze": [*cli, "analyze", "--input", str(data), "--json"],
            "filter_data": [
                *cli,
                "filter_data",
                "--input",
                str(data),
                "--output",
                str(work / "filtered.json"),
                "--min-reward",
                "0.3",
            ],
            "export_sft": [*cli, "export_sft", "--input", str(data), "--output", str(work / "sft.jsonl")],
        }
        print(
            f"{'command':<14}{'seconds':>9}{'MB/s':>9}{'CPU s':>8}{'MB/CPU s':>10}{'peak RSS MB':>13}  verdict"
        )
        ok = True
        for name, cmd in runs.items():
            secs, cpu, rss, code = run_measured(cmd)
            mbps = size_mb / secs
            good = code == 0 and mbps >= TARGET_MBPS and rss <= TARGET_RSS_MB
            ok &= good
            print(
                f"{name:<14}{secs:>9.2f}{mbps:>9.1f}{cpu:>8.2f}{size_mb / cpu:>10.1f}{rss:>13.1f}"
                f"  {'ok' if good else 'MISSED'}"
            )
        print(f"targets: >= {TARGET_MBPS:.0f} MB/s and <= {TARGET_RSS_MB:.0f} MB peak RSS per command")
        if args.components:
            components(data)
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
