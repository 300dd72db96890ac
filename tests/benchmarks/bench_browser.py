"""Benchmark of the TUI browser on a large training-data file (issue 5 §3).

Generates a ~1 GB file with the processing benchmark's generator (the real
``TrainingDataWriter``), then runs the real browser app headless (Textual's ``run_test``)
and prints:

- time to the first rows in the table (target < 2 s),
- time to the full index, and the process's peak RSS,
- time to move to the next example (target < 100 ms; median and worst of 50 moves): from the
  action to the first line of the new example painted, the action alone, and ``n`` pressed
  through Pilot until the app is idle; then a sort of every row and a page jump.

    python tests/benchmarks/bench_browser.py                # ~1 GB, temp dir removed after
    python tests/benchmarks/bench_browser.py --size-mb 200 --keep /tmp/bench

Not collected by pytest (bench_*.py).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_processing import generate  # noqa: E402

from agentdata_tui.tui.app import make_app  # noqa: E402

FIRST_ROWS_TARGET_S = 2.0
NEXT_TARGET_MS = 100.0


async def measure(path: Path, moves: int) -> dict[str, float]:
    from textual.widgets import DataTable

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    app = make_app("browse", path=path, clock=lambda: 0.0)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        while screen.index is None or screen.query_one("#examples", DataTable).row_count == 0:
            await pilot.pause(0.005)
        out["first_rows_s"] = time.perf_counter() - t0
        while not screen.index.complete:
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        out["full_index_s"] = time.perf_counter() - t0
        out["examples"] = len(screen.index.rows)
        await pilot.pause()
        baseline = []
        for _ in range(10):  # an unbound key: what Pilot itself costs per press
            t = time.perf_counter()
            await pilot.press("x")
            baseline.append((time.perf_counter() - t) * 1000)
        out["noop_press_ms"] = statistics.median(baseline)
        times = []
        for _ in range(moves):
            before = screen.current
            t = time.perf_counter()
            await pilot.press("n")
            assert screen.current is not before and screen.example is not None
            times.append((time.perf_counter() - t) * 1000)
        out["next_median_ms"] = statistics.median(times)
        out["next_max_ms"] = max(times)
        # the same move without Pilot's own overhead: from the action to the first line of the
        # new example painted by the compositor (the rest of a long conversation follows)
        from agentdata_tui.tui.widgets.conversation import ConversationView

        view = screen.query_one(ConversationView)
        painted: list[float] = []
        original = view.render_line

        def render_line(y: int):
            if not painted:
                painted.append(time.perf_counter())
            return original(y)

        view.render_line = render_line  # type: ignore[method-assign]
        handler, first_paint = [], []
        for _ in range(moves):
            painted.clear()
            t = time.perf_counter()
            screen.action_next()
            handler.append((time.perf_counter() - t) * 1000)
            await pilot.pause()
            await pilot.pause()
            if painted:
                first_paint.append((painted[0] - t) * 1000)
        out["handler_median_ms"] = statistics.median(handler)
        out["handler_max_ms"] = max(handler)
        out["paint_median_ms"] = statistics.median(first_paint) if first_paint else float("nan")
        out["paint_max_ms"] = max(first_paint) if first_paint else float("nan")
        # the far end: a sort over every row, then the last page's example
        t = time.perf_counter()
        screen.set_sort("reward", reverse=False)
        await pilot.pause()
        out["sort_all_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        await pilot.press("right_square_bracket")
        out["next_page_ms"] = (time.perf_counter() - t) * 1000
        await pilot.press("q")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=1000.0, help="size of the generated file (default 1000)")
    ap.add_argument(
        "--file", type=Path, help="use this existing training-data file instead of generating one"
    )
    ap.add_argument(
        "--keep", metavar="DIR", help="work in DIR and keep the file (default: a temp dir, removed)"
    )
    ap.add_argument("--moves", type=int, default=50, help="how many 'n' presses to time (default 50)")
    args = ap.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_browser."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.file:
            data = args.file
        else:
            data = work / "training_data.json"
            if not data.exists():
                t0 = time.perf_counter()
                n = generate(data, args.size_mb)
                print(f"generated {n:,} examples in {time.perf_counter() - t0:.1f} s -> {data}")
        size_mb = data.stat().st_size / 1e6
        print(f"file: {data} ({size_mb:,.0f} MB)")
        r = asyncio.run(measure(data, args.moves))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ok_first = "ok" if r["first_rows_s"] < FIRST_ROWS_TARGET_S else "MISSED"
        ok_next = "ok" if r["paint_median_ms"] < NEXT_TARGET_MS else "MISSED"
        print(
            f"time to first rows:      {r['first_rows_s']:.2f} s   (target < {FIRST_ROWS_TARGET_S:g} s: {ok_first})"
        )
        print(
            f"time to full index:      {r['full_index_s']:.2f} s   ({r['examples']:,.0f} examples, "
            f"{size_mb / r['full_index_s']:,.0f} MB/s)"
        )
        print(
            f"next example, action to first painted line: {r['paint_median_ms']:.1f} ms median, "
            f"{r['paint_max_ms']:.1f} ms worst of {args.moves}   (target < {NEXT_TARGET_MS:g} ms: {ok_next})"
        )
        print(
            f"  the action alone (read at its offset, validate, render the visible part): "
            f"{r['handler_median_ms']:.1f} ms median, {r['handler_max_ms']:.1f} ms worst"
        )
        print(
            f"  'n' through Pilot until idle (whole conversation rendered): {r['next_median_ms']:.1f} ms median, "
            f"{r['next_max_ms']:.1f} ms worst; Pilot's own cost per key (unbound key): {r['noop_press_ms']:.1f} ms"
        )
        print(f"sort all rows by reward: {r['sort_all_ms']:.0f} ms;  next page: {r['next_page_ms']:.0f} ms")
        print(f"peak RSS of the process: {rss:,.0f} MB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
