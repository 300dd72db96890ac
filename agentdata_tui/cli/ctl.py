"""``agentdata-tui ctl PATH COMMAND``: live control of a running run (issue 13 §3)."""

from __future__ import annotations

import argparse

_EPILOG = """commands:
  pause            no new rollouts and no new model requests (those already sent finish)
  resume           lift a pause
  workers N        N rollouts at once from now on
  cancel ID        end that running rollout at its next step (not recorded; --resume runs it again)
  requeue-errors   run every pair whose latest attempt is an error once more

examples:
  agentdata-tui ctl runs/qwen.json pause
  agentdata-tui ctl runs/qwen.run workers 64
  agentdata-tui ctl runs/qwen.json cancel 1a2b3c-00042-9f3e

Each command is answered by the runner; it and its answer are recorded in the run folder's
events.jsonl (type "control")."""


def register(add) -> None:
    p = add(
        "ctl",
        help="control a running run: pause, resume, workers N, cancel ROLLOUT_ID, requeue-errors",
        description=(
            "Sends one command to the run going in PATH (its --output file or its run folder) through "
            "the run folder's control channel, waits for the runner's answer and prints it. Exits 1 "
            "when the runner refused the command, 2 when there is no run to control."
        ),
        epilog=_EPILOG,
    )
    p.add_argument("path", metavar="PATH", help="the run's --output file (X.json) or its run folder (X.run)")
    p.add_argument(
        "command",
        metavar="COMMAND",
        choices=["pause", "resume", "workers", "cancel", "requeue-errors", "requeue_errors"],
        help="pause | resume | workers | cancel | requeue-errors",
    )
    p.add_argument("arg", nargs="?", default=None, metavar="ARG", help="N for workers, ROLLOUT_ID for cancel")
    p.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="seconds to wait for the runner's answer (default: 15)",
    )
    p.set_defaults(func=run_ctl)


def run_ctl(args: argparse.Namespace) -> int:
    from agentdata_tui.runner.control import send_command

    answer = send_command(args.path, args.command, args.arg, wait=args.timeout)
    state = f"(paused: {'yes' if answer.get('paused') else 'no'}, workers: {answer.get('workers')})"
    if answer.get("ok"):
        print(f"ok: {answer.get('detail')} {state}")
        return 0
    print(f"refused: {answer.get('detail')} {state}")
    return 1
