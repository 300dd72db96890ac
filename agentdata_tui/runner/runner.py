"""Generation runs: many rollouts at once, each recorded the moment it ends (DESIGN §3).

A worker thread per ``--workers`` slot takes (instance, sample) tasks from a shared queue and,
per attempt: builds a sandbox (prepared in the background while the first model call is out),
runs the agent, takes the diff, hands the sandbox to a closer thread, evaluates the patch and
appends the example to ``examples.jsonl``. One rollout's exception never stops
the others: it becomes an example with ``error`` set. The runner tells the world what happens
through ``events.jsonl`` (the dashboard's interface) and in-process listeners (the progress
display) — it knows nothing of who listens.

A graceful stop (first Ctrl+C, SIGTERM, SIGHUP) lets no new rollout start and cancels running
ones at their next step boundary (cancelled attempts are not recorded, so ``--resume`` runs
them again); the final JSON is still written. A second Ctrl+C stops at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentdata_tui import __version__
from agentdata_tui.errors import UserError
from agentdata_tui.events import EventTail, EventWriter, cut
from agentdata_tui.interfaces import Evaluator, Model, RolloutCancelled, RolloutContext, Sandbox, SandboxError
from agentdata_tui.records import Example
from agentdata_tui.runner.counts import RunCounts
from agentdata_tui.runner.spec import RunListener, RunOutcome, RunSpec, SandboxMaker, Task
from agentdata_tui.runner.store import Redactor, RunStore
from agentdata_tui.sandbox import tag_run

log = logging.getLogger("agentdata_tui.runner")
ERROR_KINDS = {"ModelError": "model", "SandboxError": "sandbox"}
ENDPOINT_EVENT_S = 5.0  # how often an endpoint pool's figures go to the event log


class Runner:
    def __init__(
        self,
        spec: RunSpec,
        *,
        model: Model,
        evaluator: Evaluator,
        make_sandbox: SandboxMaker,
        listeners: list[RunListener] | None = None,
    ) -> None:
        self.spec = spec
        self.model = model
        self.evaluator = evaluator
        self.make_sandbox = make_sandbox
        self.listeners = list(listeners or [])
        self.redact = Redactor(spec.secrets)
        self.store = RunStore(spec.output, self.redact)
        self.run_id = ""
        self.events: EventWriter | None = None
        # The figures every display shows (pairs, whole run vs this session), folded from the
        # same events the log gets: earlier sessions' from events.jsonl, then each as emitted.
        self.tally = RunCounts()
        self._stop = threading.Event()
        self._aborting = False
        self._queue: deque[Task] = deque()
        self._qlock = threading.Lock()
        self._live: set[Sandbox] = set()
        self._live_lock = threading.Lock()
        self._counts: dict[str, Any] = {
            "finished": 0,
            "successful": 0,
            "errors": 0,
            "cancelled": 0,
            "retried": 0,
            "reward_sum": 0.0,
        }
        self._count_lock = threading.Lock()
        self._rollout_seq = 0
        self._starter = ThreadPoolExecutor(
            max_workers=max(1, spec.workers), thread_name_prefix="sandbox-start"
        )
        self._go = threading.Event()
        self._closer = ThreadPoolExecutor(
            max_workers=max(1, min(8, spec.workers)), thread_name_prefix="sandbox-close"
        )
        self.fatal: str | None = None  # what broke the run itself, if anything
        self._endpoints_emitted = 0.0

    # -- control ----------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Graceful: no new rollouts; running ones end at their next step boundary, and a model
        call in flight or a retry sleep ends now (the model's ``interrupt``), not minutes later.

        Called from signal handlers: the interrupt runs in a thread of its own (it takes locks).
        """
        self._stop.set()
        interrupt = getattr(self.model, "interrupt", None)
        if callable(interrupt):
            threading.Thread(target=interrupt, name="model-interrupt", daemon=True).start()

    def abort(self) -> None:
        """Immediate: kill every live sandbox now (the second Ctrl+C).

        Called from a signal handler that may have interrupted the first one inside
        ``Event.set()`` (which holds the event's lock): setting it here directly could deadlock.
        """
        self._aborting = True
        if not self._stop.is_set():
            threading.Thread(target=self._stop.set, name="abort-stop", daemon=True).start()
        with self._live_lock:
            live = list(self._live)
        for sb in live:
            with contextlib.suppress(Exception):
                sb.close()
        # Evaluation sandboxes are not in self._live: drain Docker's registry too (os._exit follows).
        docker = sys.modules.get("agentdata_tui.sandbox.docker")
        if docker is not None:
            with contextlib.suppress(Exception):
                docker.close_all()

    def _emit(self, type_: str, **fields: Any) -> None:
        assert self.events is not None
        self.tally.apply_one(self.events.emit(type_, **fields))

    # -- preparation ------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        m = self.spec.metadata
        return {k: m.get(k) for k in ("model_name", "config_sha256", "dataset_sha256")}

    def _prepare_store(self) -> dict[str, Any]:
        """Check an existing run folder against --resume/--force; return the previous run.json."""
        store = self.store
        if not store.exists():
            return {}
        previous = store.read_run_json()
        if not self.spec.resume:
            if not self.spec.force:
                n = len(store.scan())
                raise UserError(
                    f"{store.dir} already holds a run ({n} recorded attempts): add --resume to continue it, "
                    "or --force to start over (the old folder is kept beside it)"
                )
            moved = store.set_aside()
            log.warning("started over: the previous run folder was moved to %s", moved)
            return {}
        pid = previous.get("pid")
        if (
            previous.get("status") == "running"
            and isinstance(pid, int)
            and pid != os.getpid()
            and _alive(pid)
        ):
            raise UserError(f"{store.dir}: a run is still going in this folder (pid {pid}); stop it first")
        mine = self._identity()
        theirs = {k: previous.get(k) for k in mine}
        diff = [k for k in mine if theirs.get(k) and mine[k] and theirs[k] != mine[k]]
        if diff and not self.spec.force:
            what = ", ".join(f"{k} {theirs[k]!r} → {mine[k]!r}" for k in diff)
            raise UserError(
                f"cannot resume {store.dir}: it was made with another {what}; add --force to resume anyway"
            )
        return previous

    def _plan(self) -> tuple[list[Task], int, int]:
        """Tasks still to run, the number of (instance, sample) pairs, and how many are done."""
        latest = self.store.latest() if self.spec.resume else {}
        tasks: list[Task] = []
        done = 0
        for inst in self.spec.instances:
            for s in range(self.spec.samples_per_task):
                rec = latest.get((inst.instance_id, s))
                if rec is None:
                    tasks.append(Task(inst, s, 1))
                elif rec.retryable and rec.attempt < 1 + self.spec.retry_errors:
                    tasks.append(Task(inst, s, rec.attempt + 1))
                else:
                    done += 1
        return tasks, len(self.spec.instances) * self.spec.samples_per_task, done

    # -- the run ------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        t_start = time.monotonic()
        previous = self._prepare_store()
        self.run_id = previous.get("run_id") or f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        tasks, total, done_before = self._plan()
        self._queue.extend(tasks)
        self.store.open_for_append()
        self.tally.apply(_read_all_events(self.store.events_path))  # earlier sessions of this run
        self.events = _RedactingEventWriter(self.store.events_path, self.redact)
        started_at = _now_iso()
        run_json = {
            **{k: v for k, v in previous.items() if k in ("run_id", "started_at", "resumes")},
            "run_id": self.run_id,
            "status": "running",
            "pid": os.getpid(),
            "started_at": previous.get("started_at") or started_at,
            "updated_at": started_at,
            "tool_version": __version__,
            "output": str(self.spec.output.resolve()),
            "total": total,
            **self._identity(),
            "metadata": self.spec.metadata,
            "settings": self.spec.settings,
        }
        if previous:
            run_json["resumes"] = [*previous.get("resumes", []), started_at]
        self.store.write_run_json(run_json)
        workers = max(1, min(self.spec.workers, len(tasks) or 1))
        self._emit(
            "run_started",
            run_id=self.run_id,
            total=total,
            pending=len(tasks),
            done_before=done_before,
            workers=self.spec.workers,
            settings=self.spec.settings,
            pid=os.getpid(),
            resumed=bool(previous),
        )
        for listener in self.listeners:
            attach = getattr(listener, "attach", None)
            if attach is not None:  # a display that reads the run's figures
                attach(self.tally)
            listener.run_started(total, len(tasks), done_before)
        log.info("run %s: %d pending of %d, %d workers", self.run_id, len(tasks), total, workers)
        threads = [
            threading.Thread(target=self._worker, args=(w,), name=f"rollout-worker-{w}", daemon=True)
            for w in range(workers)
        ]
        for t in threads:
            t.start()
        # All threads exist before any works: starting a thread waits for it to run, and with
        # the first ones busy, starting hundreds one by one would spread the start over seconds.
        self._go.set()
        try:
            try:
                self._join(threads)
            except KeyboardInterrupt:  # no signal handlers installed (library use): stop gracefully
                self.request_stop()
                self._join(threads)
        finally:
            self._starter.shutdown(wait=True)
            self._closer.shutdown(wait=True)  # every sandbox is gone before the run says it ended
            stopped = self._stop.is_set()
            elapsed = round(time.monotonic() - t_start, 3)
            counts = self.counts()
            written = 0
            if not self._aborting:
                meta = {
                    **self.spec.metadata,
                    "run_id": self.run_id,
                    "tool_version": __version__,
                    "status": "stopped" if stopped else "finished",
                    "finished_at": _now_iso(),
                }
                try:
                    written = self.store.write_final(meta, [i.instance_id for i in self.spec.instances])
                except OSError as exc:  # examples.jsonl still holds every attempt: --resume rebuilds it
                    log.error("cannot write %s: %s", self.spec.output, exc)
                    self.fatal = self.fatal or f"cannot write {self.spec.output}: {exc}"
            self.store.close()
            self._emit_endpoints(force=True)
            self._emit(
                "run_finished",
                counts=counts,
                figures=self.tally.figures().as_dict(),
                elapsed=elapsed,
                stopped=stopped,
                written=written,
            )
            self.events.close()
            run_json.update(
                status="aborted" if self._aborting else ("stopped" if stopped else "finished"),
                updated_at=_now_iso(),
                finished_at=_now_iso(),
                counts=counts,
                written=written,
            )
            if (endpoints := self.endpoint_stats()) is not None:
                run_json["endpoints"] = endpoints
            self.store.write_run_json(run_json)
            for listener in self.listeners:
                listener.run_finished(counts, elapsed, stopped)
        return RunOutcome(
            self.spec.output, self.store.dir, self.run_id, written, counts, stopped, elapsed, self.fatal
        )

    def _end_model_rollout(self, ctx: RolloutContext) -> dict[str, Any]:
        """An endpoint pool frees the rollout's place and says which endpoint(s) served it."""
        end = getattr(self.model, "end_rollout", None)
        if end is None:
            return {}
        try:
            return dict(end(ctx) or {})
        except Exception:  # bookkeeping must never cost a rollout
            log.warning("model end_rollout failed:\n%s", traceback.format_exc())
            return {}

    def endpoint_stats(self) -> list[dict[str, Any]] | None:
        stats = getattr(self.model, "stats", None)
        return stats() if callable(stats) else None

    def _emit_endpoints(self, force: bool = False) -> None:
        """Per-endpoint figures (requests, errors, latency, health) for the dashboard, every few s."""
        now = time.monotonic()
        if self.events is None or (not force and now - self._endpoints_emitted < ENDPOINT_EVENT_S):
            return
        stats = self.endpoint_stats()
        if stats is None:
            return
        self._endpoints_emitted = now
        self.events.emit("endpoints", endpoints=stats)

    def _close_later(self, sandbox: Sandbox) -> None:
        """Removing a sandbox (a folder, a container) is off the rollout's critical path."""

        def close() -> None:
            with contextlib.suppress(Exception):
                sandbox.close()
            with self._live_lock:
                self._live.discard(sandbox)

        try:
            self._closer.submit(close)
        except RuntimeError:  # the pool is shut down (the run is ending): close here
            close()

    def _join(self, threads: list[threading.Thread]) -> None:
        for t in threads:
            while t.is_alive():
                t.join(0.25)
                self._tick()

    def _tick(self) -> None:
        self._emit_endpoints()
        for listener in self.listeners:
            tick = getattr(listener, "tick", None)
            if tick is not None:
                tick()

    def counts(self) -> dict[str, Any]:
        with self._count_lock:
            c = dict(self._counts)
        n = c["finished"]
        c["average_reward"] = round(c.pop("reward_sum") / n, 6) if n else 0.0
        c["success_rate"] = round(c["successful"] / n, 6) if n else 0.0
        return c

    def _next_task(self) -> Task | None:
        if self._aborting or self._stop.is_set():
            return None
        with self._qlock:
            return self._queue.popleft() if self._queue else None

    def _worker(self, worker: int) -> None:
        self._go.wait()
        while (task := self._next_task()) is not None:
            while True:
                try:
                    example = self._rollout(task, worker)
                except RolloutCancelled:
                    with self._count_lock:
                        self._counts["cancelled"] += 1
                    break
                except Exception as exc:  # the run itself is broken (e.g. the disk is full): stop it
                    log.error("worker %d: %s", worker, traceback.format_exc())
                    self.fatal = self.fatal or f"{type(exc).__name__}: {exc}"
                    self.request_stop()
                    return
                if (
                    example.error is not None
                    and (example.metadata or {}).get("error_kind")
                    and (task.attempt < 1 + self.spec.retry_errors)
                    and not self._stop.is_set()
                ):
                    with self._count_lock:
                        self._counts["retried"] += 1
                    task = Task(task.instance, task.sample_index, task.attempt + 1)
                    continue
                break

    # -- one rollout attempt ----------------------------------------------------------------
    def _rollout(self, task: Task, worker: int) -> Example:
        from agentdata_tui.agent.loop import Agent  # the agent pulls in jinja2: import on first use

        inst = task.instance
        with self._count_lock:
            self._rollout_seq += 1
            seq = self._rollout_seq
        rollout_id = f"{self.run_id[-6:]}-{seq:05d}-{secrets.token_hex(2)}"
        assert self.events is not None
        events = self.events
        self._emit(
            "rollout_started",
            rollout_id=rollout_id,
            instance_id=inst.instance_id,
            sample_index=task.sample_index,
            attempt=task.attempt,
            worker=worker,
            problem_statement=cut(inst.problem_statement),
        )
        t0 = time.monotonic()
        started_at = _now_iso()
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

        def on_step(d: dict[str, Any]) -> None:
            d = dict(d)
            d["assistant"] = cut(d.get("assistant"))
            d["observation"] = cut(d.get("observation"))
            events.emit("step", rollout_id=rollout_id, **d)

        ctx = RolloutContext(inst.instance_id, task.sample_index, task.attempt, self.run_id)
        sandbox: Sandbox | None = None
        try:
            inner = self.make_sandbox(inst, rollout_id)
            tag_run(inner, self.run_id)
            sandbox = _OverlappedStart(inner, timings, self._starter)
            with self._live_lock:
                self._live.add(sandbox)
            sandbox.start()  # in the background: it overlaps the first model call
            t = time.monotonic()
            agent = Agent(
                self.spec.config,
                self.model,
                sandbox,
                instance=inst,
                context=ctx,
                on_step=on_step,
                should_stop=self._stop.is_set,
            )
            result = agent.run()
            timings["agent_s"] = round(time.monotonic() - t, 3)
            messages, steps, exit_status = result.messages, result.steps, result.exit_status
            model_calls, cost, error = result.model_calls, result.cost, result.error
            token_calls = result.tokens
            error_kind = ERROR_KINDS.get(exit_status) if error else None
            if exit_status != "SandboxError":
                try:
                    patch, diff_truncated = sandbox.diff()
                except SandboxError:
                    if error is None:  # the sandbox broke at the very end: that is the story
                        raise
                    # else the agent's own error (e.g. ModelError before any command) stays the story
        except RolloutCancelled as exc:
            cancelled = exc
        except SandboxError as exc:
            exit_status, error, error_kind = "SandboxError", str(exc), "sandbox"
        except UserError as exc:  # e.g. a template that does not render: the same for every rollout
            exit_status, error, error_kind = "Error", str(exc), None
        except Exception as exc:
            exit_status, error, error_kind = "Error", f"{type(exc).__name__}: {exc}", "runner"
            log.error("rollout %s (%s) failed:\n%s", rollout_id, inst.instance_id, traceback.format_exc())
        finally:
            if sandbox is not None:
                self._close_later(sandbox)
            routed = self._end_model_rollout(ctx)
        if cancelled is not None or self._aborting:
            self._emit(
                "rollout_finished",
                rollout_id=rollout_id,
                instance_id=inst.instance_id,
                sample_index=task.sample_index,
                attempt=task.attempt,
                exit_status="Cancelled",
                reward=None,
                speedup=None,
                success=False,
                model_calls=model_calls,
                error=None,
                cancelled=True,
            )
            raise cancelled or RolloutCancelled("aborted")

        reward, success, speedup, eval_info = 0.0, False, None, None
        # A rollout that failed (model, sandbox, runner) has nothing meaningful to grade.
        if exit_status not in ("ModelError", "SandboxError", "Error"):
            t = time.monotonic()
            try:
                res = self.evaluator.evaluate(
                    inst.to_dict(), patch, run_id=self.run_id, sample_index=task.sample_index
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
            timings["eval_s"] = round(time.monotonic() - t, 3)
        else:
            eval_info = {"status": "not_evaluated", "reason": f"rollout ended with {exit_status}"}
        elapsed = round(time.monotonic() - t0, 3)
        timings["total_s"] = elapsed
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
            error=self.redact(error) if error else None,
            metadata={
                "rollout_id": rollout_id,
                "run_id": self.run_id,
                "worker": worker,
                "model_name": getattr(self.model, "name", None),
                "started_at": started_at,
                "timings": timings,
                "cost": cost,
                "git_diff_truncated": diff_truncated,
                "error_kind": error_kind,
                **routed,
            },
            sample_index=task.sample_index,
            attempt=task.attempt,
            steps=steps,
        )
        if any(t is not None for t in token_calls):  # model.capture_tokens
            self.store.append_tokens(
                token_calls,
                run_id=self.run_id,
                rollout_id=rollout_id,
                instance_id=inst.instance_id,
                sample_index=task.sample_index,
                attempt=task.attempt,
            )
        self.store.append(example)
        with self._count_lock:
            c = self._counts
            c["finished"] += 1
            c["successful"] += success
            c["errors"] += error is not None
            c["reward_sum"] += reward
        self._emit(
            "rollout_finished",
            rollout_id=rollout_id,
            instance_id=inst.instance_id,
            sample_index=task.sample_index,
            attempt=task.attempt,
            exit_status=exit_status,
            reward=reward,
            speedup=speedup,
            success=success,
            model_calls=model_calls,
            error=cut(example.error, 500) if example.error else None,
        )
        for listener in self.listeners:
            try:
                listener.rollout_finished(example, elapsed)
            except Exception:  # a display problem must not cost a rollout worker
                log.warning("progress listener failed:\n%s", traceback.format_exc())
        return example


class _OverlappedStart:
    """A sandbox whose ``start`` runs in the background, so preparing it (a copy and git, or a
    container) overlaps the first model call, which needs no sandbox. The first ``execute`` or
    ``diff`` waits for it and raises what the start raised."""

    def __init__(self, inner: Sandbox, timings: dict[str, float], pool: ThreadPoolExecutor) -> None:
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


class _RedactingEventWriter(EventWriter):
    """The event log, with known secrets replaced before a line is written."""

    def __init__(self, path: Path, redact: Redactor) -> None:
        super().__init__(path)
        self._redact = redact

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        if self._redact.secrets:
            fields = {k: self._redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        return super().emit(type_, **fields)


def _read_all_events(path: Path) -> list[dict[str, Any]]:
    tail = EventTail(path)
    out: list[dict[str, Any]] = []
    while batch := tail.read():
        out.extend(batch)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not a running run, nor is another program that got the pid later
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X") and b"agentdata" in cmdline


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
