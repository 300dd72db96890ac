"""The footer every screen uses: compact below 110 columns, the palette hint dropped below 100,
so that the keys a screen shows still fit an 80-column terminal."""

from __future__ import annotations

from textual import events
from textual.widgets import Footer

COMPACT_BELOW = 110
PALETTE_HINT_FROM = 100


class AppFooter(Footer):
    def on_mount(self) -> None:
        self._fit(self.app.size.width)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width)

    def _fit(self, width: int) -> None:
        self.compact = width < COMPACT_BELOW
        self.show_command_palette = width >= PALETTE_HINT_FROM
