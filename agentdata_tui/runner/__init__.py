"""Generation runs (DESIGN §3): the runner, its run store, selection, signals and progress display."""

from __future__ import annotations

from agentdata_tui.runner.runner import Runner
from agentdata_tui.runner.selection import Selection, select_instances
from agentdata_tui.runner.signals import graceful_signals
from agentdata_tui.runner.spec import RunListener, RunOutcome, RunSpec, Task
from agentdata_tui.runner.store import RunStore

__all__ = [
    "RunListener",
    "RunOutcome",
    "RunSpec",
    "RunStore",
    "Runner",
    "Selection",
    "Task",
    "graceful_signals",
    "select_instances",
]
