"""The training-data records (DESIGN §3): the contract users' pipelines depend on.

Field names are fixed; fields may be added, never renamed or removed. Every model allows
extra fields so that data written by other tools (or newer versions) survives a
read-modify-write unchanged.
"""

from __future__ import annotations

import math
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
