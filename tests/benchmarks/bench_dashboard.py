"""Benchmark of the dashboard under a 256-worker run streaming events (issue 5 §2).

A writer process (the runner is its own process too) appends events.jsonl v1 through the
real ``EventWriter`` as a run of 256 workers would (rollout_started, steps with 4,000-character texts, rollout_finished) at a
given rate; the real dashboard follows it headless (``run_test``). Printed: events per
second written and folded, repaints per second (at most 10 by design), how far the dashboard
lags behind the log, and how long a key press takes while the stream goes on.

    python tests/benchmarks/bench_dashboard.py                 # 256 workers, 2,000 events/s, 10 s
    python tests/benchmarks/bench_dashboard.py --rate 5000 --seconds 20

Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from agentdata_tui.events import EventWriter
from agentdata_tui.tui.app import make_app


def writer(run_dir: Path, workers: int, rate: float, seconds: float, stop: Any, counter: Any) -> None:
    w = EventWriter(run_dir / "events.jsonl")
    w.emit("run_started", run_id="bench", total=10**6, workers=workers, settings={"model": "bench"})
    text = "x" * 4000
    step = [0] * workers
    rollout = [0] * workers
    for i in range(workers):
        w.emit(
            "rollout_started",
            rollout_id=f"{i}-0",
            instance_id=f"task-{i}",
            sample_index=0,
            attempt=1,
            worker=i,
        )
    n = workers + 1
    t0 = time.monotonic()
    while not stop.is_set() and time.monotonic() - t0 < seconds:
        for i in range(workers):
            step[i] += 1
            rid = f"{i}-{rollout[i]}"
            if step[i] > 8:
                w.emit(
                    "rollout_finished",
                    rollout_id=rid,
                    exit_status="Submitted",
                    reward=1.0,
                    success=True,
                    model_calls=8,
                )
                rollout[i] += 1
                step[i] = 0
                w.emit("rollout_started", rollout_id=f"{i}-{rollout[i]}", instance_id=f"task-{i}", worker=i)
                n += 2
            else:
                w.emit(
                    "step",
                    rollout_id=rid,
                    step=step[i],
                    command=f"echo {step[i]}",
                    returncode=0,
                    prompt_tokens=1000,
                    completion_tokens=50,
                    assistant=text,
                    observation=text,
                )
                n += 1
            counter.value = n
            target = t0 + n / rate
            delay = target - time.monotonic()
            if delay > 0:
                stop.wait(delay)
    w.close()


async def measure(run_dir: Path, workers: int, rate: float, seconds: float) -> dict[str, float]:
    stop = multiprocessing.Event()
    counter = multiprocessing.Value("q", 0)
    run_dir.mkdir(parents=True, exist_ok=True)
    thread = multiprocessing.Process(
        target=writer, args=(run_dir, workers, rate, seconds, stop, counter), daemon=True
    )
    app = make_app("watch", path=run_dir)
    repaints = 0
    key_ms: list[float] = []
    lags: list[int] = []
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        original = screen._paint_summary

        def counting(state):
            nonlocal repaints
            repaints += 1
            original(state)

        screen._paint_summary = counting
        t0 = time.monotonic()
        thread.start()
        while thread.is_alive() or thread.exitcode is None:
            t = time.perf_counter()
            await pilot.press("f")  # follow the newest rollout: a real action, through the queue
            key_ms.append((time.perf_counter() - t) * 1000)
            lags.append(counter.value - (screen.state.events_seen if screen.state else 0))
            await pilot.pause(0.2)
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + 60
        while screen.state.events_seen < counter.value and time.monotonic() < deadline:
            await pilot.pause(0.05)
        catch_up = time.monotonic() - t0 - elapsed
        stop.set()
        return {
            "written": counter.value,
            "folded": screen.state.events_seen,
            "elapsed": elapsed,
            "repaints_per_s": repaints / elapsed,
            "key_median_ms": statistics.median(key_ms),
            "key_max_ms": max(key_ms),
            "lag_median": statistics.median(lags),
            "lag_max": max(lags),
            "catch_up_s": catch_up,
            "rows": screen.query_one("#workers").row_count,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=256, help="workers of the simulated run (default 256)")
    ap.add_argument("--rate", type=float, default=2000.0, help="events per second written (default 2000)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the stream lasts (default 10)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_dashboard.") as tmp:
        r = asyncio.run(measure(Path(tmp) / "bench.run", args.workers, args.rate, args.seconds))
    print(f"workers: {args.workers}, worker rows shown: {r['rows']}")
    print(
        f"events written: {r['written']:,} in {r['elapsed']:.1f} s ({r['written'] / r['elapsed']:,.0f}/s), folded: {r['folded']:,}"
    )
    print(f"repaints: {r['repaints_per_s']:.1f} per second (at most 10 by design)")
    print(f"lag behind the log while streaming: {r['lag_median']:,.0f} events median, {r['lag_max']:,} worst")
    print(f"caught up {r['catch_up_s']:.2f} s after the stream ended")
    print(
        f"key press ('f') while streaming: {r['key_median_ms']:.0f} ms median, {r['key_max_ms']:.0f} ms worst"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
