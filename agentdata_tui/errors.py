"""Errors meant for people: one line, what was wrong and where.

The CLI turns a :class:`UserError` into a single line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a file, a flag, a field): reported as one line, exit 2."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class InputError(UserError):
    """A file that cannot be read as what it should be (missing, not JSON, truncated, bad field)."""
