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
from pathlib import Path
from typing import Any

from agentdata_tui import __version__
from agentdata_tui.errors import UserError
from agentdata_tui.events import EventTail, EventWriter, cut
from agentdata_tui.interfaces import Evaluator, Model, RolloutCancelled, Sandbox
from agentdata_tui.records import Example
from agentdata_tui.runner.components import grading_slots, start_pool
from agentdata_tui.runner.control import ControlReader, RunControl
from agentdata_tui.runner.counts import RunCounts
from agentdata_tui.runner.rollout import PendingEvaluation, RolloutParts, execute_rollout, step_event
from agentdata_tui.runner.spec import RunListener, RunOutcome, RunSpec, SandboxMaker, Task
from agentdata_tui.runner.store import Redactor, RunLock, RunStore, StoreWriteError
from agentdata_tui.runner.workpool import WorkPool

log = logging.getLogger("agentdata_tui.runner")
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
        executor: Any = None,
    ) -> None:
        self.spec = spec
        self.model = model
        from agentdata_tui.agent.loop import tools_for

        self._tools = tools_for(spec.config)  # recorded in run.json (examples: runner/rollout.py)
        self.evaluator = evaluator
        self.make_sandbox = make_sandbox
        self.listeners = list(listeners or [])
        self.executor = executor  # None: worker threads here; else e.g. ray_executor.RayExecutor
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
        # Sandbox preparation runs behind each rollout's first model call; evaluation sandboxes
        # prepared ahead take the same pool's idle lane (components.start_pool).
        self._starter = start_pool(make_sandbox, spec.workers)
        self._go = threading.Event()
        self._closer = WorkPool(max(1, min(8, spec.workers)), "sandbox-close")
        self.fatal: str | None = None  # what broke the run itself, if anything
        self.write_error: StoreWriteError | None = None  # the first write that failed
        self.lock: RunLock | None = None
        # Live control (``ctl``, the dashboard's keys): pause gate, workers, cancels (control.py).
        self.control = RunControl(spec.workers)
        self._threads: list[threading.Thread] = []
        self._free_slots: list[int] = []
        self._n_workers = 0  # worker threads that have not decided to end
        self._grading = 0  # finished agents whose patch the evaluation pool is grading
        self._grader = WorkPool(grading_slots(evaluator, spec.workers), "evaluate")
        self._joined = False
        self._by_pair: dict[tuple[str, int], Task] = {}  # pairs running or queued in this session
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
        threading.Thread(target=self._after_stop, name="stop-wake", daemon=True).start()

    def _after_stop(self) -> None:
        self.control.stop()  # rollouts held at the pause gate end (they take locks: not in a handler)
        interrupt = getattr(self.model, "interrupt", None)
        if callable(interrupt):
            interrupt()

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
        # Evaluation sandboxes are not in self._live: drain the sandboxes' registries too (os._exit
        # follows), so no evaluation sandbox or its processes outlive the run.
        for name in ("agentdata_tui.sandbox.docker", "agentdata_tui.sandbox.local"):
            module = sys.modules.get(name)
            if module is not None:
                with contextlib.suppress(Exception):
                    module.close_all()
        _remove_templates()

    def _emit(self, type_: str, **fields: Any) -> None:
        """Every event of the run: to the log (a failed write is a StoreWriteError) and the counts."""
        assert self.events is not None
        try:
            event = self.events.emit(type_, **fields)
        except OSError as exc:
            raise StoreWriteError(self.events.path, exc) from None
        self.tally.apply_one(event)

    # -- preparation ------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        m = self.spec.metadata
        return {k: m.get(k) for k in ("model_name", "config_sha256", "dataset_sha256", "selection")}

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
            old_lock = self.lock
            moved = store.set_aside()  # we hold the lock: no live run is moved from under it
            self.lock = RunLock(store.dir).acquire()
            if old_lock is not None:
                old_lock.release()
            log.warning("started over: the previous run was moved to %s", ", ".join(map(str, moved)))
            return {}
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
        budget = self.spec.retry_errors  # per invocation: each errored pair gets N more tries now
        tasks: list[Task] = []
        done = 0
        for inst in self.spec.instances:
            for s in range(self.spec.samples_per_task):
                rec = latest.get((inst.instance_id, s))
                if rec is None:
                    tasks.append(Task(inst, s, 1, retries_left=budget))
                elif rec.retryable and budget > 0:
                    again = self.store.read(rec) if rec.error_kind == "evaluation" else None
                    tasks.append(Task(inst, s, rec.attempt + 1, retries_left=budget - 1, regrade=again))
                else:
                    done += 1
        return tasks, len(self.spec.instances) * self.spec.samples_per_task, done

    # -- the run ------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        """The run, holding ``X.run/lock`` from the first look at the folder to the last write."""
        self.lock = RunLock(self.store.dir).acquire()  # a live holder: RunLocked, one line naming its pid
        try:
            return self._run()
        finally:
            self.lock.release()

    def _run(self) -> RunOutcome:
        t_start = time.monotonic()
        previous = self._prepare_store()
        self.run_id = previous.get("run_id") or f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        tasks, total, done_before = self._plan()
        self._queue.extend(tasks)
        self.store.open_for_append()
        self.store.make_reserve()  # room to say how the run ended if the disk fills up
        self.tally.apply(_read_all_events(self.store.events_path))  # earlier sessions of this run
        try:
            self.events = _RedactingEventWriter(self.store.events_path, self.redact)
        except OSError as exc:
            raise StoreWriteError(self.store.events_path, exc) from None
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
            # the merged config (all --config layers) and the tools offered in tool-call mode
            "config": self.spec.config.model_dump_public(),
            "tools": self._tools,
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
        for t in tasks:
            self._by_pair[(t.instance.instance_id, t.sample_index)] = t
        reader = ControlReader(self.store.dir, self._on_control, self._emit).start()
        try:
            try:
                if self.executor is not None:  # e.g. Ray: rollouts on other machines, recorded here
                    self.executor.drive(self)
                else:
                    self._spawn(workers)
                    # All threads exist before any works: starting a thread waits for it to run, and
                    # with the first ones busy, starting hundreds one by one would spread the start.
                    self._go.set()
                    self._join()
            except KeyboardInterrupt:  # no signal handlers installed (library use): stop gracefully
                self.request_stop()
                self._join()
        finally:
            reader.stop()
            self.control.stop()
            self._grader.shutdown(wait=True)  # no evaluation is left running (an interrupt, a fatal)
            self._starter.shutdown(wait=True)
            self._closer.shutdown(wait=True)  # every sandbox is gone before the run says it ended
            _remove_templates()  # and the copies local sandboxes were made from
            stopped = self._stop.is_set()
            elapsed = round(time.monotonic() - t_start, 3)
            counts = self.counts()
            written = self._finish(run_json, counts, elapsed)
            for listener in self.listeners:
                listener.run_finished(counts, elapsed, stopped)
        return RunOutcome(
            self.spec.output, self.store.dir, self.run_id, written, counts, stopped, elapsed, self.fatal
        )

    def _finish(self, run_json: dict[str, Any], counts: dict[str, Any], elapsed: float) -> int:
        """The run's last writes: ``X.json``, the ``run_finished`` event, ``run.json``.

        After a failed write (a full disk) the reserve is freed first and the run's status and
        reason are written before ``X.json`` is tried; a write that fails again is left out
        (stderr alone says it). Nothing already written is touched: ``--resume`` completes the run.
        """
        stopped = self._stop.is_set()
        written = 0

        def status() -> str:
            if self._aborting:
                return "aborted"
            return "failed" if self.fatal else ("stopped" if stopped else "finished")

        def write_output() -> int:
            meta = {
                **self.spec.metadata,
                "run_id": self.run_id,
                "tool_version": __version__,
                "status": status(),
                "finished_at": _now_iso(),
            }
            try:
                return self.store.write_final(meta, [i.instance_id for i in self.spec.instances])
            except OSError as exc:  # examples.jsonl still holds every attempt: --resume rebuilds it
                self._write_failed(StoreWriteError(self.spec.output, exc))
                return 0

        self.store.close()
        failed_before_output = self.write_error is not None  # mid-run: X.json not tried yet
        if not self._aborting and self.write_error is None:
            written = write_output()
        with contextlib.suppress(StoreWriteError):
            self._emit_endpoints(force=True)
        with contextlib.suppress(StoreWriteError):
            self._emit(
                "run_finished",
                counts=counts,
                figures=self.tally.figures().as_dict(),
                elapsed=elapsed,
                stopped=stopped,
                written=written,
                status=status(),
                **({"error": self.fatal} if self.fatal else {}),
            )
        assert self.events is not None
        self.events.close()
        run_json.update(
            status=status(),
            updated_at=_now_iso(),
            finished_at=_now_iso(),
            counts=counts,
            written=written,
        )
        if self.fatal:
            run_json["error"] = self.fatal
        if (endpoints := self.endpoint_stats()) is not None:
            run_json["endpoints"] = endpoints
        with contextlib.suppress(StoreWriteError):
            self.store.write_run_json(run_json)
        if failed_before_output and not self._aborting and self.spec.output.parent.exists():
            # what there is, if the disk allows now (the old X.json stays if not: written atomically)
            with contextlib.suppress(OSError):
                written = self.store.write_final(
                    {**self.spec.metadata, "run_id": self.run_id, "status": "failed"},
                    [i.instance_id for i in self.spec.instances],
                )
        self.store.free_reserve()
        return written

    def _write_failed(self, exc: StoreWriteError) -> None:
        with self._count_lock:
            if self.write_error is None:
                self.write_error = exc
                self.fatal = str(exc)
        self.store.free_reserve()  # the last words (run.json, run_finished) need the room
        self.request_stop()

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
        self._emit("endpoints", endpoints=stats)

    @property
    def _dataset_meta(self) -> dict[str, Any]:
        ds = self.spec.dataset
        return {"dataset_file": str(ds.path), "dataset_sha256": ds.sha256} if ds is not None else {}

    @property
    def _parts(self) -> RolloutParts:
        """The rollout function's parts (read each time: a caller may swap the evaluator)."""
        return RolloutParts(
            config=self.spec.config,
            model=self.model,
            evaluator=self.evaluator,
            make_sandbox=self.make_sandbox,
            starter=self._starter,
            preparer=self._starter.idle_lane(),
            close_later=self._close_later,
            track=self._track,
            redact=self.redact,
            aborting=lambda: self._aborting,
        )

    def _track(self, sandbox: Sandbox, live: bool) -> None:
        with self._live_lock:
            if live:
                self._live.add(sandbox)
            else:
                self._live.discard(sandbox)

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

    def _spawn(self, n: int) -> None:
        """Start ``n`` more worker threads (slot numbers reused, so dashboard rows stay few)."""
        if self.executor is not None:  # it takes the queue itself (Ray: the nodes' actors)
            return
        with self._qlock:
            if self._joined:
                return
            new = []
            for _ in range(n):
                slot = self._free_slots.pop(0) if self._free_slots else self._n_workers
                new.append(
                    threading.Thread(
                        target=self._worker, args=(slot,), name=f"rollout-worker-{slot}", daemon=True
                    )
                )
                self._n_workers += 1
            self._threads.extend(new)
        for t in new:
            t.start()

    def _leave(self, worker: int) -> None:
        """Under ``_qlock``: this worker thread ends (decided here, so no two count each other)."""
        self._n_workers -= 1
        self._free_slots.append(worker)
        self._free_slots.sort()

    def _join(self) -> None:
        while True:
            with self._qlock:
                alive = [t for t in self._threads if t.is_alive()]
                if not alive and self._n_workers == 0 and self._grading == 0:
                    self._joined = True
                    return
            if alive:
                alive[0].join(0.25)
            else:  # only evaluations left (or a retry about to start its worker)
                time.sleep(0.1)
            self._tick()

    # -- live control (control.jsonl → here → a control event) ----------------------------
    def _on_control(self, cmd: dict[str, Any]) -> dict[str, Any]:
        c = self.control
        name = cmd["command"]
        if self._stop.is_set():
            return self._answer(False, "the run is stopping")
        if name == "pause":
            changed = c.pause()
            return self._answer(
                True, "paused: no new rollouts or model requests" if changed else "already paused"
            )
        if name == "resume":
            changed = c.resume()
            return self._answer(True, "resumed" if changed else "was not paused")
        if name == "workers":
            n = cmd["workers"]
            old = c.set_workers(n)
            with self._qlock:
                more = min(n - self._n_workers, len(self._queue))
            if more > 0:
                self._spawn(more)
            return self._answer(True, f"workers {old} → {n}")
        if name == "cancel":
            rid = cmd["rollout_id"]
            if c.cancel(rid):
                return self._answer(True, f"{rid} ends at its next step boundary (not recorded)")
            return self._answer(False, f"no running rollout {rid!r}")
        if name == "requeue-errors":
            n = self._requeue_errors()
            return self._answer(True, f"{n} errored pair(s) queued again", requeued=n)
        return self._answer(False, f"unknown command {name!r}")

    def _answer(self, ok: bool, detail: str, **extra: Any) -> dict[str, Any]:
        return {
            "ok": ok,
            "detail": detail,
            "paused": self.control.paused,
            "workers": self.control.workers,
            **extra,
        }

    def _requeue_errors(self) -> int:
        """Every pair whose latest attempt is an error, not running or queued now, runs once more."""
        by_id = {i.instance_id: i for i in self.spec.instances}
        latest = self.store.latest()
        added = []
        with self._qlock:
            for (iid, sample), rec in latest.items():
                inst = by_id.get(iid)
                if inst is None or not rec.retryable or (iid, sample) in self._by_pair:
                    continue
                task = Task(inst, sample, rec.attempt + 1)
                self._by_pair[(iid, sample)] = task
                self._queue.append(task)
                added.append(task)
            more = min(len(added), self.control.workers - self._n_workers)
        with self._count_lock:
            self._counts["requeued"] = self._counts.get("requeued", 0) + len(added)
        if more > 0:
            self._spawn(more)
        return len(added)

    def _tick(self) -> None:
        try:
            self._emit_endpoints()
        except StoreWriteError as exc:
            self._write_failed(exc)
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

    def _next_task(self, worker: int) -> Task | None:
        """The next task, or None: this worker ends (stop, queue empty, or `workers N` lowered)."""
        self.control.wait_unpaused()  # paused: no new rollout starts
        with self._qlock:
            if (
                self._aborting
                or self._stop.is_set()
                or not self._queue
                or self._n_workers > self.control.workers
            ):
                self._leave(worker)
                return None
            return self._queue.popleft()

    def _worker(self, worker: int) -> None:
        self._go.wait()
        while (task := self._next_task(worker)) is not None:
            while True:
                try:
                    example = self._rollout(task, worker)
                    if example is None:  # graded in the evaluation pool, which also retries it
                        break
                except RolloutCancelled:
                    with self._count_lock:
                        self._counts["cancelled"] += 1
                    break
                except StoreWriteError as exc:  # a full disk, a read-only folder: the run ends
                    with self._qlock:
                        self._leave(worker)
                    log.info("worker %d: %s", worker, exc)
                    self._write_failed(exc)
                    return
                except Exception as exc:  # the run itself is broken: stop it
                    with self._qlock:
                        self._leave(worker)
                    log.error("worker %d: %s", worker, traceback.format_exc())
                    self.fatal = self.fatal or f"{type(exc).__name__}: {exc}"
                    self.request_stop()
                    return
                again = task.retry(example) if not self._stop.is_set() else None
                if again is not None:
                    with self._count_lock:
                        self._counts["retried"] += 1
                    task = again
                    continue
                with self._qlock:
                    self._by_pair.pop((task.instance.instance_id, task.sample_index), None)
                break

    def _retry_or_done(self, example: Example, task: Task) -> bool:
        """After a graded attempt: queue the next attempt of an errored pair (``--retry-errors``),
        by the worker loop's rule: the pair's budget this invocation (``retries_left``), and an
        attempt whose only failure was its evaluation graded again from its patch."""
        again = task.retry(example) if not self._stop.is_set() else None
        if again is not None:
            with self._count_lock:
                self._counts["retried"] += 1
            with self._qlock:
                self._queue.appendleft(again)
                more = self._n_workers < self.control.workers
            if more:
                self._spawn(1)
            return True
        with self._qlock:
            self._by_pair.pop((task.instance.instance_id, task.sample_index), None)
        return False

    def _grade(self, pending: PendingEvaluation, task: Task, t0: float) -> None:
        """In the evaluation pool: grade a finished agent's patch, record it, maybe retry it."""
        try:
            example, tokens = pending.finish()
            self.record(example, round(time.monotonic() - t0, 3), tokens)
            self._retry_or_done(example, task)
        except StoreWriteError as exc:  # a full disk, a read-only folder: the run ends
            log.info("evaluation: %s", exc)
            self._write_failed(exc)
        except Exception as exc:  # the run itself is broken: stop it
            log.error("evaluation: %s", traceback.format_exc())
            self.fatal = self.fatal or f"{type(exc).__name__}: {exc}"
            self.request_stop()
        finally:
            with self._qlock:
                self._grading -= 1

    # -- one rollout attempt ----------------------------------------------------------------
    def _rollout(self, task: Task, worker: int) -> Example | None:
        """One attempt; None when its grading went to the evaluation pool (recorded there)."""
        inst = task.instance
        rollout_id = self._new_rollout_id()
        self._emit(
            "rollout_started",
            rollout_id=rollout_id,
            instance_id=inst.instance_id,
            sample_index=task.sample_index,
            attempt=task.attempt,
            worker=worker,
            problem_statement=cut(inst.problem_statement),
        )
        events = self.events
        assert events is not None
        t0 = time.monotonic()
        self.control.started(rollout_id)
        try:
            result = execute_rollout(
                self._parts,
                task,
                rollout_id,
                self.run_id,
                worker,
                on_step=lambda d: self._emit("step", rollout_id=rollout_id, **step_event(d)),
                should_stop=lambda: self._stop.is_set() or self.control.cancelled(rollout_id),
                model=self.control.gate(self.model, rollout_id),
                # One worker means one rollout at a time, grading included; with more, a worker
                # goes on to the next rollout while its last patch is graded.
                split=self.spec.workers > 1,
                # Each example names its dataset, so a merge of several runs can be regraded.
                extra_metadata=self._dataset_meta,
            )
        except RolloutCancelled as exc:
            self._emit_cancelled(task, rollout_id, exc, by_ctl=self.control.cancelled(rollout_id))
            raise
        finally:
            self.control.ended(rollout_id)
        if isinstance(result, PendingEvaluation):
            # Evaluation overlaps the next rollouts' agent time: this worker goes on at once.
            with self._qlock:
                self._grading += 1
            try:
                self._grader.submit(self._grade, result, task, t0)
            except RuntimeError:  # the pool is shut down (cannot happen before the join): grade here
                with self._qlock:
                    self._grading -= 1
                example, tokens = result.finish()
                self.record(example, round(time.monotonic() - t0, 3), tokens)
                return example
            return None
        example, tokens = result
        self.record(example, round(time.monotonic() - t0, 3), tokens)
        return example

    def _new_rollout_id(self) -> str:
        with self._count_lock:
            self._rollout_seq += 1
            seq = self._rollout_seq
        return f"{self.run_id[-6:]}-{seq:05d}-{secrets.token_hex(2)}"

    def _emit_cancelled(
        self, task: Task, rollout_id: str, exc: BaseException, *, by_ctl: bool = False, **extra: Any
    ) -> None:
        self._emit(
            "rollout_finished",
            rollout_id=rollout_id,
            instance_id=task.instance.instance_id,
            sample_index=task.sample_index,
            attempt=task.attempt,
            exit_status="Cancelled",
            reward=None,
            speedup=None,
            success=False,
            model_calls=getattr(exc, "model_calls", 0),
            error=None,
            cancelled=True,
            cancelled_by="ctl" if by_ctl else "stop",
            **extra,
        )

    def record(self, example: Example, elapsed: float, tokens: list[Any] | None = None) -> None:
        """The driver's part of a finished attempt: append it, count it, say so, tell the listeners."""
        if tokens and any(t is not None for t in tokens):  # model.capture_tokens
            self.store.append_tokens(
                tokens,
                run_id=self.run_id,
                rollout_id=example.metadata["rollout_id"],
                instance_id=example.instance_id,
                sample_index=example.sample_index,
                attempt=example.attempt,
            )
        self.store.append(example)
        error = example.error
        with self._count_lock:
            c = self._counts
            c["finished"] += 1
            c["successful"] += example.success
            c["errors"] += error is not None
            c["reward_sum"] += example.reward
        self._emit(
            "rollout_finished",
            rollout_id=example.metadata["rollout_id"],
            instance_id=example.instance_id,
            sample_index=example.sample_index,
            attempt=example.attempt,
            exit_status=example.exit_status,
            reward=example.reward,
            speedup=example.speedup,
            success=example.success,
            model_calls=example.model_calls,
            error=cut(error, 500) if error else None,
        )
        for listener in self.listeners:
            try:
                listener.rollout_finished(example, elapsed)
            except Exception:  # a display problem must not cost a rollout worker
                log.warning("progress listener failed:\n%s", traceback.format_exc())


class _RedactingEventWriter(EventWriter):
    """The event log, with known secrets replaced before a line is written."""

    def __init__(self, path: Path, redact: Redactor) -> None:
        super().__init__(path)
        self._redact = redact

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        if self._redact.secrets:
            fields = {k: self._redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        return super().emit(type_, **fields)


def _remove_templates() -> None:
    """The local sandboxes' templates (sandbox/local.py), when this process made any."""
    module = sys.modules.get("agentdata_tui.sandbox.local")
    if module is not None:
        with contextlib.suppress(Exception):
            module.remove_templates()


def _read_all_events(path: Path) -> list[dict[str, Any]]:
    tail = EventTail(path)
    out: list[dict[str, Any]] = []
    while batch := tail.read():
        out.extend(batch)
    return out


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
