"""Benchmark: what bubblewrap isolation costs per local-sandbox command (issues 9, 13).

Runs the same commands in a LocalSandbox three ways, each in a child process: in the sandbox's
one namespace, started by its launcher (the default, ``sandbox/launcher.py``); under a bubblewrap
of its own per command (``AGENTDATA_LAUNCHER=0``: the way before, and the fallback where the
sandbox has no Python); and without bubblewrap (``AGENTDATA_BWRAP=""``, as a user without bwrap
would run). It prints the median and p90 wall time per command, then how many commands per
second 8 sandboxes running side by side get (namespace setup and teardown are serialised in the
kernel: per-command bubblewrap stops scaling there). Note that the two may run different programs for one name:
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
import threading
n = int(sys.argv[1])
out = {}
boxes = [LocalSandbox(Instance(instance_id=f"c{i}", problem_statement="p"), EnvironmentConfig(), context=SandboxContext()) for i in range(8)]
for box in boxes:
    box.start()
def work(box):
    for _ in range(n):
        box.execute("echo step >> notes.txt")
threads = [threading.Thread(target=work, args=(box,)) for box in boxes]
t0 = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
out["concurrent_per_s"] = 8 * n / (time.perf_counter() - t0)
for box in boxes:
    box.close()
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


def run(n: int, mode: str) -> dict:
    env = dict(os.environ)
    if mode == "none":
        env["AGENTDATA_BWRAP"] = ""
    elif mode == "per-command":
        env["AGENTDATA_LAUNCHER"] = "0"
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(n)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(res.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="commands per kind and setting")
    args = parser.parse_args()
    t0 = time.monotonic()
    modes = ("launcher", "per-command", "none")
    got = {m: run(args.n, m) for m in modes}
    if not got["launcher"]["isolated"]:
        print("bubblewrap is not installed: nothing to compare")
        return 1
    print(f"per-command wall time, {args.n} commands each (ms); launcher = one namespace per sandbox,")
    print("per-command = a bubblewrap per command, none = no isolation")
    print(f"{'command':18}" + "".join(f" {m + ' med':>16} {m + ' p90':>16}" for m in modes))
    for label in ("true", "python3 -c pass", "git status"):
        row = f"{label:18}"
        for m in modes:
            v = sorted(got[m][label])
            row += f" {statistics.median(v) * 1000:16.1f} {v[int(0.9 * len(v))] * 1000:16.1f}"
        print(row)
    print(
        "8 sandboxes side by side, commands/s: "
        + ", ".join(f"{m} {got[m]['concurrent_per_s']:.0f}" for m in modes)
    )
    print(f"({time.monotonic() - t0:.0f}s; {os.cpu_count()} cores, shared machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
