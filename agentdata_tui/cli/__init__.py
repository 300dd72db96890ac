"""The command line: one entry point, the original scripts' subcommand names (DESIGN §2).

Each group of subcommands lives in its own module with a ``register(add)`` function; this
module only builds the parser, dispatches, and turns errors meant for people into one line
on stderr with exit code 2 (never a traceback).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from agentdata_tui import __version__
from agentdata_tui.cli.common import Parser, make_adder
from agentdata_tui.errors import UserError

PROG = "agentdata-tui"
# Names the original scripts were called by; accepted as a first word and as console scripts.
SCRIPT_ALIASES = (
    "generate-training-data",
    "generate_training_data",
    "process-training-data",
    "process_training_data",
)


def build_parser() -> Parser:
    from agentdata_tui.cli import ctl, generate, process, server, tui

    parser = Parser(
        prog=PROG,
        description=(
            "Generate coding-agent training data (mini-swe-agent-style rollouts), watch runs live, "
            "browse, filter and export the trajectories. With no subcommand: the TUI's launch screen."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=Parser)
    add = make_adder(sub)
    for module in (generate, process, tui, server, ctl):
        module.register(add)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in SCRIPT_ALIASES:
        args_list = args_list[1:]
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    try:
        if func is None:
            from agentdata_tui.cli.tui import run_launch

            return run_launch(args) or 0
        return int(func(args) or 0)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `analyze ... | head`
        return 0


def generate_main() -> int:
    """``generate-training-data SUBCOMMAND``: the original generation script's name."""
    return main()


def process_main() -> int:
    """``process-training-data SUBCOMMAND``: the original processing script's name."""
    return main()
