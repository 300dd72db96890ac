"""Processing of training data: selection, statistics, exports, merging, display.

Textual-free on purpose: the CLI subcommands and the TUI browser call the same functions.
Everything streams over :func:`agentdata_tui.reader.open_input` so memory stays flat as
files grow.
"""

from __future__ import annotations
