"""What a run folder says about its run (Textual-free): its record, whether it is live, the tail
of its log. Used by the launch screen (resume, start over, or watch a live run) and the dashboard."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdata_tui.events import output_run_dir
from agentdata_tui.procs import pid_alive  # noqa: F401 - the one liveness helper, re-exported here


def read_run_json(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def log_tail(path: Path, lines: int = 5, max_bytes: int = 8192) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def run_is_live(run_dir: Path) -> tuple[bool, int | None]:
    """(live, pid): a runner holds this folder now (its lock; for older runs, run.json's pid)."""
    from agentdata_tui.runner.store import lock_holder

    holder = lock_holder(run_dir)
    if holder is not None:
        return True, holder or None
    data = read_run_json(run_dir)
    pid = data.get("pid")
    if data.get("status", "running") == "running" and isinstance(pid, int) and pid_alive(pid):
        return True, pid
    return False, None


@dataclass
class ExistingRun:
    """A run already in the output's run folder: what Start must ask about."""

    run_dir: Path
    attempts: int
    status: str
    live: bool
    pid: int | None
    model: str | None

    def describe(self) -> str:
        model = f" with {self.model}" if self.model else ""
        if self.live:
            return f"A run{model} is going in {self.run_dir} right now (pid {self.pid}, {self.attempts} attempts recorded)."
        return (
            f"{self.run_dir} already holds a run{model}: {self.attempts} attempt(s) recorded, {self.status}."
        )


def existing_run(output: str | Path) -> ExistingRun | None:
    run_dir = output_run_dir(Path(output).expanduser())
    if not ((run_dir / "run.json").exists() or (run_dir / "examples.jsonl").exists()):
        return None
    data = read_run_json(run_dir)
    attempts = 0
    try:
        with open(run_dir / "examples.jsonl", "rb") as fh:
            attempts = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        pass
    live, pid = run_is_live(run_dir)
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    model = data.get("model_name") or meta.get("model_name")
    return ExistingRun(run_dir, attempts, str(data.get("status") or "unknown status"), live, pid, model)
