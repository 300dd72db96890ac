"""The run folder's event log (``events.jsonl``, version 1, DESIGN §3).

The interface between a run and any dashboard: the runner appends one JSON object per
line and flushes; the dashboard (TUI) and ``watch`` follow the file with :class:`EventTail`,
in batches. Readers ignore unknown types and tolerate a torn last line.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

VERSION = 1
TEXT_LIMIT = 4000  # assistant and observation text in step events is cut to this

EVENT_TYPES = ("run_started", "rollout_started", "step", "rollout_finished", "run_finished")


def output_run_dir(output: str | os.PathLike[str]) -> Path:
    """The run folder of ``--output X.json``: always ``X.run/`` beside it, whatever ``X`` is
    (``run.json``, ``examples.json``...: no output name is special)."""
    p = Path(output)
    stem = p.name[: -len(".json")] if p.name.endswith(".json") and len(p.name) > len(".json") else p.name
    return p.with_name(stem + ".run")


def run_dir_for(path: str | os.PathLike[str]) -> Path:
    """The run folder a user points at (``watch``): a folder stays itself; ``X.json`` → ``X.run/``;
    a run folder's own ``examples.jsonl``/``events.jsonl``/``run.json`` → that folder (only when
    the ``X.run/`` of the name does not exist and the folder is a run folder)."""
    p = Path(path)
    if p.is_dir():
        return p
    own = output_run_dir(p)
    parent_is_run = (p.parent / "events.jsonl").exists() or (p.parent / "examples.jsonl").exists()
    store_file = p.name in ("examples.jsonl", "events.jsonl") or (p.name == "run.json" and parent_is_run)
    return p.parent if store_file and not own.is_dir() else own


def cut(text: str | None, limit: int = TEXT_LIMIT) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters]"


def append_line(fh: Any, data: bytes) -> None:
    """Append one whole line to an unbuffered binary file, or nothing: a failed write (a full disk)
    is cut back off, so no torn line is left and no buffer is left to fail again at close."""
    size = os.fstat(fh.fileno()).st_size
    view = memoryview(data)
    try:
        while view:
            n = fh.write(view)
            if not n:
                raise OSError(28, os.strerror(28))
            view = view[n:]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fh.fileno(), size)
        raise


class EventWriter:
    """Append-only, thread-safe writer of ``events.jsonl``: each event a whole line, written at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open for the run
        self._lock = threading.Lock()

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"v": VERSION, "t": round(time.time(), 3), "type": type_, **fields}
        line = (json.dumps(event, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            if not self._fh.closed:
                append_line(self._fh, line)
        return event

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):
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
