"""Wiring the pieces of a run from its settings: sandbox maker and evaluator.

Shared by ``generate-multi``, ``generate_single`` and the demo so that all three run exactly
the same path through the core.
"""

from __future__ import annotations

import itertools
import os
import threading

from agentdata_tui.config import Config
from agentdata_tui.dataset import Dataset, Instance
from agentdata_tui.evaluation import BuiltinEvaluator, make_evaluator
from agentdata_tui.interfaces import Evaluator, Sandbox
from agentdata_tui.runner.spec import SandboxMaker
from agentdata_tui.runner.workpool import WorkPool
from agentdata_tui.sandbox import SandboxContext, make_sandbox, resolve_class


def sandbox_maker(
    dataset: Dataset,
    config: Config,
    *,
    run_id: str = "",
    environment_class: str | None = None,
    docker_servers: list[str] | None = None,
) -> SandboxMaker:
    """``(instance, rollout_id) -> Sandbox`` for the run's environment class (checked now)."""
    kind = environment_class or config.environment.environment_class
    resolve_class(kind)  # an unknown class is the user's error: say so before any rollout starts
    if kind == "local":  # what killed runs left in the temp folder goes, without delaying this one
        from agentdata_tui.sandbox.local import sweep_orphans

        threading.Thread(target=sweep_orphans, name="sandbox-sweep", daemon=True).start()
    servers = list(docker_servers or [])

    def make(inst: Instance, rollout_id: str, *, diff_base: bool = True) -> Sandbox:
        ctx = SandboxContext(
            run_id=run_id,
            rollout_id=rollout_id,
            repo_dir=dataset.repo_dir(inst),
            docker_servers=servers,
            environment_class=kind,
            diff_base=diff_base,
        )
        return make_sandbox(inst, config.environment, ctx)

    make.takes_diff_base = True  # type: ignore[attr-defined]
    # The evaluation's fresh sandbox built while the agent runs (environment.prepare_eval_sandbox).
    make.prepare_eval_sandbox = config.environment.prepares_eval_sandbox(kind)  # type: ignore[attr-defined]
    # Local sandboxes are prepared by this machine's CPUs (a copy, git): with a thousand rollouts
    # starting at once, a few at a time finish the first ones early instead of all of them late.
    # Containers wait on a Docker daemon, not on our CPUs: no bound beyond the workers.
    if kind == "local":
        make.start_concurrency = max(8, 4 * (os.cpu_count() or 1))  # type: ignore[attr-defined]
        # Gradings in local sandboxes run on this machine's CPUs too: past a few per core more
        # at once only slow each other (and the rollouts still running) down, and a test's
        # timeout must not depend on how many others happen to be graded beside it.
        make.grade_concurrency = max(8, 4 * (os.cpu_count() or 1))  # type: ignore[attr-defined]
    return make


def start_pool(make: SandboxMaker, workers: int) -> WorkPool:
    """The pool sandboxes start on: a bounded number at a time when the maker says its starts
    cost this machine's CPU (local copies), else one per worker. Evaluation sandboxes prepared
    ahead (a copy, setup_command, a namespace: the same CPU as a rollout's own) take its idle
    lane, half the cores' worth at a time and only while no rollout's own start waits: with a
    thousand rollouts starting at once, preparing them beside the rollouts' own sandboxes doubled
    the ramp-up. One not ready when its patch comes is started by the grader."""
    starts = getattr(make, "start_concurrency", None) or workers
    slots = max(1, min(workers, starts))
    return WorkPool(slots, "sandbox-start", idle_workers=max(1, min(slots, (os.cpu_count() or 1) // 2)))


def grading_slots(evaluator: Evaluator, workers: int) -> int:
    """How many gradings run at once: the evaluator's bound (local sandboxes: a few per core),
    else one per worker (an eval server's or a Docker daemon's machine does the work)."""
    bound = getattr(evaluator, "concurrency", None)
    return max(1, min(workers, bound) if bound else workers)


def evaluator_for(
    eval_server: str | None,
    make: SandboxMaker,
    *,
    token: str | None = None,
    pool_size: int = 4,
) -> Evaluator:
    """``local`` → the built-in evaluator in a fresh sandbox of the run's kind (prepared ahead
    when the maker says so: ``prepare_eval_sandbox``); else the eval server."""
    counter = itertools.count(1)  # next() is atomic: prepared sandboxes are made from many threads

    takes_diff_base = getattr(make, "takes_diff_base", False)

    def factory(inst: Instance) -> Sandbox:
        n = next(counter)
        if takes_diff_base:  # the evaluator never asks an evaluation sandbox for its diff
            return make(inst, f"eval-{n:05d}", diff_base=False)
        return make(inst, f"eval-{n:05d}")

    evaluator = make_evaluator(eval_server, factory, token=token, pool_size=pool_size)
    if isinstance(evaluator, BuiltinEvaluator):
        evaluator.prepare_ahead = bool(getattr(make, "prepare_eval_sandbox", False))
        evaluator.concurrency = getattr(make, "grade_concurrency", None)
    return evaluator
