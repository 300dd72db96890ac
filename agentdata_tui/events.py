"""The run folder's event log (``events.jsonl``, version 1, DESIGN §3).

The interface between a run and any dashboard: the runner appends one JSON object per
line and flushes; the dashboard (TUI) and ``watch`` follow the file with :class:`EventTail`,
in batches. Readers ignore unknown types and tolerate a torn last line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

VERSION = 1
TEXT_LIMIT = 4000  # assistant and observation text in step events is cut to this

EVENT_TYPES = ("run_started", "rollout_started", "step", "rollout_finished", "run_finished")


def run_dir_for(path: str | os.PathLike[str]) -> Path:
    """``X.json`` → ``X.run/``; a run folder stays itself; ``X.run/examples.jsonl`` → ``X.run/``."""
    p = Path(path)
    if p.is_dir():
        return p
    if p.name in ("examples.jsonl", "events.jsonl", "run.json"):
        return p.parent
    if p.suffix == ".json":
        return p.with_suffix(".run")
    return p.with_name(p.name + ".run")


def cut(text: str | None, limit: int = TEXT_LIMIT) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters]"


class EventWriter:
    """Append-only, line-buffered, thread-safe writer of ``events.jsonl``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        self._lock = threading.Lock()

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"v": VERSION, "t": round(time.time(), 3), "type": type_, **fields}
        line = json.dumps(event, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if not self._fh.closed:
                self._fh.write(line)
                self._fh.flush()
        return event

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class EventTail:
    """Incremental reader: each :meth:`read` returns the complete new events since the last one.

    A line without its newline yet (the writer is mid-write) is left for the next read.
    ``max_bytes`` bounds one batch so a huge backlog is consumed in slices.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.offset = 0
        self.bad_lines = 0

    def read(self, max_bytes: int = 4 << 20) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(max_bytes)
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            if len(chunk) >= max_bytes:  # one line longer than a batch: skip it
                self.offset += len(chunk)
                self.bad_lines += 1
            return []
        self.offset += end + 1
        events: list[dict[str, Any]] = []
        for line in chunk[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(ev, dict) and ev.get("v") == VERSION:
                events.append(ev)
        return events
