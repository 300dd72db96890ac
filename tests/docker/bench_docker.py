"""Benchmark of the Docker sandbox on the local engine: start, command round trip, diff, close.

    python tests/docker/bench_docker.py [--server 127.0.0.1:2375] [--parallel 4] [--commands 50]

Prints figures (not a test): what a rollout pays for its container, per command and in
parallel. Needs the test image (bash tests/docker/build_image.sh).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.sandbox import SandboxContext, make_sandbox

IMAGE = "agentdata-tui-test:demo"


def one(server: str | None, commands: int, run_id: str) -> dict[str, float]:
    kind = "docker_remote" if server else "docker"
    inst = Instance(instance_id="bench", problem_statement="", image=IMAGE, cwd="/app/pager")
    ctx = SandboxContext(run_id=run_id, docker_servers=[server] if server else [], environment_class=kind)
    sb = make_sandbox(inst, EnvironmentConfig(environment_class=kind, timeout=30), ctx)
    t0 = time.perf_counter()
    sb.start()
    start = time.perf_counter() - t0
    lat = []
    for i in range(commands):
        t = time.perf_counter()
        res = sb.execute(f"echo {i}")
        lat.append(time.perf_counter() - t)
        assert res.output.strip() == str(i)
    sb.execute("echo change >> paginator.py && seq 1 2000 > new.txt")
    t = time.perf_counter()
    patch, _ = sb.diff()
    diff = time.perf_counter() - t
    assert "new.txt" in patch
    t = time.perf_counter()
    sb.close()
    close = time.perf_counter() - t
    return {
        "start": start,
        "exec_median": statistics.median(lat),
        "exec_p95": sorted(lat)[int(0.95 * len(lat))],
        "diff": diff,
        "close": close,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default=None, help="HOST:PORT (docker_remote); default: the local daemon")
    ap.add_argument("--parallel", type=int, default=4, help="sandboxes at once in the second round")
    ap.add_argument("--commands", type=int, default=50, help="commands per sandbox")
    args = ap.parse_args()
    run_id = f"bench-{uuid.uuid4().hex[:6]}"
    r = one(args.server, args.commands, run_id)
    print(
        f"single sandbox: start {r['start']:.2f}s (create+start+diff base), command round trip median "
        f"{r['exec_median'] * 1000:.1f}ms p95 {r['exec_p95'] * 1000:.1f}ms, diff {r['diff'] * 1000:.0f}ms, "
        f"close {r['close']:.2f}s"
    )
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as pool:
        rs = list(pool.map(lambda _: one(args.server, args.commands, run_id), range(args.parallel)))
    wall = time.perf_counter() - t0
    print(
        f"{args.parallel} sandboxes at once: wall {wall:.2f}s, start median {statistics.median(x['start'] for x in rs):.2f}s, "
        f"command median {statistics.median(x['exec_median'] for x in rs) * 1000:.1f}ms, "
        f"close median {statistics.median(x['close'] for x in rs):.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
