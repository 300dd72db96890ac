"""What a run is made of: its spec, its tasks, its outcome, and who may listen to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentdata_tui.config import Config
from agentdata_tui.dataset import Dataset, Instance
from agentdata_tui.interfaces import Sandbox
from agentdata_tui.records import Example

SandboxMaker = Callable[[Instance, str], Sandbox]  # (instance, rollout_id) -> a sandbox, not started


class RunListener(Protocol):
    """In-process observer of a run (the progress display). Called from worker threads."""

    def run_started(self, total: int, pending: int, done_before: int) -> None: ...
    def rollout_finished(self, example: Example, elapsed_s: float) -> None: ...
    def run_finished(self, counts: dict[str, Any], elapsed_s: float, stopped: bool) -> None: ...


@dataclass
class RunSpec:
    """Everything a run needs besides its components (model, evaluator, sandbox maker)."""

    dataset: Dataset
    instances: list[Instance]
    config: Config
    output: Path
    workers: int = 4
    samples_per_task: int = 1
    retry_errors: int = 0
    resume: bool = False
    force: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)  # public: goes into X.json and run.json
    settings: dict[str, Any] = field(default_factory=dict)  # public: run.json and run_started
    secrets: list[str] = field(default_factory=list)  # redacted from every file the run writes


@dataclass
class Task:
    instance: Instance
    sample_index: int
    attempt: int
    retries_left: int = 0  # --retry-errors: more tries this invocation gives this pair
    regrade: Example | None = None  # an attempt whose evaluation failed: grade its patch again

    def retry(self, example: Example) -> Task | None:
        """The next attempt of this pair after ``example`` (``--retry-errors``), or None: an
        errored attempt with budget left this invocation is tried again, and one whose only
        failure was its evaluation is graded again from its patch (the rollout itself was fine).
        The caller also checks the run is not stopping."""
        kind = (example.metadata or {}).get("error_kind")
        if example.error is None or not kind or self.retries_left <= 0:
            return None
        return Task(
            self.instance,
            self.sample_index,
            self.attempt + 1,
            retries_left=self.retries_left - 1,
            regrade=example if kind == "evaluation" else None,
        )


@dataclass
class RunOutcome:
    output: Path
    run_dir: Path
    run_id: str
    written: int
    counts: dict[str, Any]
    stopped: bool
    elapsed_s: float
    fatal: str | None = None

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return 1
        if self.stopped:
            return 130
        ran = self.counts.get("finished", 0)
        return 1 if ran and self.counts.get("errors", 0) == ran else 0
