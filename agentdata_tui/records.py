"""The training-data records (DESIGN §3): the contract users' pipelines depend on.

Field names are fixed; fields may be added, never renamed or removed. Every model allows
extra fields so that data written by other tools (or newer versions) survives a
read-modify-write unchanged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Step(BaseModel):
    """One model call of a rollout and what its action did."""

    model_config = ConfigDict(extra="allow")

    model_latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    command: str | None = None
    returncode: int | None = None
    exec_time_s: float | None = None
    timed_out: bool = False
    output_truncated: bool = False
    # A reply without a usable action: mini-swe-agent 2.x answers it with the format-error
    # message and leaves the reply itself out of the conversation; it is kept here.
    format_error: bool = False
    rejected_reply: dict[str, Any] | None = None


class Example(BaseModel):
    """One finished rollout attempt: the whole conversation, its diff and its evaluation."""

    model_config = ConfigDict(extra="allow")

    instance_id: str
    problem_statement: str = ""
    messages: list[dict[str, Any]]
    git_diff: str = ""
    exit_status: str | None = None
    reward: float = 0.0
    speedup: float | None = None
    success: bool = False
    model_calls: int = 0
    evaluation_info: dict[str, Any] | None = None
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    sample_index: int = 0
    attempt: int = 1
    steps: list[Step] = Field(default_factory=list)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.instance_id, self.sample_index, self.attempt)

    @property
    def assistant_steps(self) -> int:
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def derived_rollout_id(run_id: str, instance_id: str, sample_index: int, attempt: int) -> str:
    """A stable rollout id for a record that has none (the same input always gives the same id)."""
    key = f"{run_id}\0{instance_id}\0{sample_index}\0{attempt}".encode()
    return "r-" + hashlib.sha256(key).hexdigest()[:16]


RunIdDefault = str | Callable[[], str] | None


def example_ids(example: Example, default_run_id: RunIdDefault = None) -> tuple[str, str]:
    """``(run_id, rollout_id)`` of any example (DESIGN §3 identity).

    Records written by the runner carry both in ``metadata``. For older records the run id is
    ``default_run_id`` (the reader passes the file's run id, else ``sha-<content hash>``; a
    callable is asked only when needed) and
    the rollout id is derived from (run id, instance_id, sample_index, attempt), so reading a run
    from ``X.json`` or from ``X.run/`` gives the same ids.
    """
    meta = example.metadata if isinstance(example.metadata, dict) else {}
    run_id = meta.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        run_id = (default_run_id() if callable(default_run_id) else default_run_id) or "unknown"
    rollout_id = meta.get("rollout_id")
    if not isinstance(rollout_id, str) or not rollout_id:
        rollout_id = derived_rollout_id(run_id, example.instance_id, example.sample_index, example.attempt)
    return run_id, rollout_id


def with_ids(example: Example, default_run_id: str | None = None) -> Example:
    """``example`` with ``metadata.run_id`` and ``metadata.rollout_id`` filled in where missing (in place)."""
    meta = example.metadata if isinstance(example.metadata, dict) else {}
    if (
        isinstance(meta.get("run_id"), str)
        and meta["run_id"]
        and isinstance(meta.get("rollout_id"), str)
        and meta["rollout_id"]
    ):
        return example
    run_id, rollout_id = example_ids(example, default_run_id)
    example.metadata = {**meta, "run_id": run_id, "rollout_id": rollout_id}
    return example


class Summary(BaseModel):
    model_config = ConfigDict(extra="allow")

    total_examples: int = 0
    successful: int = 0
    failed: int = 0
    average_reward: float = 0.0
    total_model_calls: int = 0


class TrainingData(BaseModel):
    """A whole training-data file held in memory: only for small files (tests, single runs)."""

    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Any] = Field(default_factory=dict)
    examples: list[Example] = Field(default_factory=list)
    summary: Summary = Field(default_factory=Summary)


class SummaryBuilder:
    """Accumulates the summary of a stream of examples without keeping them."""

    def __init__(self) -> None:
        self.total = 0
        self.successful = 0
        self.reward_sum = 0.0
        self.model_calls = 0
        self.errors = 0
        self.speedups: list[float] = []

    def add(self, ex: Example) -> None:
        self.total += 1
        self.successful += bool(ex.success)
        reward = ex.reward if ex.reward is not None and math.isfinite(ex.reward) else 0.0
        self.reward_sum += reward
        self.model_calls += ex.model_calls or 0
        self.errors += ex.error is not None
        if ex.speedup is not None:
            self.speedups.append(ex.speedup)

    def build(self) -> dict[str, Any]:
        total = self.total
        out: dict[str, Any] = {
            "total_examples": total,
            "successful": self.successful,
            "failed": total - self.successful,
            "average_reward": round(self.reward_sum / total, 6) if total else 0.0,
            "total_model_calls": self.model_calls,
            "success_rate": round(self.successful / total, 6) if total else 0.0,
            "errors": self.errors,
        }
        if self.speedups:
            out["average_speedup"] = round(sum(self.speedups) / len(self.speedups), 6)
        return out
