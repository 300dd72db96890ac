"""Pilot tests of the browser: rows, filters, next/previous, details, statistics and exports."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import Checkbox, DataTable, Input, TabbedContent

from agentdata_tui.reader import open_input
from agentdata_tui.records import Example
from agentdata_tui.tui.app import make_app
from agentdata_tui.tui.screens.export import ExportScreen
from agentdata_tui.tui.screens.stats import StatsScreen
from tui.fixtures import examples, write_file
from tui.helpers import index_done, run_async, wait_until

CLOCK = lambda: 1_700_000_100.0  # noqa: E731


@run_async
async def test_rows_filter_and_navigation(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.json", n=12)
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        screen = app.screen
        table = screen.query_one("#examples", DataTable)
        assert table.row_count == 12
        assert screen.example is not None and screen.example.instance_id == "demo__task-0"

        await pilot.press("n", "n")
        assert screen.current.pos == 2 and screen.example.instance_id == "demo__task-2"
        await pilot.press("p")
        assert screen.current.pos == 1

        # the filter bar: successful only, then a minimum reward, then text
        screen.query_one("#successful", Checkbox).value = True
        await pilot.pause()
        want = [ex for ex in examples(12) if ex.success]
        assert table.row_count == len(want) < 12
        assert [r.instance_id for r in screen.view] == [ex.instance_id for ex in want]
        screen.query_one("#successful", Checkbox).value = False
        await pilot.press("slash")
        assert screen.query_one("#text", Input).has_focus
        await pilot.press(*"task-3")
        await pilot.pause()
        assert table.row_count == 2 and all(r.instance_id == "demo__task-3" for r in screen.view)
        screen.query_one("#text", Input).value = ""
        screen.query_one("#min-reward", Input).value = "0.5"
        await pilot.pause()
        assert table.row_count == sum(1 for ex in examples(12) if ex.reward >= 0.5)
        screen.query_one("#min-reward", Input).value = "7"  # out of range: flagged, filter kept
        await pilot.pause()
        assert screen.query_one("#min-reward", Input).has_class("invalid")

        # sorting once indexed
        screen.query_one("#min-reward", Input).value = ""
        await pilot.pause()
        screen.query_one("#examples", DataTable).focus()
        screen.set_sort("reward", reverse=True)
        await pilot.pause()
        rewards = [r.reward for r in screen.view]
        assert rewards == sorted(rewards, reverse=True)
        await pilot.click("#examples", offset=(2, 0))  # the 'instance' header
        await pilot.pause()
        assert screen.sort == "instance"
        ids = [r.instance_id for r in screen.view]
        assert ids == sorted(ids)

        # detail tabs render when opened
        await pilot.press("2")
        assert screen.query_one("#detail", TabbedContent).active == "diff"
        assert "diff" in screen._rendered
        await pilot.press("4")
        assert screen.query_one("#steps-view", DataTable).row_count == len(screen.example.steps)
        await pilot.press("q")
    assert app.return_value == 0


@run_async
async def test_export_writes_exactly_the_filtered_examples(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.json", n=12)
    out = tmp_path / "picked.json"
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        screen = app.screen
        screen.query_one("#text", Input).value = "task-1"
        await pilot.pause()
        shown = [r.pos for r in screen.view]
        assert len(shown) == 3
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen), what="the export dialog")
        dialog = app.screen
        await pilot.click("#kind-filtered")
        dialog.query_one("#output", Input).value = str(out)
        await pilot.click("#export")
        await app.workers.wait_for_complete()
        await wait_until(pilot, lambda: not isinstance(app.screen, ExportScreen), what="the export to finish")
        assert dialog.written == 3
        assert any(str(out) in n.message and "3" in n.message for n in app._notifications)
    written = list(open_input(out))
    want = [ex.to_dict() for i, ex in enumerate(open_input(path)) if i in shown]  # ids derived alike
    assert [ex.to_dict() for ex in written] == want
    assert json.loads(out.read_text())["summary"]["total_examples"] == 3


def _with_errors(path: Path) -> Path:
    """12 examples, two of which the SFT export leaves out by default (a ModelError, no assistant turn)."""
    from agentdata_tui.writer import write_training_data

    exs = examples(12)
    exs[2].exit_status, exs[2].error = "ModelError", "the model server answered 500"
    exs[4].messages = [m for m in exs[4].messages if m["role"] != "assistant"]
    write_training_data(path, exs, {"model_name": "test-model"})
    return path


@run_async
async def test_filter_and_export_are_one_selection(tmp_path: Path) -> None:
    """The dialog exports what the browser shows, less what export_sft leaves out by default;
    it says both counts before starting, the toggle includes them, and the file equals the
    CLI's export with the same criteria (its .meta.json recording them)."""
    import subprocess
    import sys

    path = _with_errors(tmp_path / "data.json")
    out = tmp_path / "tui.sft.jsonl"
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(80, 24)) as pilot:
        await index_done(pilot)
        screen = app.screen
        screen.query_one("#min-reward", Input).value = "0.5"
        await pilot.pause()
        shown = len(screen.view)
        assert shown == sum(1 for ex in examples(12) if ex.reward >= 0.5) == 8
        screen.query_one("#examples").focus()
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen), what="the export dialog")
        dialog = app.screen
        assert "8 example(s)" in str(dialog.query_one("#export-title").render())
        assert "reward ≥ 0.5" in str(dialog.query_one("#export-filter").render())
        await wait_until(pilot, lambda: dialog.preview is not None, what="the counts")
        counts = str(dialog.query_one("#export-counts").render())
        # examples 2 (ModelError) and 4 (no assistant turn) both have reward 1.0: shown, left out
        assert (
            "8 shown by the filter" in counts and "2 left out by default" in counts and "6 to write" in counts
        )
        assert not dialog.query("#min-reward")  # no filters of its own
        # the buttons are on screen at 80x24
        for button in ("#export", "#cancel"):
            region = dialog.query_one(button).region
            assert region.height and region.bottom <= 24, (button, region)
        dialog.query_one("#output", Input).value = str(out)
        await pilot.click("#export")
        await app.workers.wait_for_complete()
        await wait_until(pilot, lambda: not isinstance(app.screen, ExportScreen), what="the export to finish")
        assert dialog.written == 6
        toast = next(n.message for n in app._notifications if "Exported" in n.message)
        assert "Exported 6 of the 8 example(s) shown" in toast and "2 left out" in toast
        # the include toggle
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
        dialog = app.screen
        dialog.query_one("#include-errors").value = True
        await wait_until(pilot, lambda: "8 to write" in str(dialog.query_one("#export-counts").render()))
        assert "2 usually left out included" in str(dialog.query_one("#export-counts").render())
        dialog.query_one("#output", Input).value = str(tmp_path / "all.sft.jsonl")
        await pilot.click("#export")
        await app.workers.wait_for_complete()
        await wait_until(pilot, lambda: not isinstance(app.screen, ExportScreen))
    assert (tmp_path / "all.sft.jsonl").read_text().count("\n") == 8
    cli = tmp_path / "cli.sft.jsonl"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentdata_tui",
            "export_sft",
            "--input",
            str(path),
            "--output",
            str(cli),
            "--min-reward",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == cli.read_bytes()  # the same lines as the CLI's export
    meta = json.loads((tmp_path / "tui.sft.jsonl.meta.json").read_text())
    cli_meta = json.loads((tmp_path / "cli.sft.jsonl.meta.json").read_text())
    assert meta["criteria"] == cli_meta["criteria"] == {"min_reward": 0.5}
    assert meta["counts"] == cli_meta["counts"] and meta["counts"]["left_out"] == {
        "ModelError": 1,
        "no assistant turn": 1,
    }
    assert meta["shown"] == 8


@run_async
async def test_json_exports_record_their_criteria(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.json", n=12)
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        app.screen.query_one("#successful", Checkbox).value = True
        await pilot.pause()
        for kind, name in (("filtered", "f.json"), ("trajectory", "t.json")):
            await pilot.press("e")
            await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
            await pilot.click(f"#kind-{kind}")
            app.screen.query_one("#output", Input).value = str(tmp_path / name)
            await pilot.click("#export")
            await app.workers.wait_for_complete()
            await wait_until(pilot, lambda: not isinstance(app.screen, ExportScreen))
    for name in ("f.json", "t.json"):
        processing = json.loads((tmp_path / name).read_text())["metadata"]["processing"]
        assert processing[-1]["criteria"] == {"successful_only": True}
        assert processing[-1]["input"] == str(path)
        assert processing[-1]["examples"] == sum(ex.success for ex in examples(12))


@run_async
async def test_statistics_view(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.json", n=12, samples=3)
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, StatsScreen))
        await app.workers.wait_for_complete()
        await wait_until(pilot, lambda: app.screen.stats is not None, what="statistics")
        stats = app.screen.stats
        assert stats["total"] == 12
        shown = str(app.screen.query_one("#stats").render())
        assert "pass@k" in shown and "Reward distribution" in shown
        assert sum(b["count"] for b in stats["reward_histogram"]) == 12
        await pilot.press("escape")
        assert app.screen.__class__.__name__ == "BrowserScreen"


@run_async
async def test_bad_input_is_one_line_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("this is not json", encoding="utf-8")
    app = make_app("browse", path=bad, clock=CLOCK)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert any("not JSON" in n.message for n in app._notifications)
        await pilot.press("q")
    assert app.return_value == 0


@run_async
async def test_command_palette_lists_screen_actions(tmp_path: Path) -> None:
    from agentdata_tui.tui.app import ActionsProvider

    path = write_file(tmp_path / "data.json", n=3)
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        provider = ActionsProvider(app.screen)
        names = [name for name, _, _ in provider._commands()]
        for wanted in ("Export", "Statistics", "Next", "Previous", "Filter", "Quit", "Keys"):
            assert wanted in names
        await pilot.press("question_mark")
        assert app.screen.query("HelpPanel")


@run_async
async def test_filtering_while_indexing_keeps_each_row_once(tmp_path: Path) -> None:
    """A filter applied mid-index takes the rows so far; later batches add only the new ones."""
    from agentdata_tui.tui.index import ExampleIndex
    from agentdata_tui.tui.messages import IndexBatch
    from agentdata_tui.tui.screens.browser import BrowserScreen

    path = write_file(tmp_path / "data.json", n=12)
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        screen: BrowserScreen = app.screen
        # replay an indexing where the filter changes between batches
        screen.index = ExampleIndex(path)
        screen.view, screen._upto, screen.current = [], 0, None
        screen.query_one("#examples", DataTable).clear()
        batches = list(screen.index.build(batch_rows=4, batch_seconds=60))
        screen.on_index_batch(IndexBatch(batches[0]))
        screen.query_one("#text", Input).value = "task"  # refresh_view sees all 12 indexed rows
        await pilot.pause()
        for batch in batches[1:]:
            screen.on_index_batch(IndexBatch(batch))
        assert sorted(r.pos for r in screen.view) == list(range(12))
        assert screen.query_one("#examples", DataTable).row_count == 12


@run_async
async def test_real_mini_swe_agent_trajectories(samples_dir: Path) -> None:
    """Real trajectories (text and tool-call mode) open, render and move without errors."""
    from agentdata_tui.tui.widgets.conversation import ConversationView

    app = make_app("browse", path=samples_dir, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        screen = app.screen
        assert len(screen.view) == 3 and not screen.index.by_offset
        seen_tool_call = False
        for _ in range(3):
            view = screen.query_one(ConversationView)
            await pilot.press("z")  # every fold open
            await pilot.pause()
            assert "ASSISTANT" in view.text and "USER" in view.text
            seen_tool_call |= any(m.get("tool_calls") for m in screen.example.messages)
            for tab in ("2", "3", "4", "5", "1"):
                await pilot.press(tab)
            await pilot.press("n")
        assert seen_tool_call


@run_async
async def test_reload_picks_up_rollouts_finished_since(tmp_path: Path) -> None:
    from tui.fixtures import write_run

    run = write_run(tmp_path / "out.run", total=8, finished=5, complete=False)
    app = make_app("browse", path=run, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        assert len(app.screen.view) == 5
        more = examples(8, samples=2)[5:]  # new (instance, sample) pairs: sample 1
        with open(run / "examples.jsonl", "a", encoding="utf-8") as fh:
            for ex in more:
                fh.write(json.dumps(ex.to_dict()) + "\n")
        await pilot.press("ctrl+r")
        await index_done(pilot)
        assert len(app.screen.view) == 8
        assert app.screen.query_one("#examples", DataTable).row_count == 8


@run_async
async def test_an_invalid_min_reward_stays_visible_with_a_message(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.json", n=12)
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(80, 24)) as pilot:
        await index_done(pilot)
        screen = app.screen
        box = screen.query_one("#min-reward", Input)
        box.value = "0.5"
        await pilot.pause()
        kept = len(screen.view)
        assert kept == sum(1 for ex in examples(12) if ex.reward >= 0.5)
        box.focus()
        await pilot.press("end", "x")  # "0.5x"
        await pilot.pause()
        assert "'0.5x' is not a number" in str(screen.query_one("#count").render())
        box.value = "abc"
        await pilot.pause()
        count = str(screen.query_one("#count").render())
        assert "'abc' is not a number" in count and "not applied" in count
        assert box.value == "abc" and box.has_class("invalid")
        # the typed text is drawn (not hidden behind a red bar)
        assert "abc" in "".join(seg.text for seg in box.render_line(0))
        assert len(screen.view) == kept  # the last valid filter still applies, and says so
        box.value = "1"
        await pilot.pause()
        assert "not applied" not in str(screen.query_one("#count").render())
        assert len(screen.view) == sum(1 for ex in examples(12) if ex.reward >= 1.0)


def _raw_example() -> Example:
    ex = examples(1)[0]
    ex.messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Fix calc.py"},
        {"role": "assistant", "content": "THOUGHT: look first.\n\n\n```bash\ncat calc.py\n```\n"},
        {"role": "user", "content": "<returncode>0</returncode>\n<output>\n\x1b[31mred\x1b[0m\r\n</output>"},
    ]
    ex.evaluation_info = {
        "status": "tests_failed",
        "test_output": "FAIL: test_add (test_calc.T)\n----\nAssertionError: -1 != 5\n",
    }
    return ex


@run_async
async def test_raw_view_shows_each_message_verbatim(tmp_path: Path) -> None:
    from agentdata_tui.tui.widgets.conversation import ConversationView
    from agentdata_tui.writer import write_training_data

    path = tmp_path / "raw.json"
    write_training_data(path, [_raw_example()], {})
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        view = app.screen.query_one(ConversationView)
        readable = view.text
        assert "```" not in readable and "\x1b" not in readable  # fences rendered, no raw escape
        await pilot.press("v")
        await pilot.pause()
        raw = view.text
        lines = raw.splitlines()
        at = lines.index(next(line for line in lines if "THOUGHT: look first." in line))
        # the content line by line: two blank lines, then the fence as typed
        assert [line.strip() for line in lines[at : at + 6]] == [
            "THOUGHT: look first.",
            "",
            "",
            "```bash",
            "cat calc.py",
            "```",
        ]
        assert "\\x1b[31mred\\x1b[0m\\x0d" in raw  # escape codes and the CR spelled out
        await pilot.press("v")
        await pilot.pause()
        assert view.text == readable


@run_async
async def test_evaluation_outputs_read_as_text(tmp_path: Path) -> None:
    from agentdata_tui.writer import write_training_data

    path = tmp_path / "eval.json"
    write_training_data(path, [_raw_example()], {})
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        await index_done(pilot)
        await pilot.press("3")
        await pilot.pause()
        text = _plain(app.screen.query_one("#evaluation-view").content)
        assert "FAIL: test_add (test_calc.T)\n----\nAssertionError: -1 != 5" in text
        assert "\\n" not in text
        assert "status: tests_failed" in text


def _plain(renderable) -> str:
    import io

    from rich.console import Console

    console = Console(width=100, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


@run_async
async def test_palette_has_no_duplicates_and_f1_helps_from_an_input(tmp_path: Path) -> None:
    from agentdata_tui.tui.app import ActionsProvider

    path = write_file(tmp_path / "data.json", n=3)
    app = make_app("browse", path=path, clock=CLOCK)
    async with app.run_test(size=(80, 24)) as pilot:
        await index_done(pilot)
        names = [name for name, _, _ in ActionsProvider(app.screen)._commands()]
        names += [c.title for c in app.get_system_commands(app.screen)]
        assert len(names) == len(set(names)), names
        assert "Quit" in names and "Keys" in names
        box = app.screen.query_one("#text", Input)
        box.focus()
        await pilot.press("question_mark")
        assert box.value == "?"  # a character to type there
        await pilot.press("f1")
        await pilot.pause()
        assert app.screen.query("HelpPanel")
