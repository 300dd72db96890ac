"""One rollout attempt, from sandbox to graded example: the function every executor calls.

The thread executor (the runner's worker threads) and the Ray executor's actors (one per node)
both run :func:`execute_rollout`; it writes nothing — the caller records the example it
returns, so the driver stays the only writer of the run store and the event log. Its steps go
to ``on_step``; a stop or a cancel reaches it through ``should_stop`` at step boundaries and
ends it with :class:`RolloutCancelled` (carrying ``model_calls``), never as a record.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentdata_tui.errors import UserError
from agentdata_tui.events import cut
from agentdata_tui.interfaces import (
    DiffUnavailable,
    Evaluator,
    Model,
    RolloutCancelled,
    RolloutContext,
    Sandbox,
    SandboxError,
)
from agentdata_tui.records import Example
from agentdata_tui.runner.spec import SandboxMaker, Task
from agentdata_tui.runner.store import StoreWriteError
from agentdata_tui.runner.workpool import WorkPool
from agentdata_tui.sandbox import tag_run

log = logging.getLogger("agentdata_tui.runner")
ERROR_KINDS = {"ModelError": "model", "SandboxError": "sandbox"}


@dataclass
class RolloutParts:
    """What a rollout needs, on whichever machine runs it."""

    config: Any
    model: Model
    evaluator: Evaluator
    make_sandbox: SandboxMaker
    starter: WorkPool  # sandbox starts, overlapping the first model call
    close_later: Callable[[Sandbox], None]  # sandbox removal, off the critical path
    track: Callable[[Sandbox, bool], None] = lambda sb, live: None  # live sandboxes (for an abort)
    redact: Callable[[str], str] = lambda s: s
    aborting: Callable[[], bool] = lambda: False
    # where evaluation sandboxes prepared ahead start (the starter's idle lane); None: ``starter``
    preparer: Any = None


def step_event(d: dict[str, Any]) -> dict[str, Any]:
    """A step as the event log carries it: assistant and observation cut to 4,000 characters."""
    d = dict(d)
    d["assistant"] = cut(d.get("assistant"))
    d["observation"] = cut(d.get("observation"))
    return d


def execute_rollout(
    parts: RolloutParts,
    task: Task,
    rollout_id: str,
    run_id: str,
    worker: int,
    *,
    on_step: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
    model: Model | None = None,
    extra_metadata: dict[str, Any] | None = None,
    split: bool = False,
) -> tuple[Example, list[Any]] | PendingEvaluation:
    """Sandbox, agent, diff, evaluation → the attempt's example and its per-call token captures
    (``model.capture_tokens``; None entries when not captured). Nothing is recorded here.

    ``split``: a rollout to be graded returns a :class:`PendingEvaluation` once its agent and
    its sandbox are done, so the caller can grade it while the worker runs the next rollout."""
    from agentdata_tui.agent.loop import Agent  # the agent pulls in jinja2: import on first use

    inst = task.instance
    model = model or parts.model
    t0 = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    timings: dict[str, float] = {}
    messages: list[dict[str, Any]] = []
    steps: list[Any] = []
    exit_status = "Error"
    error: str | None = None
    error_kind: str | None = None
    model_calls = 0
    token_calls: list[Any] = []
    cost = 0.0
    patch, diff_truncated = "", False
    cancelled: RolloutCancelled | None = None
    ctx = RolloutContext(inst.instance_id, task.sample_index, task.attempt, run_id)
    sandbox: Sandbox | None = None
    routed: dict[str, Any] = {}
    no_diff: str | None = None  # why no patch could be taken (DiffUnavailable)
    prepared: Any = None  # the evaluation's sandbox, built while the agent runs (evaluator.prepare)
    ended = False  # the agent part ended without an exception escaping (a record follows)
    if task.regrade is not None:  # only the evaluation failed: grade the recorded patch again
        prev = task.regrade
        messages, steps, exit_status = prev.messages, list(prev.steps), prev.exit_status or "Submitted"
        model_calls, patch = prev.model_calls, prev.git_diff
        diff_truncated = bool((prev.metadata or {}).get("git_diff_truncated"))
    try:
        if task.regrade is not None:
            raise _Regrade
        inner = parts.make_sandbox(inst, rollout_id)
        tag_run(inner, run_id)
        # Not tracked as live: like every evaluation sandbox, an abort drains it through the
        # sandbox modules' registries (close_all), never waiting here for a start in progress.
        prepared = _prepare_evaluation(parts.evaluator, inst, run_id, rollout_id)
        # The evaluation's sandbox is queued once the rollout's first step is done: by then its
        # own sandbox has started (a failed start leaves nothing to prepare), and the burst of
        # work when many rollouts start together (their own starts, the previous rollouts'
        # gradings) is behind it. Not ready when the patch comes, the grader starts it.
        pool = parts.preparer or parts.starter
        if prepared is not None:
            on_step = _first_step_then(on_step, lambda: prepared.schedule(pool))
        sandbox = OverlappedStart(inner, timings, parts.starter)
        parts.track(sandbox, True)
        sandbox.start()  # in the background: it overlaps the first model call
        t = time.monotonic()
        agent = Agent(
            parts.config,
            model,
            sandbox,
            instance=inst,
            context=ctx,
            on_step=on_step,
            should_stop=should_stop,
        )
        result = agent.run()
        timings["agent_s"] = round(time.monotonic() - t, 3)
        messages, steps, exit_status = result.messages, result.steps, result.exit_status
        model_calls, cost, error = result.model_calls, result.cost, result.error
        token_calls = list(getattr(result, "tokens", None) or [])
        error_kind = ERROR_KINDS.get(exit_status) if error else None
        if exit_status != "SandboxError":
            t = time.monotonic()
            try:
                patch, diff_truncated = sandbox.diff()
                timings["diff_s"] = round(time.monotonic() - t, 3)
            except DiffUnavailable as exc:  # the agent destroyed the base: its failure, reward 0
                exit_status, no_diff = DiffUnavailable.exit_status, str(exc)
            except SandboxError:
                if error is None:  # the sandbox broke at the very end: that is the story
                    raise
                # else the agent's own error (e.g. ModelError before any command) stays the story
        ended = True
    except _Regrade:
        ended = True
    except StoreWriteError:  # a step's event could not be written: the run ends, not the rollout
        raise
    except RolloutCancelled as exc:
        cancelled = exc
    except SandboxError as exc:
        exit_status, error, error_kind = "SandboxError", str(exc), "sandbox"
        ended = True
    except UserError as exc:  # e.g. a template that does not render: the same for every rollout
        exit_status, error, error_kind = "Error", str(exc), None
        ended = True
    except Exception as exc:
        exit_status, error, error_kind = "Error", f"{type(exc).__name__}: {exc}", "runner"
        log.error("rollout %s (%s) failed:\n%s", rollout_id, inst.instance_id, traceback.format_exc())
        ended = True
    finally:
        if sandbox is not None:
            parts.close_later(sandbox)
        routed = end_model_rollout(parts.model, ctx)
        graded = no_diff is None and exit_status not in ("ModelError", "SandboxError", "Error")
        if prepared is not None and not (ended and cancelled is None and graded and not parts.aborting()):
            parts.close_later(prepared)  # no grading follows: the prepared sandbox goes too
            prepared = None
    if cancelled is not None or parts.aborting():
        if prepared is not None:
            parts.close_later(prepared)
        exc = cancelled or RolloutCancelled("aborted")
        exc.model_calls = model_calls  # type: ignore[attr-defined]
        raise exc

    def finish() -> tuple[Example, list[Any]]:
        nonlocal error, error_kind
        reward, success, speedup, eval_info = 0.0, False, None, None
        # A rollout that failed (model, sandbox, runner) has nothing meaningful to grade.
        if no_diff is not None:
            eval_info = {"status": "no_patch", "reason": no_diff}
        elif exit_status not in ("ModelError", "SandboxError", "Error"):
            t = time.monotonic()
            try:
                res = parts.evaluator.evaluate(
                    inst.to_dict(),
                    patch,
                    run_id=run_id,
                    sample_index=task.sample_index,
                    **({"prepared": prepared} if prepared is not None else {}),
                )
                reward, success, speedup, eval_info = (
                    float(res.reward),
                    bool(res.success),
                    res.speedup,
                    res.info,
                )
            except Exception as exc:  # eval server down, evaluation sandbox failed, ...
                error = f"evaluation failed: {exc}"
                error_kind = "evaluation"
                eval_info = {"status": "error", "error": str(exc)}
                log.warning("rollout %s: %s", rollout_id, error)
            finally:
                if prepared is not None:  # graded in, or closed by, the evaluation: never left behind
                    with contextlib.suppress(Exception):
                        prepared.close()
            timings["eval_s"] = round(time.monotonic() - t, 3)
            if prepared is not None and prepared.start_s is not None:
                timings["eval_sandbox_start_s"] = prepared.start_s
        else:
            eval_info = {"status": "not_evaluated", "reason": f"rollout ended with {exit_status}"}
        timings["total_s"] = round(time.monotonic() - t0, 3)
        example = Example(
            instance_id=inst.instance_id,
            problem_statement=inst.problem_statement,
            messages=messages,
            git_diff=patch,
            exit_status=exit_status,
            reward=reward,
            speedup=speedup,
            success=success,
            model_calls=model_calls,
            evaluation_info=eval_info,
            error=parts.redact(error) if error else None,
            metadata={
                "rollout_id": rollout_id,
                "run_id": run_id,
                "worker": worker,
                "model_name": getattr(model, "name", None),
                "started_at": started_at,
                "timings": timings,
                "cost": cost,
                "git_diff_truncated": diff_truncated,
                "error_kind": error_kind,
                **routed,
                **_tools_metadata(parts.config),
                **(
                    {"regraded_from": (task.regrade.metadata or {}).get("rollout_id")} if task.regrade else {}
                ),
                **(extra_metadata or {}),
            },
            sample_index=task.sample_index,
            attempt=task.attempt,
            steps=steps,
        )
        return example, token_calls

    if split and graded:  # the caller evaluates it elsewhere, while its worker takes the next task
        return PendingEvaluation(finish)
    return finish()


class PendingEvaluation:
    """A rollout whose agent is done and whose patch is still to grade: ``finish()`` grades it
    (the evaluator's own fresh sandbox) and returns ``(example, token_calls)``."""

    def __init__(self, finish: Callable[[], tuple[Example, list[Any]]]) -> None:
        self.finish = finish


def end_model_rollout(model: Any, ctx: RolloutContext) -> dict[str, Any]:
    """An endpoint pool frees the rollout's place and says which endpoint(s) served it."""
    end = getattr(model, "end_rollout", None)
    if end is None:
        return {}
    try:
        return dict(end(ctx) or {})
    except Exception:  # bookkeeping must never cost a rollout
        log.warning("model end_rollout failed:\n%s", traceback.format_exc())
        return {}


def _first_step_then(
    on_step: Callable[[dict[str, Any]], None], then: Callable[[], None]
) -> Callable[[dict[str, Any]], None]:
    """``on_step`` that also calls ``then`` once, after the first step's own report."""
    done = False

    def step(d: dict[str, Any]) -> None:
        nonlocal done
        on_step(d)
        if not done:
            done = True
            try:
                then()
            except Exception:  # an optimisation only
                log.warning("after a rollout's first step:\n%s", traceback.format_exc())

    return step


class _Regrade(Exception):
    """Internal: this attempt re-grades a recorded patch; the agent does not run."""


def _prepare_evaluation(evaluator: Evaluator, inst: Any, run_id: str, rollout_id: str) -> Any:
    """The evaluator's sandbox for this rollout, made now and started once the rollout's own is
    (``BuiltinEvaluator.prepare``); None when it prepares none (an eval server, switched off)."""
    prepare = getattr(evaluator, "prepare", None)
    if not callable(prepare):
        return None
    try:
        return prepare(inst, run_id=run_id)
    except Exception:  # an optimisation only: the evaluation then builds its own, as ever
        log.warning(
            "rollout %s: preparing its evaluation sandbox failed:\n%s", rollout_id, traceback.format_exc()
        )
        return None


class OverlappedStart:
    """A sandbox whose ``start`` runs in the background, so preparing it (a copy and git, or a
    container) overlaps the first model call, which needs no sandbox. The first ``execute`` or
    ``diff`` waits for it and raises what the start raised."""

    def __init__(self, inner: Sandbox, timings: dict[str, float], pool: WorkPool) -> None:
        self.inner = inner
        self._timings = timings
        self._pool = pool
        self._done = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        # A pooled thread: starting a fresh one waits for it to run, which under GIL contention
        # with hundreds of workers costs more than the model call this start hides behind.
        try:
            self._pool.submit(self._start)
        except RuntimeError:  # the pool is shut down: the run is ending, start inline
            self._start()

    def _start(self) -> None:
        t = time.monotonic()
        try:
            self.inner.start()
        except BaseException as exc:
            self._error = exc
        finally:
            self._timings["sandbox_start_s"] = round(time.monotonic() - t, 3)
            self._done.set()

    def _ready(self) -> None:
        self._done.wait()
        if self._error is not None:
            raise self._error

    def execute(self, command: str, timeout: float | None = None) -> Any:
        self._ready()
        return self.inner.execute(command, timeout)

    def diff(self) -> tuple[str, bool]:
        self._ready()
        return self.inner.diff()

    def close(self) -> None:
        self._done.wait(60)  # a start still running would leave its sandbox behind
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _tools_metadata(config: Any) -> dict[str, Any]:
    """The tool schema offered to the model, on each tool-call example (issue 10 §6)."""
    from agentdata_tui.agent.loop import tools_for

    tools = tools_for(config)
    return {"tools": tools} if tools else {}
