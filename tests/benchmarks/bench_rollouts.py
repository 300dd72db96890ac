"""Benchmark of the rollout engine (issue 3 §7): throughput and the runner's own CPU per step.

A loopback model server (its own process, so it does not steal the runner's CPU or GIL)
answers every chat request after a fixed latency; the runner drives 10-step rollouts
(9 trivial commands, then the submission) in the real local sandbox, with the real model
client, agent loop, run store and event log. Per setting it prints:

- rollouts/s achieved against the ideal ``workers / (10 × latency)`` (target ≥ 90 %);
- the runner process's own CPU per step, children excluded (target ≤ 4 ms), and the
  children's (the sandboxes' bash/git processes) per step.

    python tests/benchmarks/bench_rollouts.py                       # 64 workers @ 1 s, 256 @ 2 s
    python tests/benchmarks/bench_rollouts.py --setting 16:0.5 --rounds 2

Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
STEPS = 10
TARGET_RATIO = 0.90
TARGET_CPU_MS = 4.0

SERVER_CODE = textwrap.dedent(
    """
    import sys, json, threading
    sys.path.insert(0, {tests!r})
    from servers.model_server import ModelServer, Reply

    steps = {steps}
    def responder(body):
        n = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
        if n + 1 >= steps:
            return Reply(content="THOUGHT: done\\n\\n```bash\\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\\n```")
        return Reply(content=f"THOUGHT: step {{n + 1}}\\n\\n```bash\\necho step {{n + 1}}\\n```")

    server = ModelServer(responder, latency={latency})
    if hasattr(server, "record"):
        server.record = False  # do not keep every request in memory
    server.start()
    print(server.base_url, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop()
    """
)


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    code = SERVER_CODE.format(tests=str(TESTS), steps=STEPS, latency=latency)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http"):
        proc.kill()
        raise SystemExit("the model server did not start")
    return proc, base_url


def run_setting(workers: int, latency: float, rounds: int, keep: Path | None) -> dict[str, float]:
    from agentdata_tui.config import load_config
    from agentdata_tui.dataset import load_dataset
    from agentdata_tui.model.client import OpenAIModel
    from agentdata_tui.runner import Runner, RunSpec
    from agentdata_tui.runner.components import evaluator_for, sandbox_maker

    work = Path(tempfile.mkdtemp(prefix="bench-rollouts-", dir=keep))
    n = workers * rounds
    items = [{"instance_id": f"bench-{i:05d}", "problem_statement": f"Benchmark task {i}."} for i in range(n)]
    (work / "dataset.json").write_text(json.dumps(items))
    dataset = load_dataset(work / "dataset.json")
    config = load_config()
    config.agent.cost_limit = 0
    server, base_url = start_server(latency)
    try:
        model = OpenAIModel(base_url, "bench-key", "bench-model", config.model, pool_size=workers)
        make = sandbox_maker(dataset, config)
        spec = RunSpec(
            dataset=dataset,
            instances=dataset.instances,
            config=config,
            output=work / "out.json",
            workers=workers,
            metadata={"model_name": "bench-model"},
        )
        runner = Runner(spec, model=model, evaluator=evaluator_for("local", make), make_sandbox=make)
        t_self0 = os.times()
        wall0 = time.monotonic()
        outcome = runner.run()
        wall = time.monotonic() - wall0
        t_self1 = os.times()
        model.close()
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(30)
    steps, durations = _event_figures(work / "out.run" / "events.jsonl")
    own_user = t_self1.user - t_self0.user
    own_sys = t_self1.system - t_self0.system
    own = own_user + own_sys
    children = (t_self1.children_user - t_self0.children_user) + (
        t_self1.children_system - t_self0.children_system
    )
    ideal = workers / (STEPS * latency)
    achieved = outcome.counts["finished"] / wall
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "workers": workers,
        "latency_s": latency,
        "rollouts": outcome.counts["finished"],
        "errors": outcome.counts["errors"],
        "steps": steps,
        "wall_s": wall,
        "rollouts_per_s": achieved,
        "ideal_per_s": ideal,
        "ratio": achieved / ideal,
        "runner_cpu_ms_per_step": own / steps * 1000 if steps else float("nan"),
        "runner_user_ms_per_step": own_user / steps * 1000 if steps else float("nan"),
        "runner_sys_ms_per_step": own_sys / steps * 1000 if steps else float("nan"),
        "children_cpu_ms_per_step": children / steps * 1000 if steps else float("nan"),
        "mean_rollout_s": statistics.mean(durations) if durations else float("nan"),
        "ideal_rollout_s": STEPS * latency,
        "load_avg": os.getloadavg()[0],
    }


def _event_figures(path: Path) -> tuple[int, list[float]]:
    """Steps, and each rollout's wall time (rollout_started → rollout_finished), from the event log."""
    steps = 0
    started: dict[str, float] = {}
    durations: list[float] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            ev = json.loads(line)
            kind = ev["type"]
            if kind == "step":
                steps += 1
            elif kind == "rollout_started":
                started[ev["rollout_id"]] = ev["t"]
            elif kind == "rollout_finished" and ev["rollout_id"] in started:
                durations.append(ev["t"] - started[ev["rollout_id"]])
    return steps, durations


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--setting",
        action="append",
        default=None,
        metavar="WORKERS:LATENCY",
        help="one setting (repeatable); default: 64:1 and 256:2",
    )
    ap.add_argument("--rounds", type=int, default=3, help="rollouts per worker (default 3)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folders under this folder")
    args = ap.parse_args()
    settings = args.setting or ["64:1", "256:2"]
    ok = True
    for setting in settings:
        w, _, lat = setting.partition(":")
        r = run_setting(int(w), float(lat), args.rounds, args.keep)
        ratio_ok = r["ratio"] >= TARGET_RATIO
        cpu_ok = r["runner_cpu_ms_per_step"] <= TARGET_CPU_MS
        ok = ok and ratio_ok and cpu_ok and r["errors"] == 0
        print(
            f"{r['workers']:4d} workers @ {r['latency_s']:g}s latency: {r['rollouts']} rollouts "
            f"({r['steps']} steps, {r['errors']} errors) in {r['wall_s']:.1f}s\n"
            f"    throughput {r['rollouts_per_s']:.2f} rollouts/s vs ideal {r['ideal_per_s']:.2f} "
            f"= {r['ratio'] * 100:.1f}% (target >= {TARGET_RATIO * 100:.0f}%) {'OK' if ratio_ok else 'MISSED'}\n"
            f"    runner CPU {r['runner_cpu_ms_per_step']:.2f} ms/step (user {r['runner_user_ms_per_step']:.2f}, "
            f"system {r['runner_sys_ms_per_step']:.2f}; target <= {TARGET_CPU_MS:g}) "
            f"{'OK' if cpu_ok else 'MISSED'}; children CPU {r['children_cpu_ms_per_step']:.2f} ms/step\n"
            f"    one rollout takes {r['mean_rollout_s']:.2f}s on average vs {r['ideal_rollout_s']:g}s of model "
            f"latency ({r['ideal_rollout_s'] / r['mean_rollout_s'] * 100:.1f}%); machine load average "
            f"{r['load_avg']:.1f} at the end",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
