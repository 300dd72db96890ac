"""The trajectory browser: an indexed, filterable, sortable table and one example's detail.

The input is indexed in a worker thread; rows appear as batches arrive, sorting is offered
once the index is complete, and only the selected example is read from disk. The table
shows one page of the filtered view at a time (DataTable slows down past ~10k rows).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Checkbox,
    DataTable,
    Header,
    Input,
    Label,
    Static,
    TabbedContent,
    TabPane,
)

from agentdata_tui.errors import UserError
from agentdata_tui.records import Example
from agentdata_tui.tui.index import SORT_KEYS, ExampleIndex, Row, RowFilter
from agentdata_tui.tui.messages import IndexBatch, IndexDone
from agentdata_tui.tui.widgets.conversation import ConversationView
from agentdata_tui.tui.widgets.footer import AppFooter
from agentdata_tui.tui.widgets.render import code, render_evaluation, render_json, speedup_cell

PAGE_SIZE = 1000
COLUMNS = ("instance", "sample", "reward", "speedup", "success", "steps", "exit status")
COLUMN_SORT = dict(
    zip(COLUMNS, ("instance", "sample", "reward", "speedup", "success", "steps", "exit status"), strict=True)
)
TABS = ("conversation", "diff", "evaluation", "steps", "metadata")


def parse_min_reward(text: str) -> tuple[float | None, str | None]:
    """The filter bar's minimum reward: (value, None), or (None, what is wrong in plain words)."""
    text = text.strip()
    if not text:
        return None, None
    try:
        value = float(text)
    except ValueError:
        return None, f"'{text}' is not a number (0 to 1)"
    if not 0.0 <= value <= 1.0:
        return None, f"{text} is outside 0 to 1"
    return value, None


def row_cells(row: Row) -> tuple:
    reward_style = "green" if row.reward >= 1.0 else ("yellow" if row.reward > 0 else "red")
    return (
        row.instance_id,
        str(row.sample_index),
        Text(f"{row.reward:.3f}", style=reward_style, justify="right"),
        speedup_cell(row.speedup),
        Text("✓", style="green") if row.success else Text("✗", style="red"),
        Text(str(row.steps), justify="right"),
        Text(row.exit_status + (" ⚠" if row.error else ""), style="red" if row.error else ""),
    )


class BrowserScreen(Screen[None]):
    BINDINGS = [
        Binding("q", "leave", "Quit", id="quit"),
        Binding("slash", "focus_filter", "Filter", key_display="/", id="filter"),
        Binding("n", "next", "Next", show=False, id="next"),
        Binding("p", "previous", "Previous", show=False, id="previous"),
        Binding("e", "export", "Export", id="export"),
        Binding("t", "statistics", "Statistics", id="statistics"),
        Binding("g", "tasks", "Tasks", id="tasks"),
        Binding("c", "compare", "Compare", id="compare"),
        Binding("o", "cycle_sort", "Sort", show=False, id="sort"),  # also: click a column header
        Binding("r", "reverse_sort", "Reverse sort", show=False, id="reverse"),
        Binding("right_square_bracket", "page(1)", "Next page", show=False, key_display="]", id="next-page"),
        Binding(
            "left_square_bracket", "page(-1)", "Previous page", show=False, key_display="[", id="prev-page"
        ),
        Binding("z", "toggle_folds", "Open/close folds", show=False, id="folds"),
        Binding("v", "toggle_raw", "Raw view", id="raw"),
        Binding("escape", "focus_table", "Table", show=False, id="table"),
        Binding("ctrl+r", "reload", "Reload", show=False, id="reload"),
        Binding("1", "tab('conversation')", "Conversation tab", show=False),
        Binding("2", "tab('diff')", "Diff tab", show=False),
        Binding("3", "tab('evaluation')", "Evaluation tab", show=False),
        Binding("4", "tab('steps')", "Steps tab", show=False),
        Binding("5", "tab('metadata')", "Metadata tab", show=False),
    ]

    def __init__(
        self, path: Path | list[Path], *, top_level: bool = False, all_attempts: bool = False
    ) -> None:
        super().__init__()
        self.all_attempts = all_attempts  # a run folder's every attempt, not only each pair's latest
        self.paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
        self.path = self.paths[0]
        self.top_level = top_level
        self.index: ExampleIndex | None = None
        self.filter = RowFilter()
        self.sort = "file order"
        self.reverse = False
        self.view: list[Row] = []  # the filtered (and sorted) rows
        self._upto = 0  # rows of the index the view has considered (it grows while indexing)
        self.page = 0
        self.current: Row | None = None
        self.example: Example | None = None
        self._rendered: set[str] = set()
        self.filter_error: str | None = None  # the filter bar's input that is not applied, and why
        self.sub_title = " + ".join(str(p) for p in self.paths)

    # -- layout --------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="filter-bar"):
            yield Label("min reward", classes="bar-label")
            yield Input(placeholder="0..1", id="min-reward", classes="narrow", compact=True)
            yield Checkbox("successful only", id="successful", compact=True)
            yield Input(placeholder="/ search instance id and problem statement", id="text", compact=True)
        yield Label("", id="count")
        with Vertical(id="browser-body"):
            table: DataTable = DataTable(id="examples", cursor_type="row", zebra_stripes=True)
            yield table
            with TabbedContent(id="detail"):
                with TabPane("Conversation", id="conversation"):
                    yield ConversationView(id="conversation-view")
                with TabPane("Diff", id="diff"), VerticalScroll():
                    yield Static("", id="diff-view")
                with TabPane("Evaluation", id="evaluation"), VerticalScroll():
                    yield Static("", id="evaluation-view")
                with TabPane("Steps", id="steps"):
                    yield DataTable(id="steps-view", cursor_type="row", zebra_stripes=True)
                with TabPane("Metadata", id="metadata"), VerticalScroll():
                    yield Static("", id="metadata-view")
        yield AppFooter()

    def on_mount(self) -> None:
        table = self.query_one("#examples", DataTable)
        if len(self.paths) > 1:
            table.add_column("input", key="input")
        for name in COLUMNS:
            table.add_column(name, key=name)
        steps = self.query_one("#steps-view", DataTable)
        for name in (
            "step",
            "command",
            "rc",
            "prompt tok",
            "compl tok",
            "latency s",
            "exec s",
            "finish",
            "flags",
        ):
            steps.add_column(name, key=name)
        table.focus()
        try:
            self.index = ExampleIndex(self.paths, all_attempts=self.all_attempts)
        except UserError as exc:
            self.query_one("#count", Label).update(Text(str(exc), style="bold red"))
            self.notify(str(exc), severity="error", timeout=10)
            return
        self._update_count()
        self.build_index()

    # -- indexing ------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="index")
    def build_index(self) -> None:
        index = self.index
        assert index is not None
        try:
            for batch in index.build():
                self.post_message(IndexBatch(batch))
        except UserError as exc:
            self.post_message(IndexDone(len(index.rows), error=str(exc)))
            return
        self.post_message(IndexDone(len(index.rows)))

    def on_index_batch(self, message: IndexBatch) -> None:
        if self.sort != "file order" or self.reverse:  # cannot happen while indexing, kept honest
            return
        # rows a refresh of the view already took from the growing index are not added twice
        fresh = [r for r in message.rows if r.pos >= self._upto]
        if fresh:
            self._upto = fresh[-1].pos + 1
        matching = [r for r in fresh if self.filter.matches(r)] if self.filter.active else fresh
        start = len(self.view)
        self.view.extend(matching)
        lo, hi = self.page * PAGE_SIZE, (self.page + 1) * PAGE_SIZE
        table = self.query_one("#examples", DataTable)
        new = [r for i, r in enumerate(matching, start) if lo <= i < hi]
        if new:
            table.add_rows([self._cells(r) for r in new])
            if self.current is None:
                self._show_row_at(table.cursor_row)
        self._update_count()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Sorting is shown disabled in the footer until the index is complete."""
        if action in ("cycle_sort", "reverse_sort") and (self.index is None or not self.index.complete):
            return None
        return True

    def on_index_done(self, message: IndexDone) -> None:
        self.refresh_bindings()
        if message.error:
            self.notify(message.error, severity="error", timeout=15)
        self._update_count(error=message.error)

    def _update_count(self, error: str | None = None) -> None:
        index = self.index
        if index is None:
            return
        total = len(index.rows)
        pages = max(1, (len(self.view) + PAGE_SIZE - 1) // PAGE_SIZE)
        text = Text()
        text.append(f"{len(self.view):,} of {total:,} examples", style="bold")
        if not index.complete:
            text.append("  indexing…", style="yellow")
        if pages > 1:
            text.append(f"  page {self.page + 1}/{pages} ([ ])", style="dim")
        sort = self.sort + (" ↓" if self.reverse else "")
        text.append(f"  sort: {sort}", style="dim")
        if self.filter_error:
            text.append(f"  ✗ {self.filter_error}", style="bold red")
        if error:
            text.append(f"  {error}", style="bold red")
        self.query_one("#count", Label).update(text)

    def _cells(self, row: Row) -> tuple:
        cells = row_cells(row)
        if self.index is not None and self.index.multiple:
            return (self.index.labels[row.src], *cells)
        return cells

    # -- the view ------------------------------------------------------------
    def refresh_view(self, keep: Row | None = None) -> None:
        """Recompute the filtered, sorted rows and show the page holding ``keep`` (or the first)."""
        assert self.index is not None
        self._upto = len(self.index.rows)
        self.view = self.index.select(self.filter, self.sort, self.reverse, upto=self._upto)
        position = 0
        if keep is not None:
            for i, r in enumerate(self.view):
                if r is keep:
                    position = i
                    break
        self.page = position // PAGE_SIZE
        self._fill_table(position % PAGE_SIZE)

    def _fill_table(self, cursor: int = 0) -> None:
        table = self.query_one("#examples", DataTable)
        table.clear()
        page_rows = self.view[self.page * PAGE_SIZE : (self.page + 1) * PAGE_SIZE]
        table.add_rows([self._cells(r) for r in page_rows])
        self._update_count()
        if page_rows:
            cursor = min(cursor, len(page_rows) - 1)
            table.move_cursor(row=cursor, animate=False)
            self._show_row_at(cursor)
        else:
            self.current = None
            self._show_example(None)

    def _show_row_at(self, table_row: int) -> None:
        i = self.page * PAGE_SIZE + table_row
        if 0 <= i < len(self.view):
            row = self.view[i]
            if row is not self.current:
                self.current = row
                self._load(row)

    def _load(self, row: Row) -> None:
        assert self.index is not None
        try:
            example = self.index.load(row)
        except UserError as exc:
            self.notify(str(exc), severity="error")
            example = None
        self._show_example(example)

    def _show_example(self, example: Example | None) -> None:
        self.example = example
        self._rendered = set()
        self._render_tab(self.query_one("#detail", TabbedContent).active or "conversation")

    def _render_tab(self, tab: str) -> None:
        """Only the visible tab is rendered; the others when they are opened."""
        if tab in self._rendered:
            return
        self._rendered.add(tab)
        ex = self.example
        if tab == "conversation":
            self.query_one("#conversation-view", ConversationView).show(ex)
        elif tab == "diff":
            view = self.query_one("#diff-view", Static)
            if ex is None or not ex.git_diff:
                view.update(Text("No diff: the rollout changed nothing.", style="dim italic"))
            else:
                view.update(code(ex.git_diff, "diff"))
        elif tab == "evaluation":
            view = self.query_one("#evaluation-view", Static)
            if ex is None:
                view.update("")
                return
            head = {
                "reward": ex.reward,
                "success": ex.success,
                "speedup": ex.speedup,
                "exit_status": ex.exit_status,
                "error": ex.error,
                "model_calls": ex.model_calls,
                "evaluation_info": ex.evaluation_info,
            }
            view.update(render_evaluation(head))
        elif tab == "steps":
            self._fill_steps(ex)
        elif tab == "metadata":
            view = self.query_one("#metadata-view", Static)
            if ex is None:
                view.update("")
                return
            data = ex.to_dict()
            for heavy in ("messages", "steps", "git_diff", "problem_statement"):
                data.pop(heavy, None)
            file_metadata = self.index.metadata if self.index is not None else {}
            view.update(render_json({"example": data, "file metadata": file_metadata}))

    def _fill_steps(self, ex: Example | None) -> None:
        table = self.query_one("#steps-view", DataTable)
        table.clear()
        if ex is None:
            return

        def num(x: float | int | None, fmt: str = "{:,}") -> str:
            return "–" if x is None else fmt.format(x)

        for i, s in enumerate(ex.steps, 1):
            flags = " ".join(
                f for f, on_ in (("timeout", s.timed_out), ("truncated", s.output_truncated)) if on_
            )
            command = (s.command or "").replace("\n", " ⏎ ")
            table.add_row(
                str(i),
                command[:60] + ("…" if len(command) > 60 else ""),
                num(s.returncode, "{}"),
                num(s.prompt_tokens),
                num(s.completion_tokens),
                num(s.model_latency_s, "{:.2f}"),
                num(s.exec_time_s, "{:.2f}"),
                s.finish_reason or "–",
                flags,
            )

    @on(TabbedContent.TabActivated, "#detail")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._render_tab(event.pane.id)

    @on(DataTable.RowHighlighted, "#examples")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_row_at(event.cursor_row)

    @on(DataTable.HeaderSelected, "#examples")
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = COLUMN_SORT.get(str(event.column_key.value))
        if key:
            self.set_sort(
                key, reverse=not self.reverse if key == self.sort else key in ("reward", "speedup", "success")
            )

    # -- filters -------------------------------------------------------------
    @on(Input.Changed, "#min-reward, #text")
    @on(Checkbox.Changed, "#successful")
    def _filter_changed(self) -> None:
        self.apply_filter()

    def apply_filter(self) -> None:
        box = self.query_one("#min-reward", Input)
        min_reward, problem = parse_min_reward(box.value)
        box.set_class(problem is not None, "invalid")
        if problem is not None:
            # What was typed stays visible in the box; the line above the table says why it
            # is not applied (the rows shown are still those of the last valid filter).
            self.filter_error = f"min reward {problem}: not applied"
            self._update_count()
            return
        self.filter_error = None
        self._update_count()
        new = RowFilter(
            min_reward=min_reward,
            successful_only=self.query_one("#successful", Checkbox).value,
            text=self.query_one("#text", Input).value.strip(),
        )
        if new == self.filter:
            return
        self.filter = new
        if self.index is not None:
            self.current = None
            self.refresh_view()

    # -- actions -------------------------------------------------------------
    def action_leave(self) -> None:
        if self.top_level:
            self.app.exit(0)
        else:
            self.app.pop_screen()

    def action_reload(self) -> None:
        """Index the input again (a run still going has finished more rollouts since)."""
        if self.index is not None and not self.index.complete:
            self.notify("Still indexing.", severity="warning")
            return
        try:
            self.index = ExampleIndex(self.paths, all_attempts=self.all_attempts)
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return
        self.view, self._upto, self.page, self.current = [], 0, 0, None
        self.sort, self.reverse = "file order", False
        self.query_one("#examples", DataTable).clear()
        self.refresh_bindings()
        self._update_count()
        self.build_index()

    def action_focus_filter(self) -> None:
        self.query_one("#text", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#examples", DataTable).focus()

    def action_toggle_folds(self) -> None:
        """Open (or close) every folded reasoning block and long observation."""
        self.action_tab("conversation")
        self.query_one("#conversation-view", ConversationView).toggle_all()

    def action_toggle_raw(self) -> None:
        """The conversation as stored: fences, blank lines and escape codes as the model wrote them."""
        self.action_tab("conversation")
        view = self.query_one("#conversation-view", ConversationView)
        view.set_raw(not view.raw)
        self.query_one("#detail", TabbedContent).get_tab("conversation").label = (
            "Conversation (raw)" if view.raw else "Conversation"
        )

    def action_tab(self, tab: str) -> None:
        self.query_one("#detail", TabbedContent).active = tab

    def _move(self, delta: int) -> None:
        if not self.view:
            return
        pos = self.page * PAGE_SIZE + self.query_one("#examples", DataTable).cursor_row + delta
        if not 0 <= pos < len(self.view):
            self.notify("No more examples in this direction.", severity="information", timeout=2)
            return
        page = pos // PAGE_SIZE
        if page != self.page:
            self.page = page
            self._fill_table(pos % PAGE_SIZE)
        else:
            self.query_one("#examples", DataTable).move_cursor(row=pos % PAGE_SIZE, animate=False)
            self._show_row_at(pos % PAGE_SIZE)

    def action_next(self) -> None:
        self._move(1)

    def action_previous(self) -> None:
        self._move(-1)

    def action_page(self, delta: int) -> None:
        pages = max(1, (len(self.view) + PAGE_SIZE - 1) // PAGE_SIZE)
        page = min(max(0, self.page + delta), pages - 1)
        if page != self.page:
            self.page = page
            self._fill_table(0)

    def _can_sort(self) -> bool:
        if self.index is None or not self.index.complete:
            self.notify("Sorting is offered once the index is complete.", severity="warning")
            return False
        return True

    def set_sort(self, key: str, reverse: bool = False) -> None:
        if not self._can_sort():
            return
        self.sort, self.reverse = key, reverse
        self.refresh_view(keep=self.current)

    def action_cycle_sort(self) -> None:
        keys = list(SORT_KEYS)
        nxt = keys[(keys.index(self.sort) + 1) % len(keys)]
        self.set_sort(nxt, reverse=nxt in ("reward", "speedup", "success"))

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort, not self.reverse)

    def action_export(self) -> None:
        if self.index is None:
            return
        from agentdata_tui.tui.screens.export import ExportScreen

        if not self.index.complete:
            self.notify(
                "Exporting what is indexed so far; the index is not complete yet.", severity="warning"
            )
        self.app.push_screen(ExportScreen(self.index, list(self.view), self.filter))

    def _what(self) -> str:
        names = " + ".join(p.name for p in self.paths)
        return f"{len(self.view):,} example(s) of {names}" + (" (filtered)" if self.filter.active else "")

    def action_tasks(self) -> None:
        """What the filter shows, grouped by task: pass@k, best reward and speedup per task."""
        if self.index is None:
            return
        from agentdata_tui.tui.screens.compare import TasksScreen

        self.app.push_screen(TasksScreen(self.index, list(self.view), self._what()))

    def action_compare(self) -> None:
        """The current example beside another rollout of its task (from any input opened)."""
        if self.index is None or self.current is None:
            return
        from agentdata_tui.tui.screens.compare import CompareScreen
        from agentdata_tui.tui.tasks import group_by_task

        iid = self.current.instance_id
        group = group_by_task(r for r in self.index.rows if r.instance_id == iid)[0]
        self.app.push_screen(CompareScreen(self.index, group, first=self.current))

    def action_statistics(self) -> None:
        if self.index is None:
            return
        from agentdata_tui.tui.screens.stats import StatsScreen

        self.app.push_screen(StatsScreen(self.index, list(self.view), self._what()))
