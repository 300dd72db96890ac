"""Benchmark of the model client (issue 3 §2): CPU per call, and many calls in flight at once.

The loopback model server runs in its own process (``ModelServerProcess``) so that only the
client's work is counted. Prints:

- the client process's CPU per ``query`` for a short and a long (20-step, ~60 kB) conversation
  (the runner's budget is 4 ms per step in all; a bare ``requests`` call costs about 2 ms here);
- with N threads sharing one ``OpenAIModel`` against a server answering after a fixed latency,
  the achieved calls/s against the ideal N / latency, and how many calls the server saw in
  flight at once (the connection pool and the server must carry all N together).

    python tests/benchmarks/bench_model_client.py
    python tests/benchmarks/bench_model_client.py --threads 64 --latency 1

Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers.model_server import ModelServerProcess  # noqa: E402

from agentdata_tui.config import ModelConfig  # noqa: E402
from agentdata_tui.model.client import OpenAIModel  # noqa: E402


def conversation(steps: int) -> list[dict[str, str]]:
    messages = [
        {"role": "system", "content": "You are a helpful assistant. " * 40},
        {"role": "user", "content": "Please solve this issue: " + "details " * 400},
    ]
    for n in range(steps):
        messages.append(
            {"role": "assistant", "content": f"THOUGHT: step {n}\n\n```bash\ngrep -rn foo src | head\n```"}
        )
        messages.append(
            {"role": "user", "content": "<returncode>0</returncode>\n<output>\n" + "src/x.py:1: foo\n" * 150}
        )
    return messages


def cpu_per_call(base_url: str, messages: list[dict[str, str]], calls: int) -> float:
    model = OpenAIModel(base_url, "sk-bench", "test-model", ModelConfig())
    for _ in range(20):  # warm the pool
        model.query(messages)
    start = time.process_time()
    for _ in range(calls):
        model.query(messages)
    model.close()
    return (time.process_time() - start) / calls * 1000


def concurrent(threads: int, latency: float, rounds: int) -> None:
    with ModelServerProcess(latency=latency) as server:
        model = OpenAIModel(server.base_url, "sk-bench", "test-model", ModelConfig(), pool_size=threads)
        messages = conversation(2)
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads)

        def worker() -> None:
            barrier.wait()
            for _ in range(rounds):
                try:
                    model.query(messages)
                except BaseException as exc:  # reported below
                    errors.append(exc)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        start = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall = time.perf_counter() - start
        model.close()
    done = threads * rounds - len(errors)
    ideal = threads / latency
    achieved = done / wall
    print(
        f"{threads} threads @ {latency:g}s latency: {achieved:.1f} calls/s of ideal {ideal:.1f} "
        f"({achieved / ideal:.0%}), {len(errors)} errors"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per CPU measurement")
    parser.add_argument("--threads", type=int, default=256, help="concurrent callers")
    parser.add_argument(
        "--latency", type=float, default=2.0, help="server latency for the concurrent test (s)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="calls per concurrent caller")
    args = parser.parse_args()
    with ModelServerProcess() as server:
        for label, steps in (("short (2 messages)", 0), ("long (20 steps)", 20)):
            msgs = conversation(steps)
            size = sum(len(m["content"]) for m in msgs)
            print(
                f"client CPU per call, {label}, {size / 1000:.0f} kB: {cpu_per_call(server.base_url, msgs, args.calls):.2f} ms"
            )
    concurrent(args.threads, args.latency, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
