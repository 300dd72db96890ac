"""A cheap table for rows that change many times a second (the dashboard's workers and finished rollouts).

``DataTable`` re-renders every visible cell through Rich after each ``update_cell`` (its
cache key includes an update counter): with 256 workers streaming that cost hundreds of
milliseconds per repaint. This table holds no cells at all: it asks ``cells(key)`` for the
visible rows only when Textual paints them (the line API), so a repaint costs a few
milliseconds whatever the number of rows or updates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = str | Text
Column = tuple[str, int]  # (header, width)


class LineTable(ScrollView, can_focus=True):
    """Rows by key, cells from a callback, a cursor row; a header line on top."""

    DEFAULT_CSS = """
    LineTable { height: 1fr; scrollbar-gutter: stable; }
    LineTable:focus { background-tint: $foreground 4%; }
    """

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor(-1000000000)", "First", show=False),
        Binding("end", "cursor(1000000000)", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    class Highlighted(Message):
        def __init__(self, table: LineTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> LineTable:
            return self.table

    class Selected(Highlighted):
        pass

    def __init__(
        self,
        columns: Sequence[Column],
        cells: Callable[[str], Sequence[Cell]],
        *,
        flex: int | None = None,
        **kwargs,
    ) -> None:
        """``flex``: the index of a column that takes the width left over by the others (its
        given width is its least); the others keep theirs, so narrowing the table never
        pushes the columns after it out of sight."""
        super().__init__(**kwargs)
        self.base_columns = list(columns)
        self.columns = list(columns)
        self.flex = flex
        self.cells = cells
        self.keys: list[str] = []
        self.cursor = 0
        self._width = sum(w + 2 for _, w in self.columns)

    def _fit(self) -> None:
        if self.flex is None:
            return
        fixed = sum(w + 2 for i, (_, w) in enumerate(self.base_columns) if i != self.flex)
        header, least = self.base_columns[self.flex]
        width = max(least, self.scrollable_content_region.width - fixed - 2)
        if width < 8:  # too narrow to say anything: left out rather than a column of "…"
            width = 0
        self.columns = list(self.base_columns)
        self.columns[self.flex] = (header, width)
        self._width = sum(w + 2 for _, w in self.columns if w > 0)
        self.virtual_size = Size(self._width, len(self.keys) + 1)

    def on_resize(self, event: events.Resize) -> None:
        self._fit()
        self.refresh()

    @property
    def row_count(self) -> int:
        return len(self.keys)

    @property
    def cursor_key(self) -> str | None:
        return self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None

    def set_keys(self, keys: list[str]) -> None:
        """The rows, in order; the cursor stays on its key when it is still there."""
        current = self.cursor_key
        self.keys = keys
        if current is not None and current in keys:
            self.cursor = keys.index(current)
        else:
            self.cursor = min(self.cursor, max(0, len(keys) - 1))
        self.virtual_size = Size(self._width, len(keys) + 1)
        self.refresh()
        if current is None and keys:
            self.post_message(self.Highlighted(self, keys[self.cursor]))

    def refresh_rows(self) -> None:
        self.refresh()

    # -- painting ----------------------------------------------------------
    def _line(self, cells: Sequence[Cell], style: Style | str = "") -> Text:
        line = Text(style=style, no_wrap=True, overflow="ellipsis")
        for (_, width), cell in zip(self.columns, cells, strict=False):
            if width <= 0:
                continue
            text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            if text.justify == "right" and text.cell_len < width:
                text.pad_left(width - text.cell_len)
            text.truncate(width, overflow="ellipsis", pad=True)
            line.append(" ")
            line.append_text(text)
            line.append(" ")
        return line

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        if y == 0:
            text = self._line([h for h, _ in self.columns], style="bold")
        else:
            index = y - 1 + scroll_y
            if index >= len(self.keys):
                return Strip.blank(width, self.rich_style)
            style: Style | str = ""
            if index == self.cursor:
                style = "reverse" if self.has_focus else "underline"
            text = self._line(self.cells(self.keys[index]), style=style)
        strip = Strip(list(text.render(self.app.console)), text.cell_len)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    # -- moving --------------------------------------------------------------
    def move_to(self, index: int, *, select: bool = False) -> None:
        if not self.keys:
            return
        self.cursor = max(0, min(len(self.keys) - 1, index))
        visible = max(1, self.scrollable_content_region.height - 1)
        if self.cursor < self.scroll_y:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= self.scroll_y + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)
        self.refresh()
        key = self.keys[self.cursor]
        self.post_message((self.Selected if select else self.Highlighted)(self, key))

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, delta: int) -> None:
        self.move_to(self.cursor + delta * max(1, self.scrollable_content_region.height - 1))

    def action_select(self) -> None:
        self.move_to(self.cursor, select=True)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_to(event.y - 1 + self.scroll_y, select=True)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
