"""Generation runs (DESIGN §3): the runner, its run store, selection and progress display."""

from __future__ import annotations

from agentdata_tui.runner.runner import Runner, RunOutcome, RunSpec, graceful_signals
from agentdata_tui.runner.selection import Selection, select_instances
from agentdata_tui.runner.store import RunStore

__all__ = ["RunOutcome", "RunSpec", "RunStore", "Runner", "Selection", "graceful_signals", "select_instances"]
