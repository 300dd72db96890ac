"""Benchmark: what bubblewrap isolation costs per local-sandbox command (issue 9).

Runs the same commands in a LocalSandbox with bubblewrap and without it (``AGENTDATA_BWRAP=""``
in a child process, as a user without bwrap would run) and prints the median and p90 wall time
per command, and the difference. Note that the two may run different programs for one name:
isolated, PATH keeps only the folders that exist inside (no venv, no ~/.pyenv shims), so
``python3`` can be the system one there and a slower shim outside.

    python tests/benchmarks/bench_sandbox_isolation.py            # 60 commands each
    python tests/benchmarks/bench_sandbox_isolation.py --n 200

Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox.local import LocalSandbox
n = int(sys.argv[1])
out = {}
with LocalSandbox(Instance(instance_id="b", problem_statement="p"), EnvironmentConfig(), context=SandboxContext()) as sb:
    out["isolated"] = sb.isolated
    for label, cmd in (("true", "true"), ("python3 -c pass", "python3 -c pass"), ("git status", "git status -s")):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            sb.execute(cmd)
            times.append(time.perf_counter() - t0)
        out[label] = times
print(json.dumps(out))
"""


def run(n: int, bwrap: bool) -> dict:
    env = dict(os.environ)
    if not bwrap:
        env["AGENTDATA_BWRAP"] = ""
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(n)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(res.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="commands per kind and setting")
    args = parser.parse_args()
    t0 = time.monotonic()
    iso, plain = run(args.n, True), run(args.n, False)
    if not iso["isolated"]:
        print("bubblewrap is not installed: nothing to compare")
        return 1
    print(f"per-command wall time, {args.n} commands each (ms)")
    print(
        f"{'command':18} {'plain med':>10} {'bwrap med':>10} {'overhead':>9} {'plain p90':>10} {'bwrap p90':>10}"
    )
    for label in ("true", "python3 -c pass", "git status"):
        a = sorted(plain[label])
        b = sorted(iso[label])
        med_a, med_b = statistics.median(a) * 1000, statistics.median(b) * 1000
        p90_a, p90_b = a[int(0.9 * len(a))] * 1000, b[int(0.9 * len(b))] * 1000
        print(f"{label:18} {med_a:10.1f} {med_b:10.1f} {med_b - med_a:+9.1f} {p90_a:10.1f} {p90_b:10.1f}")
    print(f"({time.monotonic() - t0:.0f}s; {os.cpu_count()} cores, shared machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
