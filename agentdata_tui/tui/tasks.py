"""Rollouts grouped by task (Textual-free): pass@k, best reward and best speedup per task, and
what two rollouts of a task did differently (their commands and the interdiff of their patches).

A task's rollouts are the latest attempt of each (input, sample): a retried attempt replaces
the one before it, as in ``analyze``; rows from several inputs (runs or models opened together)
are rollouts of the same task when their instance ids match.
"""

from __future__ import annotations

import difflib
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentdata_tui.processing.analyze import pass_at_k
from agentdata_tui.records import Example
from agentdata_tui.tui.index import Row


@dataclass
class TaskGroup:
    instance_id: str
    rows: list[Row] = field(default_factory=list)  # every attempt, in input order
    rollouts: list[Row] = field(default_factory=list)  # the latest attempt per (input, sample)

    @property
    def n(self) -> int:
        return len(self.rollouts)

    @property
    def successes(self) -> int:
        return sum(1 for r in self.rollouts if r.success)

    def pass_at(self, k: int) -> float | None:
        return pass_at_k(self.n, self.successes, k) if 0 < k <= self.n else None

    @property
    def best_reward(self) -> float:
        return max((r.reward for r in self.rollouts), default=0.0)

    @property
    def best_speedup(self) -> float | None:
        """The best speedup among the rollouts that succeeded (a wrong patch's speedup means nothing)."""
        ok = [r.speedup for r in self.rollouts if r.success and r.speedup is not None]
        return max(ok) if ok else None


def group_by_task(rows: Iterable[Row]) -> list[TaskGroup]:
    groups: dict[str, TaskGroup] = {}
    latest: dict[tuple[str, int, int], Row] = {}
    for row in rows:
        group = groups.setdefault(row.instance_id, TaskGroup(row.instance_id))
        group.rows.append(row)
        key = (row.instance_id, row.src, row.sample_index)
        cur = latest.get(key)
        if cur is None or row.attempt >= cur.attempt:
            latest[key] = row
    for key, row in latest.items():
        groups[key[0]].rollouts.append(row)
    for group in groups.values():
        group.rollouts.sort(key=lambda r: r.pos)
    return list(groups.values())


def common_k(groups: list[TaskGroup]) -> int:
    """The largest k every task has enough rollouts for (the estimator needs n >= k)."""
    return min((g.n for g in groups), default=0)


def pass_at_ks(groups: list[TaskGroup]) -> dict[int, float]:
    k_max = common_k(groups)
    return {k: statistics.fmean(g.pass_at(k) or 0.0 for g in groups) for k in range(1, k_max + 1)}


# -- two rollouts side by side --------------------------------------------------------------

_FILE = re.compile(r"^diff --git a/(.+?) b/(.+)$", re.MULTILINE)


def commands(example: Example) -> list[str]:
    """The commands a rollout ran, in order (from its steps; the assistant's fenced blocks
    for records without steps)."""
    out = [s.command for s in example.steps if s.command]
    if out:
        return out
    fence = re.compile(r"```(?:bash|sh)?[ \t]*\n(.*?)\n```", re.DOTALL)
    for m in example.messages:
        if m.get("role") == "assistant" and isinstance(m.get("content"), str):
            found = fence.findall(m["content"])
            if found:
                out.append(found[-1])
    return out


def split_patch(patch: str) -> dict[str, str]:
    """A git diff cut into its files: path -> that file's part of the patch."""
    files: dict[str, str] = {}
    matches = list(_FILE.finditer(patch or ""))
    if not matches and (patch or "").strip():
        return {"(patch)": patch}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(patch)
        files[m.group(2)] = patch[m.start() : end]
    return files


def interdiff(a: str, b: str, label_a: str = "A", label_b: str = "B") -> str:
    """How patch B differs from patch A, file by file: a file changed by one rollout only is
    said so, with that change; a file both changed gets a unified diff of the two changes (lines starting ``-``
    are A's version of the change, ``+`` B's). Empty when the patches are the same."""
    fa, fb = split_patch(a), split_patch(b)
    out: list[str] = []
    for path in sorted(set(fa) | set(fb)):
        pa, pb = fa.get(path), fb.get(path)
        if pa is not None and pb is not None and _hunks(pa) == _hunks(pb):
            continue
        if pa is None or pb is None:
            who = label_b if pa is None else label_a
            out.append(f"=== {path}: changed only by {who}\n")
            out.extend(line + "\n" for line in _hunks(pb if pa is None else pa))  # type: ignore[arg-type]
            continue
        out.append(f"=== {path}: changed by both, differently\n")
        body = difflib.unified_diff(
            _hunks(pa), _hunks(pb), fromfile=f"{label_a}/{path}", tofile=f"{label_b}/{path}", lineterm=""
        )
        out.extend(line + "\n" for line in body)
    return "".join(out)


def _hunks(file_patch: str) -> list[str]:
    """A file's patch without its header lines (index hashes differ between any two patches)."""
    lines = file_patch.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("@@")), len(lines))
    return lines[start:]


def outcome(example: Example) -> dict[str, Any]:
    info = example.evaluation_info if isinstance(example.evaluation_info, dict) else {}
    return {
        "reward": example.reward,
        "success": example.success,
        "speedup": example.speedup,
        "status": info.get("status"),
        "exit_status": example.exit_status,
        "steps": example.assistant_steps,
        "model_calls": example.model_calls,
        "error": example.error,
    }
