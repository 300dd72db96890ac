"""Rollouts by task, and two rollouts of one task side by side.

``TasksScreen`` groups what the browser's filter shows by task: rollouts, successes, pass@k
(unbiased estimator), best reward and best speedup. ``CompareScreen`` lists a task's rollouts
— from one run or from several inputs opened together — and shows two of them (A and B)
side by side: outcome, steps and commands, both patches, and the interdiff between them.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Static, TabbedContent, TabPane

from agentdata_tui.errors import UserError
from agentdata_tui.records import Example
from agentdata_tui.tui.index import ExampleIndex, Row
from agentdata_tui.tui.tasks import (
    TaskGroup,
    commands,
    common_k,
    group_by_task,
    interdiff,
    outcome,
    pass_at_ks,
)
from agentdata_tui.tui.widgets.footer import AppFooter
from agentdata_tui.tui.widgets.render import code, speedup_cell, visible


def _num(x: float | None, fmt: str = "{:.3f}") -> Text:
    return Text("–" if x is None else fmt.format(x), justify="right")


class TasksScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q,g", "app.pop_screen", "Back", id="back"),
        Binding("enter", "compare", "Compare rollouts", key_display="⏎", id="compare"),
    ]

    def __init__(self, index: ExampleIndex, rows: list[Row], what: str) -> None:
        super().__init__()
        self.index = index
        self.groups: list[TaskGroup] = group_by_task(rows)
        self.k = common_k(self.groups)
        self.sub_title = f"tasks of {what}"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label(self._summary(), id="tasks-summary")
        yield DataTable(id="tasks", cursor_type="row", zebra_stripes=True)
        yield AppFooter()

    def _summary(self) -> Text:
        text = Text(f"{len(self.groups):,} task(s)", style="bold")
        if self.k:
            figures = "  ".join(f"pass@{k} {v:.3f}" for k, v in pass_at_ks(self.groups).items() if k <= 8)
            text.append(
                f" · {figures}  (unbiased estimator; k up to {self.k}, the fewest rollouts of a task)"
            )
        text.append("\n⏎ on a task: its rollouts side by side", style="dim")
        return text

    def on_mount(self) -> None:
        table = self.query_one("#tasks", DataTable)
        k_label = f"pass@{self.k}" if self.k > 1 else "pass@k"
        for name in ("task", "rollouts", "solved", "pass@1", k_label, "best reward", "best speedup"):
            table.add_column(name, key=name)
        for g in self.groups:
            table.add_row(
                g.instance_id,
                Text(str(g.n), justify="right"),
                Text(str(g.successes), justify="right"),
                _num(g.pass_at(1)),
                _num(g.pass_at(self.k) if self.k > 1 else None),
                _num(g.best_reward),
                speedup_cell(g.best_speedup),
                key=g.instance_id,
            )
        table.focus()

    def action_compare(self) -> None:
        table = self.query_one("#tasks", DataTable)
        if not self.groups:
            return
        group = self.groups[min(table.cursor_row, len(self.groups) - 1)]
        self.app.push_screen(CompareScreen(self.index, group))

    @on(DataTable.RowSelected, "#tasks")
    def _selected(self) -> None:
        self.action_compare()


class CompareScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back", id="back"),
        Binding("a", "pick('a')", "Set A", id="set-a"),
        Binding("b", "pick('b')", "Set B", id="set-b"),
        Binding("1", "tab('side')", "Side by side", show=False),
        Binding("2", "tab('patches')", "Patches", show=False),
        Binding("3", "tab('interdiff')", "Interdiff", show=False),
    ]

    def __init__(self, index: ExampleIndex, group: TaskGroup, first: Row | None = None) -> None:
        super().__init__()
        self.index = index
        self.group = group
        rows = group.rows
        self.a: Row | None = first or (group.rollouts[0] if group.rollouts else None)
        others = [r for r in group.rollouts if r is not self.a] or [r for r in rows if r is not self.a]
        self.b: Row | None = others[0] if others else None
        self.sub_title = f"{group.instance_id}: {group.n} rollout(s)"

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="rollouts", cursor_type="row", zebra_stripes=True)
        with TabbedContent(id="compare-tabs"):
            with TabPane("Side by side", id="side"), Horizontal(classes="pair"):
                with VerticalScroll(classes="side"):
                    yield Static("", id="side-a")
                with VerticalScroll(classes="side"):
                    yield Static("", id="side-b")
            with TabPane("Patches", id="patches"), Horizontal(classes="pair"):
                with VerticalScroll(classes="side"):
                    yield Static("", id="patch-a")
                with VerticalScroll(classes="side"):
                    yield Static("", id="patch-b")
            with TabPane("Interdiff", id="interdiff"), VerticalScroll():
                yield Static("", id="interdiff-view")
        yield AppFooter()

    def on_mount(self) -> None:
        table = self.query_one("#rollouts", DataTable)
        columns = ["", "input", "sample", "attempt", "reward", "speedup", "success", "steps", "exit status"]
        if not self.index.multiple:
            columns.remove("input")
        for name in columns:
            table.add_column(name, key=name or "pick")
        self._fill()
        table.focus()
        self.show_pair()

    def _fill(self) -> None:
        table = self.query_one("#rollouts", DataTable)
        cursor = table.cursor_row
        table.clear()
        latest = {id(r) for r in self.group.rollouts}
        for row in self.group.rows:
            mark = "A" if row is self.a else "B" if row is self.b else ""
            cells: list = [Text(mark, style="bold reverse cyan" if mark else "")]
            if self.index.multiple:
                cells.append(self.index.labels[row.src])
            cells += [
                str(row.sample_index),
                Text(
                    str(row.attempt) + ("" if id(row) in latest else " (retried)"),
                    style="" if id(row) in latest else "dim",
                ),
                Text(f"{row.reward:.3f}", justify="right"),
                speedup_cell(row.speedup),
                Text("✓", style="green") if row.success else Text("✗", style="red"),
                Text(str(row.steps), justify="right"),
                row.exit_status,
            ]
            table.add_row(*cells)
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1), animate=False)

    def _label(self, row: Row) -> str:
        where = f"{self.index.labels[row.src]} " if self.index.multiple else ""
        return f"{where}sample {row.sample_index} attempt {row.attempt}"

    def _load(self, row: Row | None) -> Example | None:
        if row is None:
            return None
        try:
            return self.index.load(row)
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return None

    def show_pair(self) -> None:
        ea, eb = self._load(self.a), self._load(self.b)
        for side, row, ex in (("a", self.a, ea), ("b", self.b, eb)):
            name = side.upper()
            if row is None or ex is None:
                empty = Text("Only one rollout of this task: nothing to compare it with.", style="dim italic")
                self.query_one(f"#side-{side}", Static).update(empty)
                self.query_one(f"#patch-{side}", Static).update(empty)
                continue
            self.query_one(f"#side-{side}", Static).update(side_view(name, self._label(row), ex))
            head = Text(f" {name} ", style="bold reverse cyan") + Text(f" {self._label(row)}", style="bold")
            patch = code(ex.git_diff, "diff") if ex.git_diff else Text("(no patch)", style="dim italic")
            self.query_one(f"#patch-{side}", Static).update(Group(head, patch))
        view = self.query_one("#interdiff-view", Static)
        if ea is None or eb is None:
            view.update(
                Text("Pick two rollouts (a / b on a row) to see how their patches differ.", style="dim")
            )
            return
        assert self.a is not None and self.b is not None
        text = interdiff(ea.git_diff or "", eb.git_diff or "", "A", "B")
        head = Text(f"A = {self._label(self.a)}   B = {self._label(self.b)}\n", style="bold")
        if not text:
            view.update(Group(head, Text("The two patches are the same.", style="green")))
        else:
            view.update(Group(head, code(text, "diff")))

    def action_pick(self, side: str) -> None:
        table = self.query_one("#rollouts", DataTable)
        if not self.group.rows:
            return
        row = self.group.rows[min(table.cursor_row, len(self.group.rows) - 1)]
        if side == "a":
            if row is self.b:
                self.b = self.a
            self.a = row
        else:
            if row is self.a:
                self.a = self.b
            self.b = row
        self._fill()
        self.show_pair()

    def action_tab(self, tab: str) -> None:
        self.query_one("#compare-tabs", TabbedContent).active = tab


def side_view(name: str, label: str, ex: Example) -> RenderableType:
    """One rollout's outcome, then its commands in order."""
    o = outcome(ex)
    head = Text(f" {name} ", style="bold reverse cyan") + Text(f" {label}", style="bold")
    verdict = Text("succeeded", style="bold green") if o["success"] else Text("failed", style="bold red")
    lines = [
        head,
        Text.assemble("outcome ", verdict, f" · reward {o['reward']:.3f}" if o["reward"] is not None else ""),
        Text.assemble("speedup ", speedup_cell(o["speedup"]), f" · status {o['status'] or '–'}"),
        Text(
            f"exit {o['exit_status'] or '–'} · {o['steps']} step(s) · {o['model_calls'] or 0} model call(s)"
        ),
    ]
    if o["error"]:
        lines.append(Text(f"error: {o['error']}", style="red"))
    cmds = commands(ex)
    lines.append(Text(f"\ncommands ({len(cmds)})", style="bold"))
    for i, command in enumerate(cmds, 1):
        line = Text(f"{i:>3} ", style="dim")
        line.append_text(visible(command, style="#87d7af"))
        lines.append(line)
    return Group(*lines)
