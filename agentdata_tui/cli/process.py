"""The processing subcommands: analyze, filter_data, export_sft, export_trajectory, merge,
show_example (issue 2 §3). Thin shells over :mod:`agentdata_tui.processing`.

Every input is anything :func:`agentdata_tui.reader.open_input` reads: a training-data JSON
file, a run folder or its ``examples.jsonl``, a mini-swe-agent ``.traj.json`` file or a folder
of them. Reports go to stderr so stdout stays clean for ``analyze --json``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from datetime import datetime, timezone
from typing import Any

from agentdata_tui.cli.common import (
    AddFn,
    add_all_attempts_flag,
    non_negative_int,
    positive_int,
    reward_threshold,
)
from agentdata_tui.processing import processing_record, with_processing

INPUT_HELP = (
    "input: a training-data JSON file, a run folder (X.run/) or its examples.jsonl, "
    "a mini-swe-agent .traj.json file or a folder of them"
)


# -- shared helpers ----------------------------------------------------------------


def _wrap(text: str) -> str:
    """Descriptions are printed verbatim (RawDescriptionHelpFormatter keeps the epilog's
    examples intact), so wrap them here."""
    return textwrap.fill(text, width=88)


class _Progress:
    """A running count on stderr, only when stderr is a terminal (never in logs or pipes)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, count: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= 0.2:
            self._last = now
            print(f"\r{self.label}: {count:,} examples…", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled and self._last:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def _tune_gc() -> None:
    """Fewer cyclic-GC passes while streaming: each example allocates thousands of short-lived
    containers, and the default gen-0 threshold (700) re-scans the live example's objects over
    and over. Cycles are still collected, just less often; memory stays flat."""
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _processing_record(command: str, args: argparse.Namespace, **fields: Any) -> dict[str, Any]:
    return processing_record(command, str(args.input), **fields)


def _criteria(args: argparse.Namespace):
    from agentdata_tui.processing.select import Criteria

    statuses = None
    if getattr(args, "exit_status", None):
        statuses = [s for group in args.exit_status for s in group.split(",") if s.strip()]
    return Criteria(
        min_reward=args.min_reward,
        successful_only=args.successful_only,
        max_steps=getattr(args, "max_steps", None),
        exit_status=statuses,
        instance_regex=getattr(args, "instance", None),
    )


def _add_selection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-reward",
        type=reward_threshold,
        metavar="X",
        help="keep examples with reward >= X (a number in 0..1)",
    )
    p.add_argument("--successful-only", action="store_true", help="keep only examples marked successful")


# -- handlers --------------------------------------------------------------------------


def cmd_analyze(args: argparse.Namespace) -> int:
    _tune_gc()
    import json

    from agentdata_tui.processing.analyze import compute_stats, render_stats
    from agentdata_tui.reader import open_input

    src = open_input(args.input, all_attempts=args.all_attempts)
    stats = compute_stats(src)
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console

    console = Console()
    console.print(f"[bold]{src.path}[/bold] ({src.kind.replace('_', ' ')})", highlight=False)
    render_stats(stats, console)
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    _tune_gc()
    from agentdata_tui.processing.export import write_filtered
    from agentdata_tui.processing.select import Counter, select
    from agentdata_tui.reader import open_input

    criteria = _criteria(args)
    src = open_input(args.input, all_attempts=args.all_attempts)
    record = _processing_record("filter_data", args, criteria=criteria.describe())
    metadata = with_processing(src.metadata, record)
    counted = Counter(src)
    progress = _Progress("filter_data")
    kept = write_filtered(
        select(counted, criteria),
        args.output,
        metadata,
        progress,
        summary_extra=lambda n: {
            "processing": {"command": "filter_data", "examples_read": counted.count, "examples_kept": n}
        },
    )
    progress.done()
    print(f"filter_data: kept {kept:,} of {counted.count:,} examples -> {args.output}", file=sys.stderr)
    return 0


def _system_prompt_arg(value: str | None) -> str | bool | None:
    """``--system-prompt FILE|none``: None (as recorded), False (removed) or the file's text."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return False
    from pathlib import Path

    from agentdata_tui.errors import UserError

    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            "--system-prompt: no such file (use 'none' to remove the system message)", where=value
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--system-prompt: cannot read it ({exc})", where=value) from None
    if not text.strip():
        raise UserError(
            "--system-prompt: the file is empty (use 'none' to remove the system message)", where=value
        )
    return text


def cmd_export_sft(args: argparse.Namespace) -> int:
    _tune_gc()
    from agentdata_tui.processing.export import SftReport, export_sft, meta_path
    from agentdata_tui.processing.select import Counter, select
    from agentdata_tui.reader import open_input

    system_prompt = _system_prompt_arg(args.system_prompt)
    criteria = _criteria(args)
    src = open_input(args.input, all_attempts=args.all_attempts)
    counted = Counter(src)
    progress = _Progress("export_sft")
    report = SftReport()
    meta: dict[str, Any] = {
        "command": "export_sft",
        "input": str(args.input),
        "criteria": criteria.describe(),
    }
    if isinstance(system_prompt, str):
        meta["system_prompt_file"] = str(args.system_prompt)
    written = export_sft(
        select(counted, criteria),
        args.output,
        reasoning=args.reasoning,
        tool_arguments=args.tool_arguments,
        include_errors=args.include_errors,
        with_patch=args.with_patch,
        system_prompt=system_prompt,
        file_metadata=src.metadata,
        max_per_task=args.max_per_task,
        seed=args.seed,
        progress=progress,
        report=report,
        meta=meta,
    )
    progress.done()
    print(f"export_sft: wrote {written:,} of {counted.count:,} examples -> {args.output}", file=sys.stderr)
    if report.left_out:
        print(f"export_sft: {report.describe_left_out()}", file=sys.stderr)
    if report.tools_missing:
        print(
            f"export_sft: {report.tools_missing:,} tool-call examples have no recorded tool schema (tools: null)",
            file=sys.stderr,
        )
    if report.first_line_from is not None:
        print(
            f"export_sft: example {report.first_line_from:,} (the first tool-call conversation) is written as "
            "line 1, so that datasets sees both conversation shapes in the first block it reads",
            file=sys.stderr,
        )
    print(f"export_sft: criteria and counts -> {meta_path(args.output)}", file=sys.stderr)
    return 0


def cmd_export_trajectory(args: argparse.Namespace) -> int:
    _tune_gc()
    from agentdata_tui.processing.export import export_trajectory
    from agentdata_tui.processing.select import Counter, select
    from agentdata_tui.reader import open_input

    criteria = _criteria(args)
    src = open_input(args.input, all_attempts=args.all_attempts)
    metadata = with_processing(
        src.metadata,
        _processing_record("export_trajectory", args, criteria=criteria.describe(), format=args.format),
    )
    counted = Counter(src)
    progress = _Progress("export_trajectory")
    left_out: dict[str, int] = {}
    written = export_trajectory(
        select(counted, criteria),
        args.output,
        fmt=args.format,
        metadata=metadata,
        progress=progress,
        tokens=_token_lookup(args.input) if args.format == "atif" else None,
        left_out=left_out,
    )
    progress.done()
    what = "trajectory files" if args.format == "mini-swe-agent" else "trajectories"
    print(
        f"export_trajectory: wrote {written:,} {what} of {counted.count:,} examples -> {args.output}",
        file=sys.stderr,
    )
    for reason, n in left_out.items():
        print(f"export_trajectory: left out {n:,} examples ({reason})", file=sys.stderr)
    return 0


def _token_lookup(path: str) -> Any:
    """Captured token ids of a run (``X.run/tokens.jsonl``), when the input is a run."""
    from agentdata_tui.processing.rl import load_tokens, run_folder_of

    run = run_folder_of(path)
    tokens = load_tokens(run) if run is not None else {}
    if not tokens:
        return None
    return lambda rollout_id, step: tokens.get(rollout_id, {}).get(step)


def cmd_export_rl(args: argparse.Namespace) -> int:
    _tune_gc()
    from agentdata_tui.errors import UserError
    from agentdata_tui.processing.rl import TOKENS, export_rl, load_tokens, run_folder_of
    from agentdata_tui.processing.select import Counter, select
    from agentdata_tui.reader import open_input

    run = run_folder_of(args.input)
    if run is None:
        raise UserError(
            "--input must be a run folder (X.run/), its examples.jsonl, or X.json beside its X.run/ "
            f"(token ids live in X.run/{TOKENS})",
            where=str(args.input),
        )
    tokens = load_tokens(run)
    if not tokens:
        raise UserError(
            f"no token ids were captured in this run ({run / TOKENS} is missing or empty); "
            "generate with model.capture_tokens: true in the config",
            where=str(args.input),
        )
    criteria = _criteria(args)
    counted = Counter(open_input(run, all_attempts=args.all_attempts))
    progress = _Progress("export_rl")
    left_out: dict[str, int] = {}
    stats: dict[str, int] = {}
    written = export_rl(
        select(counted, criteria),
        tokens,
        args.output,
        progress=progress,
        left_out=left_out,
        stats=stats,
        meta={"command": "export_rl", "input": str(args.input), "criteria": criteria.describe()},
    )
    progress.done()
    print(
        f"export_rl: wrote {written:,} rollouts ({stats['sequence']:,} as one sequence, "
        f"{stats['per_call']:,} per call) of {counted.count:,} examples -> {args.output}",
        file=sys.stderr,
    )
    for reason, n in left_out.items():
        print(f"export_rl: left out {n:,} rollouts ({reason})", file=sys.stderr)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    _tune_gc()
    from agentdata_tui import __version__
    from agentdata_tui.processing.merge import merge

    record = {
        "command": "merge",
        "inputs": [str(p) for p in args.inputs],
        "tool_version": __version__,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    progress = _Progress("merge")
    result = merge(
        args.inputs,
        args.output,
        metadata_extra={"processing": [record]},
        progress=progress,
        all_attempts=args.all_attempts,
    )
    progress.done()
    for src in result.per_source:
        print(
            f"merge: {src['path']}: took {src['examples_kept']:,} of {src['examples_read']:,} examples"
            + (f" ({src['duplicates']:,} already taken: the same rollouts)" if src["duplicates"] else ""),
            file=sys.stderr,
        )
    print(
        f"merge: wrote {result.written:,} examples from {len(args.inputs)} inputs -> {args.output}",
        file=sys.stderr,
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agentdata_tui.processing.show import find_example, render_example

    ex = find_example(args.input, args.index, all_attempts=args.all_attempts)
    render_example(ex, Console(), title=f"{args.input} [{args.index}]: {ex.instance_id}")
    return 0


# -- registration ------------------------------------------------------------------------


def register(add: AddFn) -> None:
    p = add(
        "analyze",
        help="statistics of a training-data file, run or trajectories",
        description=_wrap(
            "Print statistics: totals, success rate, average reward, model calls, trajectory length, "
            "reward histogram, exit statuses, speedups and tokens where present, and with several "
            "samples per instance pass@k (unbiased estimator), per-instance success rate and reward "
            "variance. Streams: any file size in flat memory."
        ),
        epilog=(
            "examples:\n"
            "  agentdata-tui analyze --input training_data.json\n"
            "  agentdata-tui analyze --input training_data.run/ --json > stats.json"
        ),
    )
    p.add_argument("--input", required=True, metavar="F", help=INPUT_HELP)
    add_all_attempts_flag(p)
    p.add_argument(
        "--json", action="store_true", help="print the figures as JSON on stdout instead of tables"
    )
    p.set_defaults(func=cmd_analyze)

    p = add(
        "filter_data",
        help="keep the examples matching conditions, as a training-data file",
        description=_wrap(
            "Write the examples that match every given condition to a new training-data file. The "
            "input's metadata is kept, the filters applied are added to metadata.processing, and the "
            "summary is recomputed (with how many examples were read and kept)."
        ),
        epilog=(
            "example:\n"
            "  agentdata-tui filter_data --input training_data.json --output good.json \\\n"
            "      --min-reward 0.7 --successful-only --max-steps 40 --exit-status Submitted"
        ),
    )
    p.add_argument("--input", required=True, metavar="F", help=INPUT_HELP)
    add_all_attempts_flag(p)
    p.add_argument(
        "--output", required=True, metavar="G", help="training-data JSON file to write (atomically)"
    )
    _add_selection_flags(p)
    p.add_argument(
        "--max-steps", type=non_negative_int, metavar="N", help="keep examples with at most N assistant turns"
    )
    p.add_argument(
        "--exit-status",
        action="append",
        metavar="S[,S...]",
        help="keep examples whose exit status is one of these (case-insensitive; repeat or comma-separate; 'none' for examples without one)",
    )
    p.add_argument(
        "--instance", metavar="REGEX", help="keep examples whose instance_id matches this regular expression"
    )
    p.set_defaults(func=cmd_filter)

    p = add(
        "export_sft",
        help="export SFT JSONL (messages + metadata per line) that TRL takes unchanged",
        description=_wrap(
            "Write one JSON line per example: {'messages': [...], 'metadata': {...}, 'tools': ...}, what "
            "TRL's SFTTrainer and the Hugging Face chat templates take unchanged. Messages carry role and "
            "content, plus tool_calls (a list of {id, type, function: {name, arguments}}, arguments an "
            "object) on assistant messages that called tools and tool_call_id on tool messages; no empty "
            "placeholder keys. 'tools' is the tool schema the model was offered, as a JSON string (TRL "
            "json.loads it), on tool-call examples, null otherwise. Metadata has the same keys and types on "
            "every line: instance_id, run_id, rollout_id, sample_index, attempt, model_name, reward, "
            "success, resolved, speedup (0.0 with has_speedup false where no benchmark ran), exit_status, "
            "model_calls, assistant_steps, prompt_tokens, completion_tokens (and git_diff with "
            "--with-patch). Examples with no assistant turn or an infrastructure failure (ModelError, "
            "SandboxError, Error) are left out, and counted, unless --include-errors. The criteria and "
            "counts go to <output>.meta.json."
        ),
        epilog=(
            "examples:\n"
            "  agentdata-tui export_sft --input training_data.json --output sft.jsonl --min-reward 0.5\n"
            "  agentdata-tui export_sft --input run.run/ --output sft.jsonl --successful-only \\\n"
            "      --max-per-task 2 --seed 7 --reasoning field --with-patch\n"
            "  agentdata-tui export_sft --input run.run/ --output sft.jsonl --system-prompt none"
        ),
    )
    p.add_argument("--input", required=True, metavar="F", help=INPUT_HELP)
    add_all_attempts_flag(p)
    p.add_argument("--output", required=True, metavar="G.jsonl", help="JSONL file to write (atomically)")
    _add_selection_flags(p)
    p.add_argument(
        "--max-per-task",
        type=positive_int,
        metavar="N",
        help="keep at most N examples per instance_id, a random choice made reproducible by --seed",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the --max-per-task choice (default: 0)"
    )
    p.add_argument(
        "--reasoning",
        choices=("inline", "field", "strip"),
        default="inline",
        help=(
            "where assistant reasoning goes: 'inline' (default) as <think>...</think> at the start of "
            "the content, 'field' in reasoning_content, 'strip' removed (an unclosed <think>, a reply cut "
            "at max_tokens, is reasoning to its end)"
        ),
    )
    p.add_argument(
        "--tool-arguments",
        choices=("object", "string"),
        default="object",
        help=(
            "tool-call arguments as a JSON object (default: what the Hugging Face chat templates expect) "
            "or as a JSON string (the OpenAI API convention)"
        ),
    )
    p.add_argument(
        "--include-errors",
        action="store_true",
        help="keep examples with no assistant turn or an infrastructure failure (ModelError, SandboxError, Error)",
    )
    p.add_argument(
        "--with-patch", action="store_true", help="add the example's git_diff to each line's metadata"
    )
    p.add_argument(
        "--system-prompt",
        metavar="FILE|none",
        help="replace the system message with FILE's text, or remove it with 'none' (default: as recorded)",
    )
    p.set_defaults(func=cmd_export_sft)

    p = add(
        "export_trajectory",
        help="export step-structured trajectories (thought, action, observation)",
        description=_wrap(
            "Write {'metadata', 'trajectories': [{instance_id, sample_index, problem_statement, steps: "
            "[{thought, action, observation, returncode}], git_diff, reward, speedup, success, "
            "exit_status}]} for behaviour cloning and next-action prediction; or, with --format "
            "mini-swe-agent, one <instance_id>[__s<sample>].traj.json file per example in "
            "mini-swe-agent 2.x's schema (its inspector opens them) in the --output folder; or, with "
            "--format atif, JSONL with one Harbor ATIF-v1.8 trajectory per line (steps with message, "
            "reasoning, tool calls, observations and per-step metrics; reward and ids under extra)."
        ),
        epilog=(
            "examples:\n"
            "  agentdata-tui export_trajectory --input training_data.json --output traj.json --min-reward 0.5\n"
            "  agentdata-tui export_trajectory --input training_data.json --output trajs/ --format mini-swe-agent\n"
            "  agentdata-tui export_trajectory --input run.run/ --output atif.jsonl --format atif"
        ),
    )
    p.add_argument("--input", required=True, metavar="F", help=INPUT_HELP)
    add_all_attempts_flag(p)
    p.add_argument(
        "--output",
        required=True,
        metavar="G",
        help="JSON file to write (atomically); a folder with --format mini-swe-agent",
    )
    _add_selection_flags(p)
    p.add_argument(
        "--format",
        choices=("json", "mini-swe-agent", "atif"),
        default="json",
        help=(
            "'json' (default): one trajectory file; 'mini-swe-agent': a folder of .traj.json files; "
            "'atif': JSONL, one Harbor Agent Trajectory Interchange Format (ATIF-v1.8) document per line"
        ),
    )
    p.set_defaults(func=cmd_export_trajectory)

    p = add(
        "export_rl",
        help="export token-level RL data (token ids, loss mask, logprobs) of a run that captured tokens",
        description=_wrap(
            "Write one JSON line per rollout of a run made with model.capture_tokens: true, from the "
            "token ids the server returned (X.run/tokens.jsonl; nothing is re-tokenized). When every "
            "model call's prompt extends the previous call's prompt + completion: format 'sequence' with "
            "input_ids, loss_mask (1 on tokens the model sampled, 0 on prompt and observations), "
            "logprobs (null where the mask is 0) and prompt_length; otherwise format 'per_call' with "
            "each call's prompt_token_ids, completion_token_ids and logprobs, and not_prefix_at_step. "
            "Every line has run_id, rollout_id, group_id (run/instance, for GRPO-style groups), "
            "instance_id, sample_index, attempt, reward, success, resolved, speedup, exit_status. "
            "Rollouts whose calls lack token ids are left out and counted."
        ),
        epilog=(
            "example:\n  agentdata-tui export_rl --input training_data.run/ --output rl.jsonl --min-reward 0"
        ),
    )
    p.add_argument(
        "--input", required=True, metavar="RUN_FOLDER", help="a run folder (X.run/), or X.json beside it"
    )
    p.add_argument("--output", required=True, metavar="G.jsonl", help="JSONL file to write (atomically)")
    _add_selection_flags(p)
    add_all_attempts_flag(p)
    p.set_defaults(func=cmd_export_rl)

    p = add(
        "merge",
        help="merge several runs or files into one training-data file",
        description=_wrap(
            "Read each input in turn (any readable input: files, run folders, trajectory folders) and "
            "write one training-data file with a recomputed summary. Every distinct rollout of every input "
            "is kept; two examples are duplicates only when they are the same rollout (same run_id and "
            "rollout_id, e.g. a run's X.json and its X.run/), and then the first copy is kept. Reports "
            "per input how many examples it took."
        ),
        epilog=("example:\n  agentdata-tui merge day1.json day2.run/ extra.json --output all.json"),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=INPUT_HELP)
    add_all_attempts_flag(p)
    p.add_argument(
        "--output", required=True, metavar="G", help="training-data JSON file to write (atomically)"
    )
    p.set_defaults(func=cmd_merge)

    p = add(
        "show_example",
        help="print one example readably",
        description=_wrap(
            "Print one example: its messages by role, the diff highlighted, the evaluation, the "
            "metadata and the per-step table. Streams to the example: a large file is not loaded."
        ),
        epilog=(
            "examples:\n"
            "  agentdata-tui show_example --input training_data.json --index 0\n"
            "  agentdata-tui show_example --input training_data.run/ --index -1 | less -R"
        ),
    )
    p.add_argument("--input", required=True, metavar="F", help=INPUT_HELP)
    add_all_attempts_flag(p)
    p.add_argument(
        "--index",
        type=int,
        default=0,
        metavar="I",
        help="which example, from 0 (default: 0); negative counts from the end (-1 is the last)",
    )
    p.set_defaults(func=cmd_show)
