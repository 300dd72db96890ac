"""Pilot tests of the dashboard: a finished run, a live one (a real process to stop), quitting, browsing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from textual.widgets import DataTable, RichLog

from agentdata_tui.tui.app import make_app
from agentdata_tui.tui.screens.browser import BrowserScreen
from agentdata_tui.tui.screens.modals import ConfirmScreen, QuitRunScreen
from agentdata_tui.tui.widgets.line_table import LineTable
from tui.fixtures import T0, write_run
from tui.helpers import dashboard_caught_up, index_done, run_async, wait_until

CLOCK = lambda: T0 + 30  # noqa: E731


@run_async
async def test_watch_a_finished_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out.run", total=8, finished=8, complete=True)
    app = make_app("watch", path=run, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await dashboard_caught_up(pilot, finished=True)
        screen = app.screen
        m = screen.state.metrics()
        assert (m.done, m.total, m.running, m.finished) == (8, 8, 0, True)
        assert screen.query_one("#workers", LineTable).row_count == 4
        assert screen.query_one("#recent", LineTable).row_count == 8
        assert screen.selected_rollout is not None
        assert screen.query_one("#live-log", RichLog).lines  # the selected rollout's conversation
        summary = str(screen.query_one("#run-summary").render())
        assert "8/8 done" in summary and "finished" in summary
        # b: the browser on what is done
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen))
        await index_done(pilot)
        assert app.screen.query_one("#examples", DataTable).row_count == 8
        await pilot.press("q")  # back to the dashboard
        assert app.screen is screen
        await pilot.press("q")  # a finished run: quits without asking
    assert app.return_value == 0


def _sleeper(tmp_path: Path) -> subprocess.Popen:
    """A real process standing in for the runner: it exits on SIGTERM, like generate-multi."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


@run_async
async def test_stop_asks_then_signals_the_runner(tmp_path: Path) -> None:
    proc = _sleeper(tmp_path)
    try:
        run = write_run(tmp_path / "out.run", total=8, finished=3, complete=False, pid=proc.pid)
        app = make_app("watch", path=run, clock=CLOCK)
        async with app.run_test(size=(120, 40)) as pilot:
            await dashboard_caught_up(pilot)
            screen = app.screen
            assert screen.state.metrics().running == 4
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("escape")  # no: nothing is sent
            await pilot.pause()
            assert proc.poll() is None
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            assert proc.wait(timeout=10) == -15  # SIGTERM
            # the live events keep coming: a new line appended is picked up
            with open(run / "events.jsonl", "a", encoding="utf-8") as fh:
                fh.write(
                    json.dumps({"v": 1, "t": T0 + 29, "type": "run_finished", "counts": {}, "elapsed": 29})
                    + "\n"
                )
            await dashboard_caught_up(pilot, finished=True)
    finally:
        proc.kill()
        proc.wait()


@run_async
async def test_quit_leaves_a_live_run_going_by_default(tmp_path: Path) -> None:
    proc = _sleeper(tmp_path)
    try:
        run = write_run(tmp_path / "out.run", total=8, finished=3, complete=False, pid=proc.pid)
        app = make_app("watch", path=run, clock=CLOCK)
        async with app.run_test(size=(120, 40)) as pilot:
            await dashboard_caught_up(pilot)
            await pilot.press("q")
            await wait_until(pilot, lambda: isinstance(app.screen, QuitRunScreen))
            await pilot.press("enter")  # the default button: leave running
        assert app.return_value == 0
        assert proc.poll() is None  # still running

        app = make_app("watch", path=run, clock=CLOCK)
        async with app.run_test(size=(120, 40)) as pilot:
            await dashboard_caught_up(pilot)
            await pilot.press("q")
            await wait_until(pilot, lambda: isinstance(app.screen, QuitRunScreen))
            await pilot.click("#stop")
        assert proc.wait(timeout=10) == -15
    finally:
        proc.kill()
        proc.wait()


@run_async
async def test_run_killed_without_run_finished(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out.run", total=8, finished=5, complete=False, pid=2**22 + 12345)
    app = make_app("watch", path=run, clock=lambda: T0 + 10_000)
    async with app.run_test(size=(80, 24)) as pilot:
        await dashboard_caught_up(pilot)
        summary = str(app.screen.query_one("#run-summary").render())
        assert "not running" in summary
        # time stops at the last event rather than growing with the wall clock
        assert app.screen.state.metrics().elapsed_s < 60
        await pilot.press("q")  # nothing live: no question
    assert app.return_value == 0


@run_async
async def test_many_workers_are_folded_in_batches(tmp_path: Path) -> None:
    """256 workers, thousands of events: every event counted, repaints far fewer than events."""
    run = tmp_path / "big.run"
    run.mkdir()
    lines = [
        json.dumps({"v": 1, "t": T0, "type": "run_started", "run_id": "big", "total": 512, "workers": 256})
    ]
    for i in range(512):
        lines.append(
            json.dumps(
                {
                    "v": 1,
                    "t": T0 + 1,
                    "type": "rollout_started",
                    "rollout_id": f"r{i}",
                    "instance_id": f"t{i}",
                    "worker": i % 256,
                }
            )
        )
        for s in range(1, 6):
            lines.append(
                json.dumps(
                    {
                        "v": 1,
                        "t": T0 + 1 + s,
                        "type": "step",
                        "rollout_id": f"r{i}",
                        "step": s,
                        "command": f"echo {s}",
                        "assistant": "x" * 200,
                        "observation": "y" * 200,
                    }
                )
            )
        lines.append(
            json.dumps(
                {
                    "v": 1,
                    "t": T0 + 7,
                    "type": "rollout_finished",
                    "rollout_id": f"r{i}",
                    "reward": 1.0,
                    "success": True,
                }
            )
        )
    (run / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    app = make_app("watch", path=run, clock=CLOCK)
    repaints = 0
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        original = screen._paint_summary

        def counting(state):
            nonlocal repaints
            repaints += 1
            original(state)

        screen._paint_summary = counting
        await dashboard_caught_up(pilot)
        assert screen.state.events_seen == len(lines)
        assert screen.state.done == 512
        assert screen.query_one("#workers", LineTable).row_count == 256
    assert repaints < len(lines) / 100


@run_async
async def test_the_view_follows_the_selected_worker_and_shows_a_stop(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out.run", total=8, finished=3, complete=False)
    app = make_app("watch", path=run, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await dashboard_caught_up(pilot)
        screen = app.screen
        assert screen.selected_worker == "0" and screen.selected_rollout == "r4"  # worker 0's current rollout
        with open(run / "events.jsonl", "a", encoding="utf-8") as fh:
            for ev in (
                {"type": "rollout_finished", "rollout_id": "r4", "reward": 1.0, "success": True},
                {"type": "rollout_started", "rollout_id": "r8", "instance_id": "demo__task-3", "worker": 0},
                {
                    "type": "step",
                    "rollout_id": "r8",
                    "step": 1,
                    "command": "echo next",
                    "assistant": "THOUGHT: next",
                },
                {"type": "run_finished", "counts": {}, "elapsed": 20, "stopped": True},
            ):
                fh.write(json.dumps({"v": 1, "t": T0 + 20, **ev}) + "\n")
        await dashboard_caught_up(pilot, finished=True)
        assert screen.selected_rollout == "r8"
        assert "echo next" in "\n".join(line.text for line in screen.query_one("#live-log", RichLog).lines)
        summary = str(screen.query_one("#run-summary").render())
        assert "stopped" in summary and "ETA –" in summary


@run_async
async def test_a_run_started_over_in_the_folder_starts_the_dashboard_over(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out.run", total=8, finished=8, complete=True)
    proc = _sleeper(tmp_path)  # the "runner" still alive, so the dashboard keeps following
    try:
        app = make_app("watch", path=run, clock=CLOCK, process=proc, poll_interval=0.02)
        async with app.run_test(size=(120, 40)) as pilot:
            await dashboard_caught_up(pilot, finished=True)
            screen = app.screen
            assert screen.state.done == 8
            (run / "events.jsonl").unlink()  # a new run replaces the log
            write_run(tmp_path / "new.run", total=3, finished=1, complete=False)
            (tmp_path / "new.run" / "events.jsonl").rename(run / "events.jsonl")
            await wait_until(
                pilot, lambda: screen.state.total == 3 and screen.state.done == 1, what="the new run"
            )
            await dashboard_caught_up(pilot)
            assert screen.query_one("#recent", LineTable).row_count == 1
    finally:
        proc.kill()
        proc.wait()


@run_async
async def test_a_launched_run_that_fails_is_reported(tmp_path: Path) -> None:
    run = tmp_path / "out.run"
    run.mkdir()
    log = run / "tui-launch.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('error: --dataset: no such file'); sys.exit(2)"],
            stdout=fh,
        )
    app = make_app("watch", path=run, clock=CLOCK, process=proc, poll_interval=0.02)
    async with app.run_test(size=(120, 40)) as pilot:
        alert = app.screen.query_one("#run-alert")
        await wait_until(pilot, lambda: "exited with code 2" in str(alert.render()), what="the failure")
        assert "no such file" in str(alert.render())


@run_async
async def test_a_finished_runs_pid_is_not_signalled(tmp_path: Path) -> None:
    """run.json says finished: its pid (here a live, unrelated process) is never stopped."""
    proc = _sleeper(tmp_path)
    try:
        run = write_run(tmp_path / "out.run", total=8, finished=5, complete=False, pid=proc.pid)
        data = json.loads((run / "run.json").read_text())
        data["status"] = "stopped"
        (run / "run.json").write_text(json.dumps(data))
        app = make_app("watch", path=run, clock=CLOCK)
        async with app.run_test(size=(120, 40)) as pilot:
            await dashboard_caught_up(pilot)
            await pilot.press("s")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen)
            await pilot.press("q")  # nothing live: quits without asking
        assert app.return_value == 0 and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


@run_async
async def test_layout_at_120_and_80_columns(tmp_path: Path) -> None:
    """The conversation gets half the width at 120 columns; at 80 every worker column stays."""
    run = write_run(tmp_path / "out.run", total=8, finished=5, complete=False)
    app = make_app("watch", path=run, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await dashboard_caught_up(pilot)
        screen = app.screen
        assert screen.query_one("#live").outer_size.width >= 60
        summary = [line.rstrip() for line in str(screen.query_one("#run-summary").render()).splitlines()]
        assert (
            summary[0] == "run-0001 · running · model test-model · 4 workers" or "not running" in summary[0]
        )
        assert summary[1].startswith("5/8 done · ETA ")
        # a long command wraps between words in the conversation, never inside one
        log = screen.query_one("#live-log", RichLog)
        text = [line.text.rstrip() for line in log.lines]
        assert any(line.endswith("paginator.py &&") for line in text), text
    app = make_app("watch", path=run, clock=CLOCK)
    async with app.run_test(size=(80, 24)) as pilot:
        await dashboard_caught_up(pilot)
        header = screen_header(app.screen.query_one("#workers", LineTable))
        for column in ("step", "time", "status"):
            assert column in header
        assert all(
            len(line) <= 80 for line in str(app.screen.query_one("#run-summary").render()).splitlines()
        )


def screen_header(table: LineTable) -> str:
    return "".join(seg.text for seg in table.render_line(0))


@run_async
async def test_problem_statement_until_the_first_step_and_big_speedups_marked(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out.run", total=8, finished=3, complete=False)
    app = make_app("watch", path=run, clock=CLOCK, poll_interval=0.02)
    async with app.run_test(size=(120, 40)) as pilot:
        await dashboard_caught_up(pilot)
        screen = app.screen
        with open(run / "events.jsonl", "a", encoding="utf-8") as fh:
            for ev in (
                {
                    "type": "rollout_finished",
                    "rollout_id": "r3",
                    "reward": 1.0,
                    "success": True,
                    "speedup": 16.9,
                },
                {
                    "type": "rollout_started",
                    "rollout_id": "r9",
                    "instance_id": "demo__task-9",
                    "worker": 3,
                    "problem_statement": "The cache never expires entries older than ttl.",
                },
            ):
                fh.write(json.dumps({"v": 1, "t": T0 + 20, **ev}) + "\n")
        await wait_until(pilot, lambda: "r9" in screen.state.rollouts)
        await dashboard_caught_up(pilot)
        screen.select_rollout("r9")
        await pilot.pause()
        log = screen.query_one("#live-log", RichLog)
        shown = "\n".join(line.text for line in log.lines)
        assert "The cache never expires entries older than ttl." in shown
        recent = screen.query_one("#recent", LineTable)
        rows = ["".join(seg.text for seg in recent.render_line(y)) for y in range(1, recent.row_count + 1)]
        assert any("16.9× ⚠" in row for row in rows), rows
        with open(run / "events.jsonl", "a", encoding="utf-8") as fh:
            fh.write(
                json.dumps(
                    {
                        "v": 1,
                        "t": T0 + 21,
                        "type": "step",
                        "rollout_id": "r9",
                        "step": 1,
                        "command": "grep -n ttl cache.py",
                        "assistant": "THOUGHT: find ttl",
                    }
                )
                + "\n"
            )
        await wait_until(pilot, lambda: screen.state.rollouts["r9"].steps)
        await dashboard_caught_up(pilot)
        shown = "\n".join(line.text for line in log.lines)
        assert "THOUGHT: find ttl" in shown and "never expires" not in shown


@run_async
async def test_a_stop_counts_the_cancelled_rollout_apart_then_a_resume_finishes(tmp_path: Path) -> None:
    """The issue's case: after a stop, '5/5 done' while 4 were written. The cancelled one is
    neither done nor failed; resuming runs it and the dashboard starts the session over."""
    run = write_run(tmp_path / "out.run", total=5, finished=4, complete=False)
    with open(run / "events.jsonl", "a", encoding="utf-8") as fh:
        for ev in (
            {
                "type": "rollout_finished",
                "rollout_id": "r4",
                "instance_id": "demo__task-4",
                "sample_index": 0,
                "exit_status": "Cancelled",
                "reward": None,
                "success": False,
                "error": None,
            },
            {"type": "run_finished", "counts": {}, "elapsed": 9, "stopped": True},
        ):
            fh.write(json.dumps({"v": 1, "t": T0 + 9, **ev}) + "\n")
    app = make_app("watch", path=run, clock=CLOCK, poll_interval=0.02, process=_sleeper(tmp_path))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await dashboard_caught_up(pilot, finished=True)
            screen = app.screen
            m = screen.state.metrics()
            assert (m.done, m.total, m.cancelled, m.failed + m.succeeded + m.errors) == (4, 5, 1, 4)
            summary = str(screen.query_one("#run-summary").render())
            assert "4/5 done" in summary and "cancelled 1" in summary and "stopped" in summary
            recent = screen.query_one("#recent", LineTable)
            assert "cancelled" in "".join(seg.text for seg in recent.render_line(1))
            # --resume: a new session runs the cancelled pair
            with open(run / "events.jsonl", "a", encoding="utf-8") as fh:
                for ev in (
                    {
                        "type": "run_started",
                        "run_id": "run-0001",
                        "total": 5,
                        "workers": 4,
                        "done_before": 4,
                        "pending": 1,
                    },
                    {
                        "type": "rollout_started",
                        "rollout_id": "r5",
                        "instance_id": "demo__task-4",
                        "sample_index": 0,
                        "attempt": 1,
                        "worker": 0,
                    },
                ):
                    fh.write(json.dumps({"v": 1, "t": T0 + 20, **ev}) + "\n")
            await wait_until(
                pilot, lambda: screen.state.metrics().status == "running", what="the resumed session"
            )
            await dashboard_caught_up(pilot)
            m = screen.state.metrics()
            assert (m.done, m.running, m.cancelled) == (4, 1, 0)
            assert "4 before this session" in str(screen.query_one("#run-summary").render())
            assert screen.query_one("#workers", LineTable).row_count == 1  # the old session's workers gone
            with open(run / "events.jsonl", "a", encoding="utf-8") as fh:
                for ev in (
                    {
                        "type": "rollout_finished",
                        "rollout_id": "r5",
                        "instance_id": "demo__task-4",
                        "sample_index": 0,
                        "exit_status": "Submitted",
                        "reward": 1.0,
                        "success": True,
                        "error": None,
                    },
                    {"type": "run_finished", "counts": {}, "elapsed": 5, "stopped": False},
                ):
                    fh.write(json.dumps({"v": 1, "t": T0 + 25, **ev}) + "\n")
            await dashboard_caught_up(pilot, finished=True)
            m = screen.state.metrics()
            assert (m.done, m.total, m.cancelled, m.succeeded) == (
                5,
                5,
                0,
                3,
            )  # 2 of the first 4, and this one
            assert "5/5 done" in str(screen.query_one("#run-summary").render())
    finally:
        screen.process.kill()
        screen.process.wait()
