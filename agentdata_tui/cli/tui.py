"""The TUI's subcommands: the launch screen (no subcommand, or ``launch`` with prefilled fields),
``browse FILE`` and ``watch PATH``; and the dashboard ``demo`` opens in a terminal.

Textual is imported inside the handlers so that ``agentdata-tui --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from agentdata_tui.cli.common import add_all_attempts_flag, positive_int
from agentdata_tui.errors import UserError

LAUNCH_FLAGS = (
    # (flag, settings field, type, help)
    ("--dataset", "dataset", str, "dataset file (JSON array, {instances: [...]} or JSONL)"),
    ("--config", "config", str, "agent config YAML (default: the bundled mini.yaml)"),
    ("--output", "output", str, "training-data file to write; the run folder is OUTPUT's name with .run"),
    (
        "--base-url",
        "base_url",
        str,
        "model server base URL (default: $OPENAI_BASE_URL, else http://localhost:8000/v1)",
    ),
    (
        "--api-key",
        "api_key",
        str,
        "model server API key (default: $OPENAI_API_KEY); never saved, passed to the run by environment",
    ),
    (
        "--model",
        "model",
        str,
        "model name (default: the config's model_name; the model test lists the served ones)",
    ),
    (
        "--temperature",
        "temperature",
        float,
        "sampling temperature (default: the config's, else the server's)",
    ),
    (
        "--max-tokens",
        "max_tokens",
        positive_int,
        "max tokens per reply (default: the config's, else the server's)",
    ),
    (
        "--environment-class",
        "environment_class",
        str,
        "sandbox: local, docker, docker_remote or pkg.mod:Class",
    ),
    (
        "--docker-server",
        "docker_servers",
        str,
        "Docker Engine API endpoint(s) HOST:PORT[,HOST:PORT...] for docker_remote",
    ),
    (
        "--eval-server",
        "eval_server",
        str,
        "eval server URL or HOST:PORT, or 'local' for the built-in evaluator",
    ),
    ("--workers", "workers", positive_int, "rollouts at once (default 4)"),
    ("--max-tasks", "max_tasks", positive_int, "only the first N tasks of the dataset"),
    ("--samples-per-task", "samples_per_task", positive_int, "rollouts per task (default 1)"),
)


def register(add) -> None:
    p = add(
        "launch",
        help="the TUI's launch screen, fields prefilled from these flags",
        description=(
            "The launch screen (also what `agentdata-tui` with no subcommand opens): model server, "
            "sandbox, eval server and run settings, a connection test per server, then Start runs "
            "generate-multi as its own background process and opens the live dashboard on it.\n"
            "Fields default, lowest first, from the config file, the last used settings "
            "($XDG_CONFIG_HOME/agentdata-tui/last.json; never the API key), OPENAI_API_KEY / "
            "OPENAI_BASE_URL, and these flags."
        ),
        epilog="example:\n  agentdata-tui launch --dataset tasks.json --base-url http://gpu1:8000/v1 --workers 64",
    )
    metavars = {"docker_servers": "HOST:PORT[,HOST:PORT...]", "eval_server": "URL|HOST:PORT|local"}
    for flag, dest, type_, help_text in LAUNCH_FLAGS:
        p.add_argument(flag, dest=dest, type=type_, default=None, metavar=metavars.get(dest), help=help_text)
    p.set_defaults(func=run_launch)

    p = add(
        "browse",
        help="the TUI browser: table, filters, conversation/diff/evaluation/steps, statistics, exports",
        description=(
            "Browse examples: any input the processing commands accept (training-data JSON, a run "
            "folder or its examples.jsonl, mini-swe-agent trajectories). Large files are indexed in "
            "the background; rows appear at once and an example is read from disk only when shown.\n"
            "Keys: / filter, n/p next/previous, o sort, v raw view, g tasks (pass@k per task), c compare "
            "two rollouts of a task, t statistics, e export, F1 all keys, q quit."
        ),
        epilog=(
            "examples:\n  agentdata-tui browse training_data.json\n  agentdata-tui browse training_data.run/\n"
            "  agentdata-tui browse runs/qwen.json runs/llama.json   # two models on the same tasks"
        ),
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help=(
            "training-data JSON, run folder, examples.jsonl or *.traj.json file/folder; several "
            "(runs or models on the same tasks) open together to compare rollouts of a task"
        ),
    )
    add_all_attempts_flag(p)
    p.set_defaults(func=run_browse)

    p = add(
        "watch",
        help="the TUI dashboard on a run, live or finished",
        description=(
            "Follow a run's event log (PATH/events.jsonl): progress, ETA, success rate, average reward, "
            "throughput, one row per worker and the selected rollout's conversation as it grows. Works on "
            "a run started anywhere (e.g. generate-multi in another terminal) and on a finished one.\n"
            "Keys: s stop the run (asks first), b browse what is done, q quit (asks whether to leave the "
            "run going)."
        ),
        epilog="examples:\n  agentdata-tui watch training_data.json\n  agentdata-tui watch training_data.run",
    )
    p.add_argument("path", metavar="PATH", help="the run's --output file (X.json) or its run folder (X.run)")
    p.add_argument(
        "--poll",
        type=float,
        default=0.2,
        help="seconds between reads of the event log when nothing is new (default 0.2)",
    )
    p.set_defaults(func=run_watch)


def _need_terminal() -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError(
            "the TUI needs a terminal (stdin and stdout must be a TTY); use the CLI subcommands instead"
        )


def _run(app: Any) -> int:
    result = app.run()
    return int(result or 0)


def run_launch(args: argparse.Namespace) -> int:
    """``agentdata-tui`` (no subcommand) and ``agentdata-tui launch [flags]``."""
    _need_terminal()
    from agentdata_tui.tui.app import make_app
    from agentdata_tui.tui.launch_settings import initial_values, last_settings_path, load_last

    flags = {dest: getattr(args, dest, None) for _, dest, _, _ in LAUNCH_FLAGS}
    values, sources = initial_values(flags, dict(os.environ), load_last())
    return _run(
        make_app("launch", launch_values=values, launch_sources=sources, last_path=last_settings_path())
    )


def run_browse(args: argparse.Namespace) -> int:
    from agentdata_tui.reader import open_input

    for path in args.files:
        open_input(
            path, all_attempts=args.all_attempts
        )  # bad input: one line and exit 2, before the screen opens
    _need_terminal()
    from agentdata_tui.tui.app import make_app

    return _run(make_app("browse", path=list(args.files), all_attempts=args.all_attempts))


def _resolve_run_dir(path: str) -> Path:
    from agentdata_tui.events import run_dir_for

    run_dir = run_dir_for(path)
    if not run_dir.is_dir():
        raise UserError(
            f"no run folder {run_dir} (give the run's --output file or its .run folder)", where=path
        )
    if not (run_dir / "events.jsonl").exists() and not (run_dir / "run.json").exists():
        raise UserError("not a run folder: it has neither events.jsonl nor run.json", where=str(run_dir))
    return run_dir


def run_watch(args: argparse.Namespace) -> int:
    run_dir = _resolve_run_dir(args.path)
    if args.poll <= 0:
        raise UserError(f"--poll: must be more than 0 seconds, got {args.poll}")
    _need_terminal()
    from agentdata_tui.tui.app import make_app

    return _run(make_app("watch", path=run_dir, poll_interval=args.poll))


def run_demo_tui(args: argparse.Namespace) -> int:
    """``agentdata-tui demo`` in a terminal: the headless demo as a background process, and the dashboard on it."""
    _need_terminal()
    from agentdata_tui.events import output_run_dir
    from agentdata_tui.tui.app import make_app
    from agentdata_tui.tui.launch_settings import child_env, start_background

    output = Path(getattr(args, "output", None) or "demo_training_data.json")
    run_dir = output_run_dir(output)
    cmd = [sys.executable, "-m", "agentdata_tui", "demo", "--headless", "--output", str(output)]
    workers = getattr(args, "workers", None)
    if workers:
        cmd += ["--workers", str(workers)]
    latency = getattr(args, "latency", None)
    cmd += ["--latency", str(0.4 if latency is None else latency)]  # something to watch
    if getattr(args, "resume", False):
        cmd.append("--resume")
    started = time.time() - 1.0  # mtime granularity: a log older than this is the previous demo's
    process = start_background(cmd, run_dir, child_env(""), log_name="demo.log")
    return _run(make_app("watch", path=run_dir, process=process, newer_than=started))


__all__ = ["register", "run_launch", "run_demo_tui", "run_browse", "run_watch"]
