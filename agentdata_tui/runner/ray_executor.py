"""Past one machine: rollouts on a Ray cluster (issue 13 §4), ``--executor ray --ray-address ADDR``.

- Ray is an optional extra (``pip install 'agentdata-tui[ray]'``), imported only here, only
  when a run asks for it.
- **The driver (this process) stays the only writer** of the run store and the event log: the
  rollouts run in **one threaded actor per node** (its concurrency = that node's share of the
  workers), calling :func:`~agentdata_tui.runner.rollout.execute_rollout` — the same function
  as the thread executor, with the same per-example metadata (``dataset_file``,
  ``dataset_sha256``; plus ``node`` and ``host``) — and return the example; the driver records it.
- As in the thread executor, a finished agent's patch is graded by an evaluation pool inside
  the actor (``split=True``): its slot takes the next rollout at once, and the graded example
  comes back through one long-poll call per node (``graded``).
- Results stream back with ``ray.wait``; a rollout's steps come back every ~0.5 s
  (``drain``, one call out per node, never waited for: a node slow to answer holds up no other)
  and all of them again with its result, so the dashboard follows rollouts on every node and
  the log gets each step once, in order, before the rollout's end.
- Ray's own retries are off (``max_restarts=0``, ``max_task_retries=0``): when an actor or its
  node dies, the driver re-queues the rollouts that were in flight there, those being graded
  included (a ``Cancelled``
  event with ``lost: true``, counted in ``requeued_lost``, apart from ``--retry-errors``; the
  attempt number stays, since nothing was recorded) — nothing lost, nothing recorded twice.
  A node that joins gets an actor.
- Sandboxes are made on the node that runs the rollout: ``local`` in that node's temp folder
  (the dataset's ``repo_path`` folders must exist there at the same path), ``docker`` with that
  node's own Docker daemon.
- Pause, resume, cancel and stop reach the actors (each holds a :class:`RunControl`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from agentdata_tui.errors import UserError
from agentdata_tui.interfaces import RolloutCancelled
from agentdata_tui.runner.components import grading_slots, start_pool
from agentdata_tui.runner.control import RunControl
from agentdata_tui.runner.rollout import PendingEvaluation, RolloutParts, execute_rollout, step_event
from agentdata_tui.runner.spec import Task
from agentdata_tui.runner.store import StoreWriteError
from agentdata_tui.runner.workpool import WorkPool

log = logging.getLogger("agentdata_tui.runner")
DRAIN_S = 0.5
NODE_CHECK_S = 2.0
POLL_S = 5.0  # the longest a ``graded`` call waits in the actor for a grading to end


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            "--executor ray needs Ray: pip install 'agentdata-tui[ray]' (on the driver and every node)"
        ) from None
    return ray


@dataclass
class PartsRecipe:
    """How to build a rollout's parts on a node (the parts themselves hold sockets and threads).

    Travels to the actors through Ray's object store, API key and eval token included (they
    never reach a file or a log)."""

    config: Any
    dataset: Any
    base_urls: list[str]
    api_key: str | None
    model_name: str
    temperature: float | None = None
    max_tokens: int | None = None
    environment_class: str | None = None
    docker_servers: list[str] = field(default_factory=list)
    eval_server: str | None = None
    eval_token: str | None = None
    secrets: list[str] = field(default_factory=list)
    served_name: str | None = None  # the model name requests carry (client.served_model_name)

    def build(self, workers: int) -> tuple[RolloutParts, WorkPool]:
        from agentdata_tui.model.pool import build_model
        from agentdata_tui.runner.components import evaluator_for, sandbox_maker
        from agentdata_tui.runner.store import Redactor

        model = build_model(
            self.base_urls,
            self.api_key,
            self.model_name,
            self.config.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            pool_size=workers,
            served_name=self.served_name,
        )
        make = sandbox_maker(
            self.dataset,
            self.config,
            environment_class=self.environment_class,
            docker_servers=self.docker_servers,
        )
        evaluator = evaluator_for(self.eval_server, make, token=self.eval_token, pool_size=workers)
        closer = WorkPool(max(1, min(8, workers)), "sandbox-close")

        def close_later(sb) -> None:
            def close() -> None:
                with contextlib.suppress(Exception):
                    sb.close()

            try:
                closer.submit(close)
            except RuntimeError:
                close()

        # As the thread executor: local sandboxes are prepared a few at a time (this node's CPUs),
        # evaluation sandboxes prepared ahead behind them.
        starter = start_pool(make, workers)
        parts = RolloutParts(
            config=self.config,
            model=model,
            evaluator=evaluator,
            make_sandbox=make,
            starter=starter,
            preparer=starter.idle_lane(),
            close_later=close_later,
            redact=Redactor(self.secrets),
        )
        return parts, closer


class RolloutActor:
    """Runs rollouts on one node, in threads (a threaded actor); writes nothing.

    ``metadata``: what the driver adds to every example (the thread executor's
    ``extra_metadata``: the dataset's file and hash); ``node`` and ``host`` are added here."""

    def __init__(
        self, recipe: PartsRecipe, run_id: str, workers: int, metadata: dict[str, Any] | None = None
    ) -> None:
        import socket

        self.run_id = run_id
        self.parts, self._closer = recipe.build(workers)
        self.control = RunControl(workers)
        self._steps: dict[str, list[dict[str, Any]]] = {}  # per running rollout, all its steps
        self._sent: dict[str, int] = {}  # how many of them ``drain`` gave out
        self._lock = threading.Lock()
        self.host = socket.gethostname()
        self.node_id = import_ray().get_runtime_context().get_node_id()
        self.metadata = {**(metadata or {}), "node": self.node_id[:12], "host": self.host}
        # Finished agents' patches are graded here while their slots run the next rollouts.
        self._grader = WorkPool(grading_slots(self.parts.evaluator, workers), "evaluate")
        self._graded: list[tuple[str, dict[str, Any]]] = []
        self._graded_cv = threading.Condition()

    def where(self) -> dict[str, Any]:
        import os

        ray = import_ray()
        return {"node_id": ray.get_runtime_context().get_node_id(), "host": self.host, "pid": os.getpid()}

    def run(self, task: Task, rollout_id: str, worker: int, split: bool = True) -> dict[str, Any]:
        """One rollout. Returns once its agent and its sandbox are done: the example, or (``split``,
        a patch to grade) ``{"grading": True}`` — the example then comes from :meth:`graded`."""

        def on_step(d: dict[str, Any]) -> None:
            with self._lock:
                self._steps.setdefault(rollout_id, []).append(step_event(d))

        self.control.started(rollout_id)
        t0 = time.monotonic()
        try:
            result = execute_rollout(
                self.parts,
                task,
                rollout_id,
                self.run_id,
                worker,
                on_step=on_step,
                should_stop=lambda: self.control.cancelled(rollout_id) or self.control._stopped,
                model=self.control.gate(self.parts.model, rollout_id),
                split=split,
                extra_metadata=self.metadata,
            )
            out: dict[str, Any]
            if isinstance(result, PendingEvaluation):
                try:
                    self._grader.submit(self._grade, result, rollout_id, t0)
                    out = {"grading": True}
                except RuntimeError:  # the pool is shut down (the actor is closing): grade here
                    example, tokens = result.finish()
                    out = {"example": example, "tokens": tokens}
            else:
                example, tokens = result
                out = {"example": example, "tokens": tokens}
        except RolloutCancelled as exc:
            out = {"cancelled": True, "model_calls": getattr(exc, "model_calls", 0)}
        finally:
            self.control.ended(rollout_id)
            with self._lock:
                out_steps = self._steps.pop(rollout_id, [])
                self._sent.pop(rollout_id, None)
        out["steps"] = out_steps  # all of them: the driver skips those a drain brought
        out["elapsed"] = round(time.monotonic() - t0, 3)
        return out

    def _grade(self, pending: PendingEvaluation, rollout_id: str, t0: float) -> None:
        """In the evaluation pool: grade the patch; the result waits for :meth:`graded`."""
        out: dict[str, Any]
        try:
            example, tokens = pending.finish()
            out = {"example": example, "tokens": tokens}
        except Exception:  # not the evaluation's failure (finish records that): our code broke
            out = {"failed": traceback.format_exc()}
        out["elapsed"] = round(time.monotonic() - t0, 3)
        with self._graded_cv:
            self._graded.append((rollout_id, out))
            self._graded_cv.notify_all()

    def graded(self, timeout: float = POLL_S) -> list[tuple[str, dict[str, Any]]]:
        """The gradings ended since the last call, ``(rollout_id, result)``; waits up to
        ``timeout`` for one (the driver keeps one such call out per node while any is graded)."""
        with self._graded_cv:
            self._graded_cv.wait_for(lambda: bool(self._graded), timeout)
            out, self._graded = self._graded, []
        return out

    def drain(self) -> list[tuple[str, int, dict[str, Any]]]:
        """The steps taken since the last call: ``(rollout_id, index in the rollout, step)``."""
        out: list[tuple[str, int, dict[str, Any]]] = []
        with self._lock:
            for rid, ds in self._steps.items():
                i = self._sent.get(rid, 0)
                out.extend((rid, j, d) for j, d in enumerate(ds[i:], i))
                self._sent[rid] = len(ds)
        return out

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def cancel(self, rollout_id: str) -> bool:
        return self.control.cancel(rollout_id)

    def stop(self) -> None:
        self.control.stop()

    def close(self) -> None:
        self.control.stop()
        self._grader.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.parts.model.close()
        self._closer.shutdown(wait=True)
        self.parts.starter.shutdown(wait=False)


@dataclass
class _Node:
    node_id: str
    handle: Any
    host: str = ""
    capacity: int = 0
    running: int = 0  # rollouts whose agent runs there (the ones being graded do not count)
    alive: bool = True
    polling: bool = False  # a ``graded`` call is out
    draining: bool = False  # a ``drain`` call is out


@dataclass
class _Flight:
    task: Task
    rollout_id: str
    worker: int
    node: _Node
    t0: float
    emitted: int = 0  # steps of it in the event log so far


class RayExecutor:
    """Drives a :class:`~agentdata_tui.runner.runner.Runner`'s queue on a Ray cluster."""

    def __init__(
        self,
        address: str | None,
        recipe: PartsRecipe,
        *,
        init_kwargs: dict[str, Any] | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        self.address = address
        self.recipe = recipe
        self.init_kwargs = dict(init_kwargs or {})
        self.max_concurrency = max_concurrency
        self.nodes: dict[str, _Node] = {}
        self.lost = 0
        self._inflight: dict[Any, _Flight] = {}  # run refs: agents running
        self._grading: dict[str, _Flight] = {}  # by rollout id: patches being graded on their node
        self._polls: dict[Any, _Node] = {}  # graded refs
        self._early: dict[str, dict[str, Any]] = {}  # graded before its run result came back
        self._running: dict[str, _Flight] = {}  # by rollout id: the flights of _inflight
        self._drains: dict[Any, _Node] = {}  # drain refs
        self._free_workers: list[int] = []
        self._next_worker = 0
        self._paused_sent = False
        self._stop_sent = False
        self._ray = None

    # -- cluster ------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = import_ray()
        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address,
                    log_to_driver=False,
                    configure_logging=False,
                    **self.init_kwargs,
                )
            except Exception as exc:  # ConnectionError, ValueError, ...: the user's address
                raise UserError(
                    f"--ray-address {self.address}: cannot connect to the Ray cluster ({exc})"
                ) from None
            self._owns_ray = True
        else:
            self._owns_ray = False

    def _sync_nodes(self, runner, workers: int) -> None:
        """An actor on every alive node; capacities = the workers spread over them."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
        for node_id, node in list(self.nodes.items()):
            if node.alive and node_id not in alive:
                node.alive = False
        concurrency = self.max_concurrency or max(workers, 1) + 8
        actor_cls = ray.remote(RolloutActor)
        for node_id in alive:
            if node_id in self.nodes:
                continue
            handle = actor_cls.options(
                num_cpus=0,
                max_concurrency=concurrency,
                max_restarts=0,  # Ray's own retries are off: a lost rollout is re-queued here, once
                max_task_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            ).remote(self.recipe, runner.run_id, workers, runner._dataset_meta)
            self.nodes[node_id] = _Node(node_id, handle, host=alive[node_id].get("NodeManagerHostname", ""))
            log.info("ray: an actor on node %s", node_id[:12])
            if self._paused_sent:
                handle.pause.remote()
        live = [n for n in self.nodes.values() if n.alive]
        if not live:
            raise UserError("the Ray cluster has no alive node to run rollouts on")
        share, extra = divmod(workers, len(live))
        for i, node in enumerate(sorted(live, key=lambda n: n.node_id)):
            node.capacity = share + (1 if i < extra else 0)

    def _node_died(self, node: _Node, why: str) -> None:
        if node.alive:
            node.alive = False
            log.warning(
                "ray: the actor on node %s is gone (%s); its rollouts go back to the queue",
                node.node_id[:12],
                why,
            )

    # -- the loop -----------------------------------------------------------------------
    def drive(self, runner) -> None:
        self._connect()
        ray = self._ray
        self._sync_nodes(runner, runner.control.workers)
        try:
            self._loop(runner)
        except StoreWriteError as exc:  # a full disk, a read-only folder: the run ends here, as
            runner._write_failed(exc)  # with threads; what was in flight is not recorded
        finally:
            for node in self.nodes.values():
                if node.alive:
                    with contextlib.suppress(Exception):
                        ray.get(node.handle.close.remote(), timeout=30)
                with contextlib.suppress(Exception):
                    ray.kill(node.handle)
            if getattr(self, "_owns_ray", False):
                with contextlib.suppress(Exception):
                    ray.shutdown()

    def _loop(self, runner) -> None:
        ray = self._ray
        control = runner.control
        last_nodes = last_drain = time.monotonic()
        target = control.workers
        while True:
            stopping = runner._stop.is_set()
            if stopping and not self._stop_sent:
                self._stop_sent = True
                self._broadcast("stop")
            if control.paused != self._paused_sent:
                self._paused_sent = control.paused
                self._broadcast("pause" if control.paused else "resume")
            now = time.monotonic()
            if control.workers != target or now - last_nodes > NODE_CHECK_S:
                target = control.workers
                self._sync_nodes(runner, target)
                last_nodes = now
            if not stopping and not control.paused:
                self._submit(runner)
            with runner._qlock:
                queued = len(runner._queue)
            if not self._inflight and not self._grading and (stopping or queued == 0):
                break
            if time.monotonic() - last_drain > DRAIN_S:
                self._drain()
                last_drain = time.monotonic()
            refs = [*self._inflight, *self._polls, *self._drains]
            if not refs:  # paused, or no node has room: wait for a change
                time.sleep(0.1)
                runner._tick()
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=0.25)
            if ready:  # take every other result that is ready too
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            # Steps, then run results: a grading may end before its run's result is taken.
            for ref in sorted(ready, key=lambda r: 0 if r in self._drains else 1 + (r in self._polls)):
                if ref in self._drains:
                    self._collect_drain(runner, ref)
                elif ref in self._polls:
                    self._collect_graded(runner, ref)
                else:
                    self._collect(runner, ref)
            self._forward_cancels(runner)
            runner._tick()

    def _broadcast(self, method: str) -> None:
        for node in self.nodes.values():
            if node.alive:
                with contextlib.suppress(Exception):
                    getattr(node.handle, method).remote()

    def _worker_slot(self) -> int:
        if self._free_workers:
            return self._free_workers.pop(0)
        self._next_worker += 1
        return self._next_worker - 1

    def _submit(self, runner) -> None:
        for node in sorted((n for n in self.nodes.values() if n.alive), key=lambda n: n.running - n.capacity):
            while node.running < node.capacity:
                with runner._qlock:
                    if not runner._queue:
                        return
                    task = runner._queue.popleft()
                rollout_id = runner._new_rollout_id()
                worker = self._worker_slot()
                runner._emit(
                    "rollout_started",
                    rollout_id=rollout_id,
                    instance_id=task.instance.instance_id,
                    sample_index=task.sample_index,
                    attempt=task.attempt,
                    worker=worker,
                    node=node.node_id[:12],
                    host=node.host,
                    problem_statement=_cut(task.instance.problem_statement),
                )
                runner.control.started(rollout_id)
                # As the thread executor: one worker grades its own patch, with more the slot
                # goes on to the next rollout while the patch is graded.
                ref = node.handle.run.remote(task, rollout_id, worker, runner.spec.workers > 1)
                flight = _Flight(task, rollout_id, worker, node, time.monotonic())
                self._inflight[ref] = self._running[rollout_id] = flight
                node.running += 1

    def _drain(self) -> None:
        """Ask every node running agents for their new steps, unless its last answer is due."""
        for node in self.nodes.values():
            if node.alive and node.running > 0 and not node.draining:
                try:
                    ref = node.handle.drain.remote()
                except Exception as exc:  # the handle itself is unusable
                    self._node_died(node, type(exc).__name__)
                    continue
                node.draining = True
                self._drains[ref] = node

    def _collect_drain(self, runner, ref) -> None:
        node = self._drains.pop(ref)
        node.draining = False
        try:
            steps = self._ray.get(ref)
        except Exception as exc:  # the actor is gone: its runs fail too, and are re-queued
            self._node_died(node, type(exc).__name__)
            return
        for rid, i, d in steps:
            flight = self._running.get(rid)
            if flight is not None:  # else its result came first, with every step
                self._emit_step(runner, flight, i, d)

    @staticmethod
    def _emit_step(runner, flight: _Flight, i: int, d: dict[str, Any]) -> None:
        if i >= flight.emitted:  # each step once
            runner._emit("step", rollout_id=flight.rollout_id, **d)
            flight.emitted = i + 1

    def _forward_cancels(self, runner) -> None:
        for flight in self._inflight.values():
            if runner.control.cancelled(flight.rollout_id) and not getattr(flight, "cancel_sent", False):
                flight.cancel_sent = True  # type: ignore[attr-defined]
                with contextlib.suppress(Exception):
                    flight.node.handle.cancel.remote(flight.rollout_id)

    def _collect(self, runner, ref) -> None:
        """A run's result: its agent and sandbox are done (its slot is free), graded or not."""
        ray = self._ray
        flight = self._inflight.pop(ref)
        self._running.pop(flight.rollout_id, None)
        flight.node.running -= 1
        self._free_workers.append(flight.worker)
        self._free_workers.sort()
        task, rid = flight.task, flight.rollout_id
        try:
            out = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # our code failed on the node: the run is broken
            runner.control.ended(rid)
            self._early.pop(rid, None)
            log.error("rollout %s failed on its node:\n%s", rid, exc)
            runner.fatal = runner.fatal or f"rollout failed on a Ray node: {str(exc).splitlines()[0]}"
            runner.request_stop()
            return
        except Exception as exc:  # the actor or its node died: the rollout never ended, run it again
            runner.control.ended(rid)
            self._early.pop(rid, None)
            self._node_died(flight.node, type(exc).__name__)
            self._requeue_lost(runner, flight, exc)
            return
        for i, d in enumerate(out.get("steps", [])):
            self._emit_step(runner, flight, i, d)
        by_ctl = runner.control.cancelled(rid)
        runner.control.ended(rid)
        if out.get("cancelled"):
            with runner._count_lock:
                runner._counts["cancelled"] += 1
            runner._emit_cancelled(task, rid, _Calls(out.get("model_calls", 0)), by_ctl=by_ctl)
            return
        if out.get("grading"):  # graded in the actor's pool: the result comes from `graded`
            early = self._early.pop(rid, None)
            if early is not None:
                self._finish(runner, flight, early)
                return
            self._grading[rid] = flight
            self._poll(runner, flight.node)
            return
        self._finish(runner, flight, out)

    def _poll(self, runner, node: _Node) -> None:
        """One ``graded`` call out per node while it grades anything (a dead actor's fails at
        once, which re-queues what it was grading)."""
        if node.polling or not any(f.node is node for f in self._grading.values()):
            return
        try:
            ref = node.handle.graded.remote(POLL_S)
        except Exception as exc:  # the handle itself is unusable: what it grades is lost
            self._lost_gradings(runner, node, exc)
            return
        node.polling = True
        self._polls[ref] = node

    def _lost_gradings(self, runner, node: _Node, exc: BaseException) -> None:
        for rid, flight in list(self._grading.items()):
            if flight.node is node:
                del self._grading[rid]
                self._requeue_lost(runner, flight, exc)

    def _collect_graded(self, runner, ref) -> None:
        ray = self._ray
        node = self._polls.pop(ref)
        node.polling = False
        try:
            results = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # our code failed on the node: the run is broken
            log.error("collecting gradings on node %s failed:\n%s", node.node_id[:12], exc)
            runner.fatal = runner.fatal or f"grading failed on a Ray node: {str(exc).splitlines()[0]}"
            runner.request_stop()
            for rid, flight in list(self._grading.items()):
                if flight.node is node:  # not recorded: --resume runs them again
                    del self._grading[rid]
            return
        except Exception as exc:  # the actor or its node died mid-evaluation: run them again
            self._node_died(node, type(exc).__name__)
            self._lost_gradings(runner, node, exc)
            return
        for rid, out in results:
            flight = self._grading.pop(rid, None)
            if flight is None:  # its run's result is not taken yet (ready in the same instant)
                self._early[rid] = out
                continue
            self._finish(runner, flight, out)
        self._poll(runner, node)

    def _requeue_lost(self, runner, flight: _Flight, exc: BaseException) -> None:
        """A rollout whose node or actor died before its example came back: the same attempt
        goes back to the queue (nothing was recorded)."""
        self.lost += 1
        with runner._count_lock:
            runner._counts["requeued_lost"] = runner._counts.get("requeued_lost", 0) + 1
        runner._emit_cancelled(
            flight.task,
            flight.rollout_id,
            exc,
            lost=True,
            reason=f"{type(exc).__name__}: node or actor died",
        )
        with runner._qlock:
            runner._queue.appendleft(flight.task)  # same attempt: nothing was recorded

    def _finish(self, runner, flight: _Flight, out: dict[str, Any]) -> None:
        """A graded (or not to be graded) attempt: record it, maybe queue its retry."""
        task, rid = flight.task, flight.rollout_id
        if "failed" in out:  # our code failed while grading on the node: the run is broken
            log.error("grading %s failed on its node:\n%s", rid, out["failed"])
            last = out["failed"].strip().splitlines()[-1]
            runner.fatal = runner.fatal or f"grading failed on a Ray node: {last}"
            runner.request_stop()
            return
        example = out["example"]
        try:
            runner.record(example, out.get("elapsed", 0.0), out.get("tokens"))
        except StoreWriteError:  # the loop ends the run (runner._write_failed)
            raise
        except Exception as exc:  # the run itself is broken
            log.error("recording %s: %s", rid, traceback.format_exc())
            runner.fatal = runner.fatal or f"{type(exc).__name__}: {exc}"
            runner.request_stop()
            return
        again = task.retry(example) if not runner._stop.is_set() else None
        if again is not None:  # the thread executor's rule (Task.retry)
            with runner._count_lock:
                runner._counts["retried"] += 1
            with runner._qlock:
                runner._queue.appendleft(again)
            return
        with runner._qlock:
            runner._by_pair.pop((task.instance.instance_id, task.sample_index), None)


class _Calls(Exception):
    def __init__(self, n: int) -> None:
        super().__init__("cancelled")
        self.model_calls = n


def _cut(text: str | None) -> str:
    from agentdata_tui.events import cut

    return cut(text)


__all__ = ["PartsRecipe", "RayExecutor", "RolloutActor"]
