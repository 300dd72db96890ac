"""Live control of a running run (issue 13 §3): ``agentdata-tui ctl PATH pause|resume|workers N|cancel ID|requeue-errors``.

The channel is a file in the run folder, ``control.jsonl``: a controller (``ctl``, the
dashboard) appends one JSON command per line (``O_APPEND``: lines from several controllers
never interleave); the runner follows the file from where it was when the run started (an old
command is never replayed) and answers each command with a ``control`` event in
``events.jsonl`` carrying the command's ``id``, whether it was applied (``ok``), what happened
(``detail``) and the run's control state after it (``paused``, ``workers``). Besides signals,
this file is the runner's only input. A file rather than a socket: it needs no listener
thread, works with any path length, and every change stays on record.

Commands:

- ``pause``: no new rollout starts and no running rollout sends its next model request; the
  requests already out finish (and their commands run). ``resume`` lifts it.
- ``workers N``: N rollouts at once from now on (more threads start at once; when fewer, the
  surplus stops as its current rollout ends).
- ``cancel ROLLOUT_ID``: that rollout ends at its next step boundary, recorded as nothing
  (``rollout_finished`` with ``exit_status: "Cancelled"``; ``--resume`` runs the pair again).
- ``requeue-errors``: every pair whose latest attempt is an error (and is not running or queued)
  gets one more attempt in this session.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentdata_tui.errors import UserError
from agentdata_tui.events import EventTail, run_dir_for

log = logging.getLogger("agentdata_tui.runner")
CONTROL = "control.jsonl"
LOCK = "control.lock"  # held (flock) by the runner while it follows the channel
COMMANDS = ("pause", "resume", "workers", "cancel", "requeue-errors")
POLL_S = 0.1


def control_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / CONTROL


def parse_command(command: str, arg: str | None = None) -> dict[str, Any]:
    """A command as written to the channel; a UserError naming what is wrong otherwise."""
    command = command.strip().lower().replace("_", "-")
    if command not in COMMANDS:
        raise UserError(f"unknown control command {command!r} (use one of: {', '.join(COMMANDS)})")
    out: dict[str, Any] = {"command": command}
    if command == "workers":
        try:
            n = int(arg or "")
        except ValueError:
            raise UserError(f"workers needs a number of rollouts at once, got {arg!r}") from None
        if n < 1:
            raise UserError("workers must be at least 1 (to hold every rollout, use pause)")
        out["workers"] = n
    elif command == "cancel":
        if not arg:
            raise UserError("cancel needs the id of a running rollout (see the dashboard or events.jsonl)")
        out["rollout_id"] = arg.strip()
    elif arg is not None:
        raise UserError(f"{command} takes no argument (got {arg!r})")
    return out


def runner_listening(run_dir: Path) -> bool:
    """True while a runner follows this run folder's channel (it holds ``control.lock``)."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def check_live(run_dir: Path) -> None:
    """A UserError when no runner is working in ``run_dir`` (one line, naming the status)."""
    if runner_listening(run_dir):
        return
    status = "unknown"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        status = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("status") or status
    if not (run_dir / "run.json").exists():
        raise UserError(f"{run_dir}: not a run folder (no run.json)")
    raise UserError(f"{run_dir}: no run is going there (status {status}); nothing to control")


def send_command(
    path: str | os.PathLike[str],
    command: str,
    arg: str | None = None,
    *,
    wait: float | None = 10.0,
) -> dict[str, Any]:
    """Append a command to a live run's channel and (unless ``wait`` is None) return the runner's
    ``control`` answer from ``events.jsonl``. The core call behind ``ctl`` and the dashboard keys."""
    run_dir = run_dir_for(path)
    if not run_dir.is_dir():
        raise UserError(f"{path}: no run folder at {run_dir}")
    body = parse_command(command, arg)
    check_live(run_dir)
    tail = EventTail(run_dir / "events.jsonl")
    with contextlib.suppress(FileNotFoundError):
        tail.offset = (run_dir / "events.jsonl").stat().st_size
    cid = uuid.uuid4().hex[:12]
    line = json.dumps({"v": 1, "t": round(time.time(), 3), "id": cid, **body}) + "\n"
    fd = os.open(control_path(run_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
    if wait is None:
        return {"id": cid, "ok": None, "detail": "sent"}
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for ev in tail.read():
            if ev.get("type") == "control" and ev.get("id") == cid:
                return ev
            if ev.get("type") == "run_finished":
                raise UserError(f"{run_dir}: the run ended before it took the command")
        time.sleep(0.05)
    raise UserError(f"{run_dir}: the runner did not answer within {wait:g}s (is it stuck?)")


class ControlReader:
    """Follows ``control.jsonl`` in a thread of the runner and hands each command to ``handle``.

    ``handle(cmd) -> dict`` returns the answer's fields (``ok``, ``detail``, ...); the reader
    writes it as a ``control`` event through ``emit``. A line that is not a command is answered
    with ``ok: false`` (when it has an id) and otherwise skipped.
    """

    def __init__(
        self,
        run_dir: Path,
        handle: Callable[[dict[str, Any]], dict[str, Any]],
        emit: Callable[..., Any],
        poll_s: float = POLL_S,
    ) -> None:
        self.path = control_path(run_dir)
        self.handle = handle
        self.emit = emit
        self.poll_s = poll_s
        try:
            self.offset = self.path.stat().st_size  # commands sent before this run are not ours
        except FileNotFoundError:
            self.offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="control-reader", daemon=True)
        self._lock_fd: int | None = None

    def start(self) -> ControlReader:
        try:  # "a runner listens here" for ctl: the lock goes when this process does, however it ends
            self._lock_fd = os.open(self.path.parent / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # another holder (a runner i8's run lock would have refused): commands still read
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        self.poll()  # a command that arrived at the very end still gets its answer
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size <= self.offset:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        for raw in chunk[: end + 1].splitlines():
            if raw.strip():
                self._one(raw)

    def _one(self, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
        except ValueError:
            return
        cid = msg.get("id")
        try:
            cmd = parse_command(str(msg.get("command") or ""), _arg_of(msg))
        except UserError as exc:
            self.emit("control", id=cid, command=msg.get("command"), ok=False, detail=str(exc))
            return
        try:
            answer = self.handle(cmd)
        except Exception as exc:  # a controller must never break the run
            answer = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        try:
            self.emit("control", id=cid, **{**cmd, **answer})
        except Exception:  # the event log is gone (the run is ending): nobody to answer
            log.warning("control answer not written:\n%s", traceback.format_exc())


def _arg_of(msg: dict[str, Any]) -> str | None:
    if msg.get("command") == "workers":
        return str(msg.get("workers"))
    if msg.get("command") == "cancel":
        return msg.get("rollout_id")
    return None


class RunControl:
    """The runner's side of live control: the pause gate, the target number of workers, the
    rollouts asked to end. Thread-safe; the runner asks it at its decision points."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.paused = False
        self._cond = threading.Condition()
        self._cancel: set[str] = set()
        self._live: set[str] = set()
        self._stopped = False
        self.held = 0  # rollouts waiting at the pause gate before their next model request

    # -- state changes (from the control reader) --------------------------------------
    def pause(self) -> bool:
        with self._cond:
            changed, self.paused = not self.paused, True
            self._cond.notify_all()
            return changed

    def resume(self) -> bool:
        with self._cond:
            changed, self.paused = self.paused, False
            self._cond.notify_all()
            return changed

    def set_workers(self, n: int) -> int:
        with self._cond:
            old, self.workers = self.workers, max(1, n)
            self._cond.notify_all()
            return old

    def cancel(self, rollout_id: str) -> bool:
        with self._cond:
            if rollout_id not in self._live:
                return False
            self._cancel.add(rollout_id)
            self._cond.notify_all()
            return True

    def stop(self) -> None:
        """The run is stopping: nobody waits at the gate any more."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # -- asked by the runner -------------------------------------------------------------
    def started(self, rollout_id: str) -> None:
        with self._cond:
            self._live.add(rollout_id)

    def ended(self, rollout_id: str) -> None:
        with self._cond:
            self._live.discard(rollout_id)
            self._cancel.discard(rollout_id)

    def live(self) -> set[str]:
        with self._cond:
            return set(self._live)

    def cancelled(self, rollout_id: str) -> bool:
        return rollout_id in self._cancel

    def wait_unpaused(self, rollout_id: str | None = None) -> bool:
        """Block while paused; False when the wait ended because of a stop or this rollout's cancel."""
        with self._cond:
            held = rollout_id is not None and self.paused
            self.held += held
            try:
                while self.paused and not self._stopped and not (rollout_id and rollout_id in self._cancel):
                    self._cond.wait(1.0)
            finally:
                self.held -= held
            return not self._stopped and not (rollout_id and rollout_id in self._cancel)

    def gate(self, model: Any, rollout_id: str) -> GatedModel:
        return GatedModel(model, self, rollout_id)


class GatedModel:
    """A rollout's view of the model: each request waits while the run is paused (so a paused
    run has no request in flight beyond those already sent) and a cancelled rollout sends none."""

    def __init__(self, model: Any, control: RunControl, rollout_id: str) -> None:
        self._model = model
        self._control = control
        self._rollout_id = rollout_id
        self.name = getattr(model, "name", "")

    def query(self, messages: list[dict[str, Any]], **kw: Any) -> Any:
        from agentdata_tui.interfaces import RolloutCancelled

        if not self._control.wait_unpaused(self._rollout_id):
            raise RolloutCancelled("cancelled" if self._control.cancelled(self._rollout_id) else "stopped")
        return self._model.query(messages, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)
