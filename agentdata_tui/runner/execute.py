"""One place that runs a generation run end to end (issue 8 item 11).

``generate-multi``/``generate_single`` (the CLI), ``demo`` and the TUI's launcher (which starts
``generate-multi`` as its own background process) all come here: the output is checked, the
components are built, the runner runs under the signal handlers with its progress display and
log, and what happened is said in a few lines. Nothing here parses flags or draws a screen.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agentdata_tui.errors import UserError

SETTINGS_KEYS = (
    "model_name",
    "temperature",
    "max_tokens",
    "workers",
    "samples_per_task",
    "retry_errors",
    "environment_class",
    "docker_servers",
    "eval_server",
    "base_url",
    "selection",
    "demo",
    "executor",
)


def check_output_path(output: str | Path) -> Path:
    """``--output``: a ``.json`` file name (its run folder is ``X.run/`` beside it), never a folder."""
    p = Path(output)
    if p.is_dir():
        raise UserError(f"--output {output} is a folder; give a file name like {p / 'training_data.json'}")
    if p.suffix != ".json" or p.name == ".json":
        raise UserError(f"--output {output}: the training-data file must end in .json")
    return p


def refuse_if_in_use(output: Path) -> None:
    """Fail early (before any server is asked) when a live run holds ``X.run/lock``; the runner
    itself takes the lock atomically, this only makes the common case a quick single line."""
    from agentdata_tui.events import output_run_dir
    from agentdata_tui.runner.store import RunLocked, lock_holder

    run_dir = output_run_dir(output)
    holder = lock_holder(run_dir)
    if holder is not None:
        raise RunLocked.of(run_dir, holder)


@dataclass
class RunRequest:
    """Everything one run needs, already resolved (model built, servers checked, instances chosen)."""

    dataset: Any
    instances: list[Any]
    config: Any
    output: Path
    model: Any
    metadata: dict[str, Any]
    environment_class: str = "local"
    docker_servers: list[str] = field(default_factory=list)
    eval_server: str | None = None
    eval_token: str | None = None
    secrets: list[str] = field(default_factory=list)
    workers: int = 4
    samples_per_task: int = 1
    retry_errors: int = 0
    resume: bool = False
    force: bool = False
    log_file: str | None = None
    executor: Any = None  # a distributed executor (runner/ray_executor.py); None: threads here


def execute_run(req: RunRequest, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Run ``req`` with progress, log and signal handling; print where the data is; the exit code."""
    from agentdata_tui.agent.templates import validate_templates
    from agentdata_tui.runner import Runner, RunSpec, graceful_signals
    from agentdata_tui.runner.components import evaluator_for, sandbox_maker
    from agentdata_tui.runner.logs import LogListener
    from agentdata_tui.runner.progress import make_progress

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    output = check_output_path(req.output)
    validate_templates(req.config, req.instances[0].to_dict())  # a template typo: one error now
    metadata = req.metadata
    settings = {k: metadata.get(k) for k in SETTINGS_KEYS if k in metadata}
    settings.update(
        config_file=metadata.get("config_file"),
        dataset_file=metadata.get("dataset_file"),
        output=str(output.resolve()),
        log_file=req.log_file,
        resume=req.resume,
    )
    spec = RunSpec(
        dataset=req.dataset,
        instances=req.instances,
        config=req.config,
        output=output,
        workers=req.workers,
        samples_per_task=req.samples_per_task,
        retry_errors=req.retry_errors,
        resume=req.resume,
        force=req.force,
        metadata=metadata,
        settings=settings,
        secrets=req.secrets,
    )
    make = sandbox_maker(
        req.dataset, req.config, environment_class=req.environment_class, docker_servers=req.docker_servers
    )
    evaluator = evaluator_for(req.eval_server, make, token=req.eval_token, pool_size=req.workers)
    listeners = [make_progress(out), LogListener()]
    runner = Runner(
        spec,
        model=req.model,
        evaluator=evaluator,
        make_sandbox=make,
        listeners=listeners,
        executor=req.executor,
    )
    with graceful_signals(runner):
        outcome = runner.run()
    state = "failed" if outcome.fatal else ("stopped early" if outcome.stopped else "done")
    print(
        f"{state}: {outcome.written} examples in {output} (run folder {outcome.run_dir}; "
        f"{outcome.counts.get('finished', 0)} rollouts this session, "
        f"{outcome.counts.get('errors', 0)} with errors)",
        file=out,
        flush=True,
    )
    if outcome.fatal:
        print(f"error: the run stopped: {outcome.fatal}", file=err, flush=True)
        print(
            f"once the cause is fixed, continue with the same command plus --resume (output {output})",
            file=out,
        )
    elif outcome.stopped:
        print(f"continue with the same command plus --resume (output {output})", file=out, flush=True)
    elif outcome.exit_code == 1:
        print("every rollout ended in an error: check the servers with `agentdata-tui check`", file=err)
    return outcome.exit_code
