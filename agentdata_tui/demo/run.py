"""``agentdata-tui demo --headless``: the whole pipeline offline, labelled DEMO wherever it shows.

The bundled dataset (real little repos with tests, one with a benchmark) goes through the same
runner, local sandbox and built-in evaluator as ``generate-multi``; only the model is replaced
by :class:`~agentdata_tui.demo.replay.ReplayModel`, which plays reference solutions (and one
failing attempt). The output is ordinary training data that every processing command accepts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agentdata_tui.errors import UserError
from agentdata_tui.events import output_run_dir

BANNER = "DEMO — scripted replies from agentdata_tui/demo/data/replies.json, no model server is asked"


def _clear_previous_demo(output: Path) -> None:
    """A second ``demo`` replaces the first one's records; a real run's folder is never touched,
    nor a demo still running (its lock is held: one line naming its pid).

    Only the run store's own files go: whatever else is in the folder (e.g. the log the TUI's
    background launcher is writing there right now) stays.
    """
    from agentdata_tui.runner.store import EVENTS, EXAMPLES, RUN_JSON, RunLock

    run_dir = output_run_dir(output)
    if not (run_dir / RUN_JSON).exists() and not (run_dir / EXAMPLES).exists():
        return
    try:
        meta = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8")).get("metadata") or {}
    except (OSError, ValueError):
        meta = {}
    if not meta.get("demo"):
        raise UserError(f"{run_dir} holds a run that is not a demo; pick another --output for the demo")
    lock = RunLock(run_dir).acquire()
    try:
        for name in (EXAMPLES, EVENTS, RUN_JSON):
            (run_dir / name).unlink(missing_ok=True)
    finally:
        lock.release()


def run_demo_headless(args: argparse.Namespace) -> int:
    from agentdata_tui import __version__
    from agentdata_tui.config import load_config
    from agentdata_tui.dataset import load_dataset
    from agentdata_tui.demo.replay import ReplayModel, demo_data_dir
    from agentdata_tui.runner.execute import RunRequest, check_output_path, execute_run
    from agentdata_tui.runner.logs import setup_logging

    output = check_output_path(args.output)
    resume = bool(getattr(args, "resume", False))
    if not resume:
        _clear_previous_demo(output)
    data = demo_data_dir()
    dataset = load_dataset(data / "dataset.json")
    config = load_config(None)
    model = ReplayModel.from_file(data / "replies.json", latency=getattr(args, "latency", None) or 0.0)
    setup_logging(getattr(args, "log_file", None), [])
    print(BANNER, flush=True)
    metadata = {
        "demo": True,
        "model_name": model.name,
        "temperature": None,
        "max_tokens": None,
        "config_file": config.path,
        "dataset_file": str(dataset.path),
        "workers": args.workers,
        "tool_version": __version__,
        "config_sha256": config.sha256,
        "dataset_sha256": dataset.sha256,
        "base_url": None,
        "environment_class": "local",
        "eval_server": "local",
        "samples_per_task": 1,
        "generator": "agentdata-tui demo",
        "note": BANNER,
    }
    code = execute_run(
        RunRequest(
            dataset=dataset,
            instances=dataset.instances,
            config=config,
            output=output,
            model=model,
            metadata=metadata,
            workers=args.workers,
            resume=resume,
        )
    )
    if output.exists():
        print_summary(output)
        print(
            f"\nDEMO data: {output.resolve()}\n"
            f"  analyze:  agentdata-tui analyze --input {output}\n"
            f"  browse:   agentdata-tui browse {output}\n"
            f"  export:   agentdata-tui export_sft --input {output} --output demo_sft.jsonl",
            flush=True,
        )
    return code


def print_summary(path: Path) -> None:
    """The analyze summary of the demo's output (the processing commands' own figures)."""
    from agentdata_tui.reader import open_input

    try:
        from agentdata_tui.processing.analyze import compute_stats, render_stats
    except ImportError:  # processing not installed in this build: a short summary instead
        compute_stats = render_stats = None
    if compute_stats is not None and render_stats is not None:
        from rich.console import Console

        console = Console(file=sys.stdout, highlight=False)
        console.print("\n[bold]DEMO — analyze summary[/]")
        render_stats(compute_stats(iter(open_input(path))), console)
        return
    total = ok = 0
    reward = 0.0
    print("\nDEMO — summary")
    for ex in open_input(path):
        total += 1
        ok += bool(ex.success)
        reward += ex.reward
        speed = f", speedup {ex.speedup:.2f}x" if ex.speedup is not None else ""
        print(f"  {ex.instance_id}: {ex.exit_status}, reward {ex.reward:.2f}{speed}")
    if total:
        print(f"  {total} examples, {ok} successful, average reward {reward / total:.3f}")
