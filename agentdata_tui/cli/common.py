"""Shared pieces of the command line: the parser class, flag types, input/output helpers."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit 2), pointing at --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


AddFn = Callable[..., Parser]


def make_adder(subparsers: argparse._SubParsersAction) -> AddFn:
    """``add(name, help=..., description=..., epilog=...)`` registers a subcommand under both
    its ``_`` and ``-`` spellings (``filter_data`` and ``filter-data``)."""

    def add(name: str, *, help: str, description: str | None = None, epilog: str | None = None) -> Parser:
        other = name.replace("_", "-") if "_" in name else name.replace("-", "_")
        aliases = [other] if other != name else []
        return subparsers.add_parser(
            name,
            aliases=aliases,
            help=help,
            description=description or help,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    return add


def reward_threshold(text: str) -> float:
    """``--min-reward``: a number in 0..1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got '{text}'") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got '{text}'")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got '{text}'")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got '{text}'")
    return value


ALL_ATTEMPTS_HELP = (
    "from a run folder or examples.jsonl, read every recorded attempt (superseded retries included, "
    "each with its 'attempt'); by default only the latest attempt per (instance_id, sample_index), "
    "the same examples as the run's final JSON"
)


def add_all_attempts_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all-attempts", action="store_true", help=ALL_ATTEMPTS_HELP)
