"""Benchmark of the rollout engine (issue 3 §7, issue 13 §1): throughput, CPU, memory, where the time goes.

A loopback model server (its own process, so it does not steal the runner's CPU or GIL)
answers every chat request after a fixed latency; the runner drives 10-step rollouts (9
commands appending to a file, so each rollout has a patch to grade, then the submission) in
the real local sandbox, with the real model client, agent loop, run store and event log. Per
setting it prints:

- rollouts/s achieved against the ideal ``workers / (10 × latency)`` (target ≥ 90 %);
- the runner process's own CPU per step, children excluded (target ≤ 4 ms), and the
  children's (the sandboxes' bash/git processes) per step;
- the runner's peak RSS;
- where a rollout's time went (from each example's ``metadata.timings`` and the event log):
  sandbox preparation (in the background, behind the first model call), agent, evaluation
  (each task has a test command, so the built-in evaluator grades in a fresh sandbox), and the
  final write (last rollout recorded → ``run_finished``).

    python tests/benchmarks/bench_rollouts.py                       # 64 workers @ 1 s, 256 @ 2 s
    python tests/benchmarks/bench_rollouts.py --setting 1024:10 --rounds 1   # the 1,024 setting
    python tests/benchmarks/bench_rollouts.py --setting 16:0.5 --rounds 2
    python tests/benchmarks/bench_rollouts.py --setting 64:1 --executor ray  # Ray vs threads, same load

``--executor ray`` runs the same load through the Ray executor on a Ray started here (one
node, the actors' CPU is not the runner's: compare throughput and the driver's CPU per step).
Goals (issue 13): ≥ 90 % of ideal at 1,024 @ 10 s and ≥ 95 % at 64 @ 1 s on 2 cores.

Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
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
        return Reply(content=f"THOUGHT: step {{n + 1}}\\n\\n```bash\\necho step {{n + 1}} >> notes.txt\\n```")

    server = ModelServer(responder, latency={latency})
    if hasattr(server, "record"):
        server.record = False  # do not keep every request in memory
    server.start()
    print(server.base_url, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop()
    """
)


class CpuMeter:
    """CPU of everything this benchmark starts (runner, model server, sandboxes and what runs in
    them, reaped or not) from a cgroup of its own, where the machine lets us make one (root):
    a load-independent figure, unlike the wall-clock ratio on a shared machine. None otherwise."""

    def __init__(self) -> None:
        self.read = None
        for base, name, reader in (
            ("/sys/fs/cgroup/cpuacct", "cpuacct.usage", lambda t: int(t) / 1e9),
            ("/sys/fs/cgroup", "cpu.stat", lambda t: int(t.split()[1]) / 1e6),
        ):
            folder = Path(base) / f"bench-rollouts-{os.getpid()}"
            try:
                folder.mkdir(exist_ok=True)
                (folder / "cgroup.procs").write_text(str(os.getpid()))
                path = folder / name
                path.read_text()
            except OSError:
                continue
            self.read = lambda path=path, reader=reader: reader(path.read_text())
            atexit.register(self._remove, folder)
            return

    @staticmethod
    def _remove(folder: Path) -> None:
        try:
            (folder.parent / "cgroup.procs").write_text(str(os.getpid()))
            folder.rmdir()  # refused while a straggler still runs in it: left for the reboot
        except OSError:
            pass

    def seconds(self) -> float | None:
        return self.read() if self.read else None


CPU = CpuMeter()


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


def run_setting(
    workers: int,
    latency: float,
    rounds: int,
    keep: Path | None,
    *,
    executor: str = "thread",
    evaluate: bool = True,
) -> dict[str, float]:
    from agentdata_tui.config import load_config
    from agentdata_tui.dataset import load_dataset
    from agentdata_tui.model.client import OpenAIModel
    from agentdata_tui.runner import Runner, RunSpec
    from agentdata_tui.runner.components import evaluator_for, sandbox_maker

    work = Path(tempfile.mkdtemp(prefix="bench-rollouts-", dir=keep))
    n = workers * rounds
    items = [{"instance_id": f"bench-{i:05d}", "problem_statement": f"Benchmark task {i}."} for i in range(n)]
    if evaluate:  # graded by the built-in evaluator, in a fresh sandbox per rollout
        for item in items:
            item["eval"] = {"test_command": "test -d .", "timeout": 60}
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
        ex = None
        if executor == "ray":
            from agentdata_tui.runner.ray_executor import PartsRecipe, RayExecutor

            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # 127.0.0.1 only
            import ray

            if not ray.is_initialized():  # started before the clock: its start-up is not the run's
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            recipe = PartsRecipe(config, dataset, [base_url], "bench-key", "bench-model")
            ex = RayExecutor(None, recipe)
        runner = Runner(
            spec,
            model=model,
            evaluator=evaluator_for("local", make, pool_size=workers),
            make_sandbox=make,
            executor=ex,
        )
        t_self0 = os.times()
        cpu0 = CPU.seconds()
        wall0 = time.monotonic()
        outcome = runner.run()
        wall = time.monotonic() - wall0
        t_self1 = os.times()
        cpu1 = CPU.seconds()
        model.close()
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(30)
    steps, durations, final_write = _event_figures(work / "out.run" / "events.jsonl")
    timings = _timings(work / "out.run" / "examples.jsonl")
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    own_user = t_self1.user - t_self0.user
    own_sys = t_self1.system - t_self0.system
    own = own_user + own_sys
    children = (t_self1.children_user - t_self0.children_user) + (
        t_self1.children_system - t_self0.children_system
    )
    machine = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else float("nan")
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
        "peak_rss_mb": peak_rss_mb,
        "machine_cpu_ms_per_rollout": machine / max(outcome.counts["finished"], 1) * 1000,
        "machine_cpu_share": machine / (wall * (os.cpu_count() or 1)),
        "final_write_s": final_write,
        "executor": executor,
        **timings,
    }


def _timings(path: Path) -> dict[str, float]:
    """Mean and 95th percentile of each phase over the recorded rollouts."""
    phases: dict[str, list[float]] = {
        "sandbox_start_s": [],
        "agent_s": [],
        "diff_s": [],
        "eval_s": [],
        "total_s": [],
    }
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            t = (json.loads(line).get("metadata") or {}).get("timings") or {}
            for k, v in phases.items():
                if k in t:
                    v.append(float(t[k]))
    out: dict[str, float] = {}
    for k, v in phases.items():
        v.sort()
        out[f"{k}_mean"] = statistics.mean(v) if v else float("nan")
        out[f"{k}_p95"] = v[int(0.95 * (len(v) - 1))] if v else float("nan")
    return out


def _event_figures(path: Path) -> tuple[int, list[float], float]:
    """Steps, each rollout's wall time (rollout_started → rollout_finished), and the final write
    (the last rollout_finished → run_finished), from the event log."""
    steps = 0
    started: dict[str, float] = {}
    durations: list[float] = []
    last_finished = run_finished = float("nan")
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
                last_finished = ev["t"]
            elif kind == "run_finished":
                run_finished = ev["t"]
    return steps, durations, run_finished - last_finished


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
    ap.add_argument("--executor", choices=["thread", "ray", "both"], default="thread")
    ap.add_argument("--no-eval", action="store_true", help="tasks without a test command (no evaluation)")
    args = ap.parse_args()
    settings = args.setting or ["64:1", "256:2"]
    ok = True
    executors = ["thread", "ray"] if args.executor == "both" else [args.executor]
    for setting, executor in [(s, e) for s in settings for e in executors]:
        w, _, lat = setting.partition(":")
        r = run_setting(
            int(w), float(lat), args.rounds, args.keep, executor=executor, evaluate=not args.no_eval
        )
        ratio_ok = r["ratio"] >= TARGET_RATIO
        cpu_ok = r["runner_cpu_ms_per_step"] <= TARGET_CPU_MS
        ok = ok and ratio_ok and cpu_ok and r["errors"] == 0
        print(
            f"[{r['executor']}] {r['workers']:4d} workers @ {r['latency_s']:g}s latency: {r['rollouts']} rollouts "
            f"({r['steps']} steps, {r['errors']} errors) in {r['wall_s']:.1f}s\n"
            f"    throughput {r['rollouts_per_s']:.2f} rollouts/s vs ideal {r['ideal_per_s']:.2f} "
            f"= {r['ratio'] * 100:.1f}% (target >= {TARGET_RATIO * 100:.0f}%) {'OK' if ratio_ok else 'MISSED'}\n"
            f"    runner CPU {r['runner_cpu_ms_per_step']:.2f} ms/step (user {r['runner_user_ms_per_step']:.2f}, "
            f"system {r['runner_sys_ms_per_step']:.2f}; target <= {TARGET_CPU_MS:g}) "
            f"{'OK' if cpu_ok else 'MISSED'}; children CPU {r['children_cpu_ms_per_step']:.2f} ms/step\n"
            f"    all CPU of the run (runner, model server, sandboxes; its own cgroup) "
            f"{r['machine_cpu_ms_per_rollout']:.0f} ms per rollout, "
            f"{r['machine_cpu_share'] * 100:.0f}% of the machine's cores over the run\n"
            f"    one rollout takes {r['mean_rollout_s']:.2f}s on average vs {r['ideal_rollout_s']:g}s of model "
            f"latency ({r['ideal_rollout_s'] / r['mean_rollout_s'] * 100:.1f}%); machine load average "
            f"{r['load_avg']:.1f} at the end\n"
            f"    peak RSS {r['peak_rss_mb']:.0f} MB; time per rollout, mean / p95: sandbox preparation "
            f"{r['sandbox_start_s_mean']:.2f} / {r['sandbox_start_s_p95']:.2f}s (behind the first model call), "
            f"agent {r['agent_s_mean']:.2f} / {r['agent_s_p95']:.2f}s, diff {r['diff_s_mean']:.2f} / "
            f"{r['diff_s_p95']:.2f}s, evaluation {r['eval_s_mean']:.2f} / "
            f"{r['eval_s_p95']:.2f}s, whole {r['total_s_mean']:.2f} / {r['total_s_p95']:.2f}s; "
            f"final write {r['final_write_s']:.2f}s",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
