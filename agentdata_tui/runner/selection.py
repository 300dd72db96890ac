"""Which instances a run covers: ``--instance-ids``, ``--filter``, ``--slice``, ``--shuffle``, ``--max-tasks``.

Applied in that order (ids and regex narrow the set, then the slice, the shuffle and the cap),
so ``--shuffle --seed S --max-tasks N`` is a reproducible random sample of N.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from agentdata_tui.dataset import Instance
from agentdata_tui.errors import UserError


@dataclass
class Selection:
    instance_ids: list[str] | None = None
    filter: str | None = None
    slice: str | None = None
    shuffle: bool = False
    seed: int | None = None
    max_tasks: int | None = None

    def public(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, False)}

    @property
    def empty(self) -> bool:
        return not self.public()


def describe_selection(sel: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sel.items()) or "the whole dataset"


def resolve_selection(
    given: Selection, recorded: dict[str, object] | None, *, resume: bool, force: bool
) -> Selection:
    """The task selection a run uses (DESIGN §3: a resume is the same run).

    A resume takes the selection ``run.json`` records when given the same flags (a ``--shuffle``
    without ``--seed`` then takes the recorded seed); a different selection (no flags after a run
    with some included) is refused unless ``--force``. ``--shuffle`` without ``--seed`` draws a
    seed, which is recorded.
    """
    chosen = given
    if resume and recorded is not None:
        theirs = Selection(**{k: v for k, v in recorded.items() if k in Selection.__dataclass_fields__})
        mine = dict(given.public())
        if given.shuffle and given.seed is None and theirs.seed is not None:
            mine["seed"] = theirs.seed
        if mine == theirs.public():
            chosen = theirs
        elif not force:
            raise UserError(
                f"cannot resume: the run was made with the task selection {describe_selection(theirs.public())}, "
                f"this command selects {describe_selection(given.public())}; give the same selection flags to "
                "resume the same tasks, or add --force"
            )
    if chosen.shuffle and chosen.seed is None:
        chosen = Selection(**{**chosen.__dict__, "seed": random.SystemRandom().randrange(1 << 31)})
    return chosen


def parse_slice(text: str) -> slice:
    """``a:b`` (either side may be empty) → a Python slice; ``--slice 10:20`` is instances 10..19."""
    parts = text.split(":")
    if len(parts) != 2:
        raise UserError(f"--slice: expected START:END like 0:100, got '{text}'")
    try:
        start = int(parts[0]) if parts[0].strip() else None
        end = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise UserError(f"--slice: START and END must be whole numbers, got '{text}'") from None
    return slice(start, end)


def parse_ids(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\s]+", text) if part.strip()]


def select_instances(instances: list[Instance], sel: Selection) -> list[Instance]:
    chosen = list(instances)
    if sel.instance_ids:
        known = {i.instance_id for i in chosen}
        missing = [i for i in sel.instance_ids if i not in known]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise UserError(f"--instance-ids: not in the dataset: {shown}")
        wanted = set(sel.instance_ids)
        chosen = [i for i in chosen if i.instance_id in wanted]
    if sel.filter:
        try:
            rx = re.compile(sel.filter)
        except re.error as exc:
            raise UserError(f"--filter: '{sel.filter}' is not a valid regular expression: {exc}") from None
        chosen = [i for i in chosen if rx.search(i.instance_id)]
    if sel.slice:
        chosen = chosen[parse_slice(sel.slice)]
    if sel.shuffle:
        random.Random(sel.seed).shuffle(chosen)
    if sel.max_tasks is not None:
        chosen = chosen[: sel.max_tasks]
    if not chosen:
        raise UserError(
            "the selection is empty: no instance matches the given --instance-ids/--filter/--slice"
        )
    return chosen
