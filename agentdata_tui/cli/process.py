"""Placeholder: filled in by the process subcommands work."""

from __future__ import annotations


def register(add) -> None:
    return None
