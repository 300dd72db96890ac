"""Which examples to keep: the filters shared by ``filter_data``, the exports and the browser."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agentdata_tui.errors import UserError
from agentdata_tui.records import Example


@dataclass
class Criteria:
    """A conjunction of conditions; a field left at its default does not filter.

    ``text`` is a case-insensitive substring of the instance id or the problem statement (the
    browser's search box); ``instance_regex`` is searched (not anchored) in the instance id;
    ``max_steps`` counts assistant messages, i.e. model turns; ``exit_status`` values compare
    case-insensitively, and ``none`` matches examples without one.
    """

    min_reward: float | None = None
    successful_only: bool = False
    max_steps: int | None = None
    exit_status: list[str] | None = None
    instance_regex: str | None = None
    text: str | None = None
    _compiled: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._compile()

    def _compile(self) -> tuple[Any, ...]:
        """Compile the regex and status set, again whenever the fields were changed (the
        browser edits a Criteria in place as the user types)."""
        source = (self.instance_regex, tuple(self.exit_status) if self.exit_status else None)
        if self._compiled and self._compiled[0] == source:
            return self._compiled
        regex = None
        if self.instance_regex:
            try:
                regex = re.compile(self.instance_regex)
            except re.error as exc:
                raise UserError(
                    f"--instance: not a valid regular expression '{self.instance_regex}': {exc}"
                ) from None
        statuses = None
        if self.exit_status:
            statuses = frozenset(s.strip().lower() for s in self.exit_status if s.strip())
        self._compiled = (source, regex, statuses)
        return self._compiled

    def matches(self, ex: Example) -> bool:
        _, regex, statuses = self._compile()
        if self.min_reward is not None and not (ex.reward is not None and ex.reward >= self.min_reward):
            return False
        if self.successful_only and not ex.success:
            return False
        # a missing exit status is "none", as analyze labels it
        if statuses is not None and (ex.exit_status or "none").lower() not in statuses:
            return False
        if regex is not None and not regex.search(ex.instance_id):
            return False
        if self.text:
            needle = self.text.lower()
            if needle not in ex.instance_id.lower() and needle not in (ex.problem_statement or "").lower():
                return False
        return self.max_steps is None or ex.assistant_steps <= self.max_steps

    def describe(self) -> dict[str, Any]:
        """The conditions actually in force, for metadata and status lines (empty = keep all)."""
        out: dict[str, Any] = {}
        if self.min_reward is not None:
            out["min_reward"] = self.min_reward
        if self.successful_only:
            out["successful_only"] = True
        if self.max_steps is not None:
            out["max_steps"] = self.max_steps
        if self.exit_status:
            out["exit_status"] = list(self.exit_status)
        if self.instance_regex:
            out["instance_regex"] = self.instance_regex
        if self.text:
            out["text"] = self.text
        return out

    @property
    def empty(self) -> bool:
        return not self.describe()


class Counter:
    """Wraps an example stream and counts what went through it (read vs kept)."""

    def __init__(self, examples: Iterable[Example]) -> None:
        self._examples = examples
        self.count = 0

    def __iter__(self) -> Iterator[Example]:
        for ex in self._examples:
            self.count += 1
            yield ex


def select(examples: Iterable[Example], criteria: Criteria | None) -> Iterator[Example]:
    """The examples matching ``criteria`` (all of them when it is None or empty), in order."""
    if criteria is None or criteria.empty:
        yield from examples
        return
    for ex in examples:
        if criteria.matches(ex):
            yield ex


ProgressFn = Callable[[int], Any]
