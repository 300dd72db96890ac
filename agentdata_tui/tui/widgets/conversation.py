"""The browser's Conversation view: one block per message, reasoning and long observations folded.

Folded parts are rendered only when opened (a long tool output costs nothing until then),
which keeps moving to the next example fast on large trajectories.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Collapsible, Static

from agentdata_tui.records import Example
from agentdata_tui.tui.widgets.render import (
    is_long,
    render_content,
    render_tool_calls,
    role_title,
    split_reasoning,
)


class LazyFold(Collapsible):
    """A collapsed block whose body is rendered the first time it is opened."""

    def __init__(self, text: str, *, title: str, plain: bool = False) -> None:
        self._text = text
        self._plain = plain
        self._filled = False
        super().__init__(title=title, collapsed=True)

    def _fill(self) -> None:
        if self._filled:
            return
        self._filled = True
        body = Text(self._text) if self._plain else render_content(self._text)
        self.query_one(Collapsible.Contents).mount(Static(body, classes="fold-body"))

    def _watch_collapsed(self, collapsed: bool) -> None:
        if not collapsed:
            self._fill()
        super()._watch_collapsed(collapsed)


class ConversationView(VerticalScroll):
    """Shows one example's messages."""

    DEFAULT_CSS = """
    ConversationView { height: 1fr; padding: 0 1; }
    ConversationView .msg-title { margin-top: 1; }
    ConversationView .msg-body { padding-left: 2; }
    ConversationView Collapsible { padding-left: 1; border-top: none; }
    ConversationView .role-reasoning CollapsibleTitle { color: $text-muted; text-style: italic; }
    """

    def show(self, example: Example | None) -> None:
        self.remove_children()
        if example is None:
            self.mount(Static("No example selected.", classes="msg-body"))
            return
        widgets: list[Widget] = []
        first_user_seen = False
        for i, message in enumerate(example.messages):
            widgets.extend(self._message_widgets(i, message, first_user_seen))
            if message.get("role") == "user":
                first_user_seen = True
        self.mount_all(widgets)
        self.scroll_home(animate=False)

    def _message_widgets(self, i: int, message: dict[str, Any], is_observation_context: bool) -> list[Widget]:
        role = str(message.get("role", "?"))
        reasoning, content = split_reasoning(message)
        out: list[Widget] = []
        extra = f"tool_call_id {message['tool_call_id']}" if message.get("tool_call_id") else ""
        out.append(Static(role_title(role, i, extra), classes="msg-title"))
        if reasoning:
            fold = LazyFold(reasoning, title=f"reasoning ({len(reasoning):,} characters)", plain=True)
            fold.add_class("role-reasoning")
            out.append(fold)
        observation = role == "tool" or (role == "user" and is_observation_context)
        if observation and is_long(content):
            lines = content.count("\n") + 1
            out.append(
                LazyFold(content, title=f"observation: {lines:,} lines, {len(content):,} characters (open)")
            )
        else:
            body = render_content(content) if content else None
            if message.get("tool_calls"):
                calls = render_tool_calls(message["tool_calls"])
                body = Group(body, calls) if body is not None else calls
            if body is not None:
                out.append(Static(body, classes=f"msg-body role-{role}"))
        return out
