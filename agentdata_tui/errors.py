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
        message = one_line(message)
        super().__init__(f"{where}: {message}" if where else message)


def one_line(text: str) -> str:
    """Join a multi-line text (e.g. a JSON parser's message with its caret art) into one line:
    errors for people are printed as exactly one line."""
    if "\n" not in text and "\r" not in text:
        return text
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def validation_message(exc, label: str) -> str:
    """The first problem of a pydantic ``ValidationError`` as one readable phrase about ``label``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "missing":
        return f"{label} lacks required field '{loc}'"
    return f"{label}: field '{loc}': {err['msg']}"


class InputError(UserError):
    """A file that cannot be read as what it should be (missing, not JSON, truncated, bad field)."""
