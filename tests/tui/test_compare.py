"""Rollouts by task and two rollouts side by side: from one run or from several inputs opened together."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from agentdata_tui.processing.analyze import pass_at_k
from agentdata_tui.tui.app import make_app
from agentdata_tui.tui.screens.compare import CompareScreen, TasksScreen
from agentdata_tui.tui.tasks import interdiff, split_patch
from tui.fixtures import compare_inputs, write_run
from tui.helpers import index_done, run_async, wait_until


def _static_text(screen, selector: str) -> str:
    import io

    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(screen.query_one(selector).content)
    return console.export_text()


@run_async
async def test_tasks_and_compare_across_two_inputs(tmp_path: Path) -> None:
    a, b = compare_inputs(tmp_path)
    app = make_app("browse", path=[a, b])
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        browser = app.screen
        assert len(browser.view) == 12 and {r.src for r in browser.view} == {0, 1}
        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen))
        tasks = app.screen
        groups = {g.instance_id: g for g in tasks.groups}
        # task-1: model a solves sample 0 only, model b solves neither: 1 of 4
        g1 = groups["demo__task-1"]
        assert (g1.n, g1.successes) == (4, 1)
        assert g1.pass_at(1) == pass_at_k(4, 1, 1) == 0.25 and g1.pass_at(2) == pass_at_k(4, 1, 2)
        assert groups["demo__task-2"].best_speedup == 16.9
        assert tasks.query_one("#tasks", DataTable).row_count == 3
        assert "pass@1 0.583" in str(tasks.query_one("#tasks-summary").render())
        # the second task's rollouts, side by side
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen))
        compare = app.screen
        assert compare.group.instance_id == "demo__task-1"
        assert compare.a is not None and compare.a.src == 0 and compare.b.src == 0
        # make B model b's first sample (the third row)
        await pilot.press("down", "down", "b")
        assert compare.b.src == 1 and compare.b.sample_index == 0
        side_a, side_b = _static_text(compare, "#side-a"), _static_text(compare, "#side-b")
        assert "succeeded" in side_a and "failed" in side_b
        assert "sed -i 's/range(1, n)/range(1, n + 1)/' paginator.py" in side_a
        await pilot.press("3")
        shown = _static_text(compare, "#interdiff-view")
        assert "paginator.py: changed by both, differently" in shown
        assert "-+    return range(1, n + 1)" in shown and "++    return range(1, n + 2)" in shown
        await pilot.press("2")
        assert "range(1, n + 2)" in _static_text(compare, "#patch-b")
        await pilot.press("escape", "escape")
        assert app.screen is browser


@run_async
async def test_compare_from_the_browser_in_one_run(tmp_path: Path) -> None:
    """`c` on an example: its task's other rollouts in the same run; identical patches say so."""
    run = write_run(tmp_path / "out.run", total=8, finished=8, complete=True)
    app = make_app("browse", path=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await index_done(pilot)
        current = app.screen.current
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen))
        compare = app.screen
        assert compare.a is current and compare.b is not None
        assert compare.b.instance_id == current.instance_id and compare.b is not current
        await pilot.press("3")
        assert "The two patches are the same." in _static_text(compare, "#interdiff-view")


def test_interdiff_file_by_file() -> None:
    base = "diff --git a/x.py b/x.py\nindex 1..2 100644\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    other = base.replace("index 1..2", "index 1..3").replace("+b", "+c")
    extra = "diff --git a/y.py b/y.py\n--- a/y.py\n+++ b/y.py\n@@ -1 +1 @@\n-p\n+q\n"
    assert interdiff(base, base.replace("index 1..2", "index 9..9")) == ""  # only the index line differs
    text = interdiff(base, other + extra)
    assert "=== x.py: changed by both, differently" in text and "-+b" in text and "++c" in text
    assert "=== y.py: changed only by B" in text and "+q" in text
    assert list(split_patch(other + extra)) == ["x.py", "y.py"]


@run_async
async def test_statistics_of_two_inputs_count_both_runs_rollouts(tmp_path: Path) -> None:
    from agentdata_tui.tui.screens.stats import StatsScreen

    a, b = compare_inputs(tmp_path)
    app = make_app("browse", path=[a, b])
    async with app.run_test(size=(80, 24)) as pilot:
        await index_done(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, StatsScreen))
        await app.workers.wait_for_complete()
        await wait_until(pilot, lambda: app.screen.stats is not None)
        stats = app.screen.stats
        # sample 0 and 1 of each model: 4 rollouts per task, not 2 (model b's would replace model a's)
        assert stats["instances"]["samples_per_instance"] == {"min": 4, "max": 4, "mean": 4.0}
        assert set(stats["instances"]["pass_at_k"]) == {"1", "2", "3", "4"}
        sp = stats["speedup"]
        # correct patches with a benchmark: a 1.6, b 2.3 and 16.9 (a's 1.3 failed its tests)
        assert sp["correct"]["count"] == 3 and sp["flagged"][0]["speedup"] == 16.9
        assert app.screen.scroll_to_section("Speedup of correct patches")


@run_async
async def test_all_attempts_shows_retried_attempts_in_compare(tmp_path: Path) -> None:
    """A run folder holds a retried pair: by default one row (the latest); with all attempts the
    compare list shows the earlier one too, marked retried."""
    import json

    from tui.fixtures import example

    run = write_run(tmp_path / "out.run", total=8, finished=8, complete=True)
    retried = example(0, reward=0.0)
    retried.attempt = 2
    with open(run / "examples.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(retried.to_dict()) + "\n")
    for all_attempts, rows in ((False, 8), (True, 9)):
        app = make_app("browse", path=[run], all_attempts=all_attempts)
        async with app.run_test(size=(120, 40)) as pilot:
            await index_done(pilot)
            assert len(app.screen.view) == rows
            if all_attempts:
                await pilot.press("c")
                await wait_until(pilot, lambda app=app: isinstance(app.screen, CompareScreen))
                group = app.screen.group
                assert [r.attempt for r in group.rows if r.sample_index == 0][:2] == [1, 2]
                assert len(group.rollouts) < len(
                    group.rows
                )  # the retried attempt is not a rollout of its own
