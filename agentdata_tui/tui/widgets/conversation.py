"""The browser's Conversation view: one block per message, reasoning and long observations folded.

The whole conversation is ONE line-API widget (toolong's pattern): it is rendered to lines
once per example and width, and only the visible lines are painted. Mounting a widget per
message (or per fold) cost Textual a style and layout pass for each, which made moving to
the next example of a 30-message trajectory take ~350 ms. Folds are clickable lines
(``@click`` meta) rendered only once opened; ``z`` opens or closes them all.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from agentdata_tui.records import Example
from agentdata_tui.tui.widgets.render import (
    is_long,
    render_content,
    render_raw,
    render_tool_calls,
    role_title,
    split_reasoning,
)


class _Fold:
    __slots__ = ("index", "kind", "text", "title")

    def __init__(self, index: int, kind: str, text: str, title: str) -> None:
        self.index, self.kind, self.text, self.title = index, kind, text, title


class ConversationView(ScrollView, can_focus=True):
    """One example's messages; folds toggle on click (``toggle_fold`` action) or all with ``z``."""

    DEFAULT_CSS = "ConversationView { height: 1fr; scrollbar-gutter: stable; padding: 0 1; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.example: Example | None = None
        self.raw = False  # each message verbatim (fences, blank lines, escape codes spelled out)
        self.open: set[int] = set()
        self.folds: list[_Fold] = []
        self._parts: list[RenderableType | _Fold] = []
        self._renderables: list[RenderableType] = []
        self._strips: list[Strip] = []
        self._width = 0
        self._generation = 0

    def show(self, example: Example | None) -> None:
        self.example = example
        self.open = set()
        self.folds = []
        self._parts = self._build(example)
        self._render_parts()
        self.scroll_home(animate=False)

    def set_raw(self, raw: bool) -> None:
        """Switch between the readable view and the raw one, staying on the same example."""
        if raw != self.raw:
            self.raw = raw
            self.show(self.example)

    @property
    def text(self) -> str:
        """The rendered lines as plain text (tests look at what is shown)."""
        return "\n".join(strip.text for strip in self._strips)

    def _build(self, example: Example | None) -> list[RenderableType | _Fold]:
        if example is None:
            return [Text("No example selected.", style="dim italic")]
        parts: list[RenderableType | _Fold] = []
        if self.raw:
            parts.append(
                Text(
                    "Raw view: each message exactly as stored (v: back to the readable view)",
                    style="dim italic",
                )
            )
            for i, message in enumerate(example.messages):
                parts.append(Text(""))
                parts.append(role_title(str(message.get("role", "?")), i))
                parts.append(Padding(render_raw(message), (0, 0, 0, 2)))
            return parts
        seen_user = False
        for i, message in enumerate(example.messages):
            role = str(message.get("role", "?"))
            reasoning, content = split_reasoning(message)
            extra = f"tool_call_id {message['tool_call_id']}" if message.get("tool_call_id") else ""
            parts.append(Text(""))
            parts.append(role_title(role, i, extra))
            if reasoning:
                parts.append(self._fold("reasoning", reasoning, f"reasoning ({len(reasoning):,} characters)"))
            observation = role == "tool" or (role == "user" and seen_user)
            if role == "user":
                seen_user = True
            if observation and is_long(content):
                lines = content.count("\n") + 1
                parts.append(
                    self._fold(
                        "observation", content, f"observation: {lines:,} lines, {len(content):,} characters"
                    )
                )
                continue
            body: list[RenderableType] = []
            if content:
                body.append(render_content(content))
            if message.get("tool_calls"):
                body.append(render_tool_calls(message["tool_calls"]))
            if body:
                parts.append(Padding(Group(*body), (0, 0, 0, 2)))
        return parts

    def _fold(self, kind: str, text: str, title: str) -> _Fold:
        fold = _Fold(len(self.folds), kind, text, title)
        self.folds.append(fold)
        return fold

    def _render_parts(self) -> None:
        out: list[RenderableType] = []
        for part in self._parts:
            if isinstance(part, _Fold):
                is_open = part.index in self.open
                click = Style(meta={"@click": f"toggle_fold({part.index})"})
                arrow = "▼" if is_open else "▶"
                hint = "click to close" if is_open else "click or z to open"
                line = Text(
                    f"  {arrow} {part.title}",
                    style=Style(color="cyan", italic=part.kind == "reasoning") + click,
                )
                line.append(f"  ({hint})", style=Style(dim=True) + click)
                out.append(line)
                if is_open:
                    text = (
                        Text(part.text, style="italic")
                        if part.kind == "reasoning"
                        else render_content(part.text)
                    )
                    out.append(Padding(text, (0, 0, 0, 2)))
            else:
                out.append(part)
        self._renderables = out
        self._layout_lines()

    def _layout_lines(self) -> None:
        """Render to lines: what fills the view now, the rest once the screen has painted
        (a long trajectory must not delay showing the next example)."""
        width = self.scrollable_content_region.width
        self._width = width
        self._generation += 1
        self._strips = []
        if width <= 0:
            return  # not sized yet: done on the first resize
        done = self._render_from(0, width, limit=max(self.size.height, 20) * 2)
        if done < len(self._renderables):
            self.call_after_refresh(self._render_rest, done, width, self._generation)

    def _render_from(self, start: int, width: int, limit: int | None = None) -> int:
        console = self.app.console
        options = console.options.update_width(width)
        index = start
        while index < len(self._renderables):
            lines = console.render_lines(self._renderables[index], options, pad=False)
            self._strips.extend(Strip(line) for line in lines)
            index += 1
            if limit is not None and len(self._strips) >= limit:
                break
        self.virtual_size = Size(width, len(self._strips))
        self.refresh()
        return index

    def _render_rest(self, start: int, width: int, generation: int) -> None:
        if generation == self._generation and width == self._width:
            self._render_from(start, width)

    def on_resize(self, event: events.Resize) -> None:
        if self.scrollable_content_region.width != self._width:
            self._layout_lines()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = y + scroll_y
        width = self.scrollable_content_region.width
        if index >= len(self._strips):
            return Strip.blank(width, self.rich_style)
        return self._strips[index].crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def action_toggle_fold(self, index: int) -> None:
        self.open ^= {index}
        self._render_parts()

    def toggle_all(self) -> None:
        self.open = set() if self.open else {f.index for f in self.folds}
        self._render_parts()
