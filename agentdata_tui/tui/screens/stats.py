"""The statistics view: the ``analyze`` figures of what the filter shows, computed in a worker."""

from __future__ import annotations

import io

from rich.console import Console
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, LoadingIndicator, Static

from agentdata_tui.tui.index import ExampleIndex, Row
from agentdata_tui.tui.messages import StatsReady
from agentdata_tui.tui.widgets.footer import AppFooter


def stats_text(stats: dict, width: int = 100) -> Text:
    """``render_stats`` (the CLI's tables and histogram) captured as styled text."""
    from agentdata_tui.processing.analyze import render_stats

    buf = io.StringIO()
    console = Console(
        file=buf, width=width, force_terminal=True, color_system="truecolor", legacy_windows=False
    )
    render_stats(stats, console)
    return Text.from_ansi(buf.getvalue())


class StatsScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q,t", "app.pop_screen", "Back", id="back"),
    ]

    def __init__(self, index: ExampleIndex, rows: list[Row], title: str) -> None:
        super().__init__()
        self.index = index
        self.rows = rows
        self.stats: dict | None = None
        self.text = Text()
        self.sub_title = title

    def compose(self) -> ComposeResult:
        yield Header()
        yield LoadingIndicator(id="stats-loading")
        with VerticalScroll(id="stats-body"):
            yield Static("", id="stats")
        yield AppFooter()

    def on_mount(self) -> None:
        self.compute()

    @work(thread=True, exclusive=True, exit_on_error=False, group="stats")
    def compute(self) -> None:
        from agentdata_tui.processing.analyze import compute_stats

        try:
            sources = [r.src for r in self.rows] if self.index.multiple else None
            stats = compute_stats(self.index.iter_examples(self.rows), sources)
        except Exception as exc:
            self.post_message(StatsReady(None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            return
        self.post_message(StatsReady(stats))

    def on_stats_ready(self, message: StatsReady) -> None:
        self.query_one("#stats-loading").display = False
        target = self.query_one("#stats", Static)
        if message.error or message.stats is None:
            target.update(Text(f"Statistics failed: {message.error}", style="bold red"))
            return
        self.stats = message.stats
        self.text = stats_text(message.stats, width=max(60, self.size.width - 4))
        target.update(self.text)

    def scroll_to_section(self, title: str) -> bool:
        """Scroll so that the first line starting with ``title`` is on top (False: none)."""
        for y, line in enumerate(self.text.plain.splitlines()):
            if line.startswith(title):
                self.query_one("#stats-body", VerticalScroll).scroll_to(y=y, animate=False)
                return True
        return False
