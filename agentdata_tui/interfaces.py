"""The seams of the core (DESIGN §1): small protocols for the model, the sandbox and the evaluator.

Implementations: ``model.client.OpenAIModel`` and ``model.replay.ReplayModel``;
``sandbox.local.LocalSandbox``, ``sandbox.docker.DockerSandbox`` or a user's class named by
import path; ``evaluation.builtin.BuiltinEvaluator`` and ``evaluation.client.EvalServerClient``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# -- errors that end a rollout with a given exit status ------------------------


class RolloutError(Exception):
    exit_status = "Error"


class ModelError(RolloutError):
    """The model server refused or kept failing (after retries)."""

    exit_status = "ModelError"


class ContextLengthExceeded(ModelError):
    exit_status = "ContextLengthExceeded"


class ModelUnavailable(ModelError):
    """The server kept failing in a way worth retrying (unreachable, timeouts, 5xx, 429): the
    endpoint, not the request, is at fault — an endpoint pool sends the request elsewhere."""


class RolloutCancelled(Exception):
    """A graceful stop reached this rollout at a step boundary: it is not recorded (resume re-runs it)."""


class SandboxError(RolloutError):
    """The sandbox could not be created, or died, or stopped answering."""

    exit_status = "SandboxError"


class DiffUnavailable(Exception):
    """The agent destroyed the diff base (e.g. ``rm -rf`` of our git directory): no patch can be
    taken. The rollout ends with this status as the agent's own failure (reward 0), not a
    sandbox error, and is not retried."""

    exit_status = "DiffUnavailable"


# -- model -------------------------------------------------------------------


@dataclass
class ModelResponse:
    content: str
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    latency_s: float = 0.0
    # with ``model.capture_tokens``: {"prompt_token_ids", "token_ids", "logprobs"}, each None
    # where the server gave none (never invented); None when capture is off
    tokens: dict[str, Any] | None = None


@dataclass
class RolloutContext:
    """What a rollout is about: given to the model (the replay model picks its script by it)."""

    instance_id: str
    sample_index: int = 0
    attempt: int = 1
    run_id: str = ""


@runtime_checkable
class Model(Protocol):
    name: str

    def query(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        context: RolloutContext | None = None,
    ) -> ModelResponse: ...


# -- sandbox -----------------------------------------------------------------


@dataclass
class ExecResult:
    output: str
    returncode: int
    exec_time_s: float = 0.0
    timed_out: bool = False
    output_truncated: bool = False
    exception_info: str = ""


@runtime_checkable
class Sandbox(Protocol):
    """A place where commands run: created per rollout, removed afterwards whatever happens.

    ``start`` prepares the tree (copy/checkout, ``setup_command``) and records the diff base;
    ``diff`` returns ``(patch, truncated)`` against that base, new files included.
    Failures of the sandbox itself raise :class:`SandboxError`.
    """

    def start(self) -> None: ...

    def execute(self, command: str, timeout: float | None = None) -> ExecResult: ...

    def diff(self) -> tuple[str, bool]: ...

    def close(self) -> None: ...


# -- evaluation ----------------------------------------------------------------


@dataclass
class EvalResult:
    reward: float
    success: bool
    speedup: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Evaluator(Protocol):
    def evaluate(
        self, instance: dict[str, Any], patch: str, *, run_id: str = "", sample_index: int = 0
    ) -> EvalResult: ...
