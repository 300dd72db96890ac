"""Placeholder: filled in by the tui subcommands work."""

from __future__ import annotations


def register(add) -> None:
    return None


def run_launch(args) -> int:
    from agentdata_tui.errors import UserError

    raise UserError("the TUI is not built yet; use a subcommand (see --help)")
