"""Soak of the run store (issue 8): SIGKILL a real run at 10 seeded random moments, resume each time.

A ``generate-multi`` run (its own process, the real local sandbox, model client, run store and
event log) against the loopback model server is killed with SIGKILL when its event log has grown
by a seeded random number of events — so the kill lands anywhere: mid-step, mid-evaluation,
mid-write of ``examples.jsonl`` — then resumed with ``--resume``; after the last kill a final
resume runs to the end. Then it prints, with the seed:

    pairs expected / recorded / lost / duplicated

``recorded``: (instance, sample) pairs in the final ``X.json``; ``lost``: expected pairs missing
from it; ``duplicated``: pairs appearing more than once in ``X.json`` plus attempts written more than
once to ``examples.jsonl``. Both must be 0 (exit 1 otherwise).

    python tests/benchmarks/soak_sigkill.py                 # a random seed, printed
    python tests/benchmarks/soak_sigkill.py --seed 7 --tasks 40 --samples 2 --kills 10

Not collected by pytest.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import socketserver
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS))

from servers.model_server import ModelServer, ScriptedResponder  # noqa: E402

# A SIGKILLed run drops its connections mid-request: the server's tracebacks about it are noise here.
socketserver.BaseServer.handle_error = lambda self, request, client_address: None  # type: ignore[method-assign]


def write_dataset(folder: Path, n: int) -> Path:
    items = [
        {
            "instance_id": f"task-{i:03d}",
            "problem_statement": f"Write data-task-{i:03d} into out.txt. [task-{i:03d}]",
            "eval": {"test_command": f"grep -q data-task-{i:03d} out.txt", "timeout": 30},
        }
        for i in range(n)
    ]
    path = folder / "dataset.json"
    path.write_text(json.dumps(items))
    return path


def scripts(n: int, steps: int) -> dict[str, list[str]]:
    out = {}
    for i in range(n):
        iid = f"task-{i:03d}"
        filler = [f"THOUGHT: look.\n\n```bash\nls -la && echo step{k}\n```" for k in range(steps - 1)]
        out[f"[{iid}]"] = [
            *filler,
            f"THOUGHT: write it.\n\n```bash\necho data-{iid} > out.txt\n```",
            "THOUGHT: done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```",
        ]
    return out


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--latency", type=float, default=0.05, help="model reply latency, seconds")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="agentdata-soak-"))
    dataset = write_dataset(tmp, args.tasks)
    out = tmp / "soak.json"
    run_dir = tmp / "soak.run"
    events = run_dir / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["PYTHONPATH"] = str(TESTS.parent)
    expected = args.tasks * args.samples
    # events per pair: run_started share, rollout_started, steps, rollout_finished
    per_pair = args.steps + 3
    t0 = time.monotonic()
    with ModelServer(ScriptedResponder(scripts(args.tasks, args.steps)), latency=args.latency) as server:
        cmd = [
            sys.executable, "-m", "agentdata_tui", "generate-multi",
            "--dataset", str(dataset), "--base-url", server.base_url, "--model", "test-model",
            "--output", str(out), "--workers", str(args.workers), "--samples-per-task", str(args.samples),
        ]  # fmt: skip
        kills = 0
        for k in range(args.kills):
            extra = ["--resume"] if k else []
            before = count_lines(events)
            # a moment: after 1..(four rounds of every worker's rollouts) more events, so each
            # session gets somewhere and the kill lands mid-step, mid-evaluation or mid-write
            wait_for = rng.randint(1, 4 * per_pair * args.workers)
            proc = subprocess.Popen(
                cmd + extra,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            while proc.poll() is None and count_lines(events) < before + wait_for:
                time.sleep(0.005)  # polling a file the run grows: the moment is the event count
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the run and its sandboxes' commands
                kills += 1
            proc.wait()
            print(
                f"  kill {k + 1}: after {count_lines(events) - before} events "
                f"(moment {wait_for}), {count_lines(run_dir / 'examples.jsonl')} attempts recorded so far",
                flush=True,
            )
            if proc.returncode not in (0, -signal.SIGKILL):
                print(f"run {k} failed (exit {proc.returncode}): {proc.stderr.read().decode()[-500:]}")
                return 1
            proc.stderr.close()
        final = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=1800)
        if final.returncode != 0:
            print(f"final resume failed (exit {final.returncode}): {final.stderr[-800:]}")
            return 1
    elapsed = time.monotonic() - t0
    doc = json.loads(out.read_text())
    pairs = collections.Counter((e["instance_id"], e["sample_index"]) for e in doc["examples"])
    want = {(f"task-{i:03d}", s) for i in range(args.tasks) for s in range(args.samples)}
    attempts = collections.Counter()
    for line in (run_dir / "examples.jsonl").read_bytes().splitlines():
        if line.strip():
            d = json.loads(line)
            attempts[(d["instance_id"], d["sample_index"], d["attempt"])] += 1
    recorded = len(set(pairs) & want)
    lost = len(want - set(pairs))
    duplicated = sum(n - 1 for n in pairs.values() if n > 1) + sum(n - 1 for n in attempts.values() if n > 1)
    print(
        f"seed {seed}: {kills} SIGKILLs + final resume, {elapsed:.1f}s; "
        f"pairs expected {expected} / recorded {recorded} / lost {lost} / duplicated {duplicated}",
        flush=True,
    )
    print(f"(run folder kept: {run_dir})")
    return 0 if lost == 0 and duplicated == 0 and recorded == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
