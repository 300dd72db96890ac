"""The Textual application: one App, three screens (launch, dashboard, browser) and their dialogs.

``make_app`` is the single factory used by the CLI, the tests and the screenshot script. A
clock can be injected so that elapsed times, ETAs and rates are frozen in snapshots.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen
from textual.widgets import HelpPanel

Clock = Callable[[], float]


def _bindings_of(node: Any) -> list[Binding]:
    out: list[Binding] = []
    for b in getattr(type(node), "BINDINGS", []):
        if isinstance(b, Binding):
            out.append(b)
        elif isinstance(b, tuple):
            out.append(Binding(*b))
    return out


class ActionsProvider(Provider):
    """The command palette lists every action of the current screen and of the app."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        screen = self.screen
        seen: set[str] = set()
        out: list[tuple[str, str, Callable[[], Any]]] = []
        for node in (screen, self.app):
            for b in _bindings_of(node):
                if not b.description or b.action in seen or b.description in seen:
                    continue
                seen.update((b.action, b.description))
                key = b.key_display or b.key.split(",")[0]
                help_text = f"key: {key}" + (f" — {b.tooltip}" if b.tooltip else "")
                out.append((b.description, help_text, partial(node.run_action, b.action)))
        return out

    async def discover(self) -> Hits:
        for name, help_text, run in self._commands():
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, run in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)


class AgentDataApp(App[int]):
    """agentdata-tui's TUI; what it opens first is decided by ``make_app``."""

    CSS_PATH = "app.tcss"
    TITLE = "agentdata-tui"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS = [
        # F1 works with an input focused too (there `?` is a character to type).
        Binding("f1", "toggle_keys", "Keys", key_display="F1", id="keys"),
        Binding("question_mark", "toggle_keys", "Keys", key_display="?", show=False, id="keys-question"),
    ]

    def __init__(self, first_screen: Callable[[AgentDataApp], Screen], *, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock: Clock = clock or time.time
        self._first_screen = first_screen

    def on_mount(self) -> None:
        self.push_screen(self._first_screen(self))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own commands, less those our palette provider lists with the screen's meaning
        (a screen's Quit asks before leaving a live run; Textual's would quit at once)."""
        ours = {b.description for b in _bindings_of(screen) + _bindings_of(self) if b.description}
        for command in super().get_system_commands(screen):
            if command.title not in ours:
                yield command

    def action_toggle_keys(self) -> None:
        """`?`: the keys of the current screen in a side panel (again to hide it)."""
        if self.screen.query(HelpPanel):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()


def make_app(
    mode: str,
    *,
    path: str | Path | list[str | Path] | None = None,
    clock: Clock | None = None,
    launch_values: dict[str, Any] | None = None,
    launch_sources: dict[str, str] | None = None,
    last_path: Path | None = None,
    process: Any = None,
    poll_interval: float = 0.2,
    newer_than: float | None = None,
    all_attempts: bool = False,
) -> AgentDataApp:
    """``mode``: ``browse`` (path: any readable input, or a list of them), ``watch`` (path: a run's output file or
    folder), ``launch`` (the form, prefilled with ``launch_values``)."""

    def first(app: AgentDataApp) -> Screen:
        if mode == "browse":
            from agentdata_tui.tui.screens.browser import BrowserScreen

            paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path or ".")]
            return BrowserScreen(paths, top_level=True, all_attempts=all_attempts)
        if mode == "watch":
            from agentdata_tui.tui.screens.dashboard import DashboardScreen

            return DashboardScreen(
                Path(path or "."), process=process, poll_interval=poll_interval, newer_than=newer_than
            )
        if mode == "launch":
            from agentdata_tui.tui.screens.launch import LaunchScreen

            return LaunchScreen(launch_values or {}, launch_sources or {}, last_path=last_path)
        raise ValueError(f"unknown mode {mode!r}")

    return AgentDataApp(first, clock=clock)
