"""Placeholder: filled in by the server subcommands work."""

from __future__ import annotations


def register(add) -> None:
    return None
