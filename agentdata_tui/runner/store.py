"""The run store (DESIGN §3): ``X.run/`` beside ``--output X.json``.

- ``examples.jsonl``: one finished rollout attempt per line, appended and flushed as each
  attempt ends — the intermediate save that makes ``--resume`` possible after a SIGKILL;
- ``events.jsonl``: the event log (see :mod:`agentdata_tui.events`);
- ``run.json``: settings, hashes, run id, the runner's pid and status (never a secret).

``X.json`` is rebuilt from ``examples.jsonl`` (the last attempt per (instance, sample)) and
written atomically, at the end and on a graceful stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdata_tui.atomic import atomic_write_text
from agentdata_tui.errors import UserError
from agentdata_tui.events import append_line, output_run_dir
from agentdata_tui.reader import ReaderWarning
from agentdata_tui.records import Example
from agentdata_tui.writer import TrainingDataWriter

EXAMPLES = "examples.jsonl"
EVENTS = "events.jsonl"
RUN_JSON = "run.json"
TOKENS = "tokens.jsonl"  # per model call token ids (model.capture_tokens), keyed by rollout and step
LOCK = "lock"
RESERVE = ".reserve"
RESERVE_BYTES = 256 * 1024  # freed on a write failure, for run.json and the run_finished event


class StoreWriteError(UserError):
    """A file of the run could not be written (a full disk, a read-only folder): one line, exit 1."""

    exit_code = 1

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path = path
        self.cause = exc.strerror or str(exc)
        super().__init__(f"cannot write {path}: {self.cause}")


# An attempt ending like this runs again under --retry-errors (and on --resume with it).
RETRYABLE_STATUSES = frozenset({"ModelError", "SandboxError", "Error"})


class RunLocked(UserError):
    """Another live process holds the run folder's lock (exit 2)."""

    @classmethod
    def of(cls, run_dir: Path, pid: int) -> RunLocked:
        return cls(
            f"{run_dir} is in use: a run is still writing it (pid {pid or 'unknown'}); "
            "stop that run first, or choose another --output"
        )


class RunLock:
    """``X.run/lock``: an exclusive ``flock`` held by the one runner writing the folder, its pid inside.

    The kernel drops the lock when its holder dies, however it dies (SIGKILL included), so a dead
    holder's lock is simply taken over. The descriptor is not inherited by child processes.
    """

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.path = run_dir / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only folder, a full disk
            raise StoreWriteError(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            raise RunLocked.of(self.dir, pid) from None
        except OSError as exc:
            os.close(fd)
            raise StoreWriteError(self.path, exc) from None
        try:  # one write over the old content (never an empty file in between), then trimmed
            os.pwrite(fd, f"{os.getpid()}\n".ljust(_PID_BYTES).encode(), 0)
            os.ftruncate(fd, _PID_BYTES)
        except OSError:
            pass  # the lock is held all the same; only the pid shown to others is missing
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def lock_holder(run_dir: str | os.PathLike[str]) -> int | None:
    """The pid of the live process holding ``run_dir``'s lock (0 if it wrote none yet), else None."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_pid(fd)
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the probe's own shared lock
    return None


_PID_BYTES = 24
PID_WAIT_S = 2.0  # a holder writes its pid right after taking the lock


def _holder_pid(fd: int) -> int:
    """The lock holder's pid, given the moment between its ``flock`` and its write (bounded):
    until then the file is empty or names the previous, dead holder. 0 when still unknown."""
    from agentdata_tui.procs import pid_alive

    deadline = time.monotonic() + PID_WAIT_S
    while True:
        pid = _read_pid(fd)
        if pid_alive(pid):
            return pid
        if time.monotonic() >= deadline:
            return 0
        time.sleep(0.01)


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


class Redactor:
    """Replaces known secrets in text before it reaches any file the run writes."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        return text


@dataclass
class AttemptRecord:
    """Where one recorded attempt sits in ``examples.jsonl`` and how it ended."""

    instance_id: str
    sample_index: int
    attempt: int
    exit_status: str | None
    error_kind: str | None
    offset: int
    length: int

    @property
    def retryable(self) -> bool:
        return self.exit_status in RETRYABLE_STATUSES or self.error_kind is not None


def is_retryable(example: Example) -> bool:
    kind = example.metadata.get("error_kind") if isinstance(example.metadata, dict) else None
    return example.exit_status in RETRYABLE_STATUSES or kind is not None


def attempt_line(example: Example) -> dict[str, Any]:
    """The example as one ``examples.jsonl`` line: its identity first (instance_id, sample_index,
    attempt, then metadata led by run_id and rollout_id), so readers can pick the latest attempt
    per pair from each line's head without parsing the conversation (see ``reader.attempt_key``)."""
    d = example.to_dict()
    meta = d.pop("metadata") or {}
    head = {k: meta.pop(k) for k in ("run_id", "rollout_id") if k in meta}
    out = {k: d.pop(k) for k in ("instance_id", "sample_index", "attempt")}
    out["metadata"] = {**head, **meta}
    out.update(d)
    return out


class RunStore:
    """Owns the files of one run folder; appends are thread-safe and flushed per line."""

    def __init__(self, output: str | os.PathLike[str], redact: Redactor | None = None) -> None:
        self.output = Path(output)
        self.dir = output_run_dir(self.output)
        self.examples_path = self.dir / EXAMPLES
        self.events_path = self.dir / EVENTS
        self.run_json_path = self.dir / RUN_JSON
        self.redact = redact or Redactor()
        self._lock = threading.Lock()
        self._fh = None
        self._tokens_fh = None

    # -- run.json ---------------------------------------------------------------------
    def exists(self) -> bool:
        return self.run_json_path.exists() or self.examples_path.exists()

    def read_run_json(self) -> dict[str, Any]:
        try:
            return json.loads(self.run_json_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.run_json_path}: cannot read the run record ({exc})") from None

    def write_run_json(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_json_path, self.redact(text))
        except OSError as exc:
            raise StoreWriteError(self.run_json_path, exc) from None

    # -- the reserve: room for the last words of a run that ran out of it -------------------
    def make_reserve(self) -> None:
        path = self.dir / RESERVE
        try:
            if not path.exists() or path.stat().st_size < RESERVE_BYTES:
                with open(path, "wb") as fh:
                    fh.write(b"\0" * RESERVE_BYTES)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            raise StoreWriteError(path, exc) from None

    def free_reserve(self) -> None:
        with contextlib.suppress(OSError):
            (self.dir / RESERVE).unlink()

    def set_aside(self) -> list[Path]:
        """Move the old run out of the way (``--force`` without ``--resume``): its folder and a stale
        ``X.json`` become ``X.run.old-<time>`` and ``X.json.old-<time>``. Nothing else is touched."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = []
        for path in (self.dir, self.output):
            if not path.exists() or (path == self.output and not path.is_file()):
                continue
            target = path.with_name(f"{path.name}.old-{stamp}")
            n = 1
            while target.exists():
                target = path.with_name(f"{path.name}.old-{stamp}-{n}")
                n += 1
            path.rename(target)
            moved.append(target)
        return moved

    # -- examples.jsonl -------------------------------------------------------------------
    def open_for_append(self) -> None:
        """Open ``examples.jsonl`` for appending, cutting a torn last line a killed run left."""
        try:
            self._open_for_append()
        except OSError as exc:
            raise StoreWriteError(self.examples_path, exc) from None

    def _open_for_append(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.examples_path
        if path.exists() and path.stat().st_size:
            with open(path, "rb+") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - 1))
                if fh.read(1) != b"\n":
                    # Find the last newline: everything after it is a torn write.
                    pos = size
                    block = 65536
                    keep = 0
                    while pos > 0:
                        start = max(0, pos - block)
                        fh.seek(start)
                        chunk = fh.read(pos - start)
                        nl = chunk.rfind(b"\n")
                        if nl >= 0:
                            keep = start + nl + 1
                            break
                        pos = start
                    warnings.warn(
                        f"{path}: dropped a torn last line ({size - keep} bytes) left by a killed run",
                        ReaderWarning,
                        stacklevel=2,
                    )
                    fh.truncate(keep)
        self._fh = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open for the run, closed in close()

    def append(self, example: Example) -> None:
        line = json.dumps(attempt_line(example), ensure_ascii=False, separators=(",", ":"), default=str)
        data = (self.redact(line) + "\n").encode("utf-8")
        with self._lock:
            assert self._fh is not None, "open_for_append() first"
            try:
                append_line(self._fh, data)  # the whole line or nothing
            except OSError as exc:
                raise StoreWriteError(self.examples_path, exc) from None

    def append_tokens(
        self,
        calls: list[dict[str, Any] | None],
        *,
        run_id: str,
        rollout_id: str,
        instance_id: str,
        sample_index: int,
        attempt: int,
    ) -> None:
        """A rollout's per-call token data (``model.capture_tokens``) to ``tokens.jsonl``, one
        line per call keyed by ``rollout_id`` and ``step`` (from 0), null where the server gave
        nothing; flushed. The runner writes them before the rollout's example line."""
        records = [
            {
                "run_id": run_id,
                "rollout_id": rollout_id,
                "instance_id": instance_id,
                "sample_index": sample_index,
                "attempt": attempt,
                "step": step,
                "prompt_token_ids": (call or {}).get("prompt_token_ids"),
                "token_ids": (call or {}).get("token_ids"),
                "logprobs": (call or {}).get("logprobs"),
            }
            for step, call in enumerate(calls)
        ]
        if not records:
            return
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with self._lock:
            try:
                if self._tokens_fh is None:
                    path = self.dir / TOKENS
                    torn = False
                    if path.exists() and path.stat().st_size:
                        with open(path, "rb") as fh:
                            fh.seek(-1, os.SEEK_END)
                            torn = fh.read(1) != b"\n"
                    self._tokens_fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
                    if torn:  # a killed run's torn last line stays on a line of its own
                        self._tokens_fh.write("\n")
                self._tokens_fh.write(text)
                self._tokens_fh.flush()
            except OSError as exc:  # a full disk: the run ends in one line, like any failed write
                raise StoreWriteError(self.dir / TOKENS, exc) from None

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                with contextlib.suppress(OSError):  # unbuffered: nothing is left to flush
                    self._fh.close()
                self._fh = None
            if self._tokens_fh is not None:
                with contextlib.suppress(OSError):
                    self._tokens_fh.close()
                self._tokens_fh = None

    def scan(self) -> list[AttemptRecord]:
        """Every recorded attempt, in file order (a torn or bad line is skipped with a warning)."""
        out: list[AttemptRecord] = []
        if not self.examples_path.exists():
            return out
        with open(self.examples_path, "rb") as fh:
            offset = 0
            for n, line in enumerate(fh, start=1):
                length = len(line)
                try:
                    d = json.loads(line)
                    meta = d.get("metadata") or {}
                    rec = AttemptRecord(
                        instance_id=str(d["instance_id"]),
                        sample_index=int(d.get("sample_index") or 0),
                        attempt=int(d.get("attempt") or 1),
                        exit_status=d.get("exit_status"),
                        error_kind=meta.get("error_kind") if isinstance(meta, dict) else None,
                        offset=offset,
                        length=length,
                    )
                except (ValueError, KeyError, TypeError, AttributeError):
                    if line.strip():
                        warnings.warn(
                            f"{self.examples_path}: line {n} is not a complete record; skipped",
                            ReaderWarning,
                            stacklevel=2,
                        )
                else:
                    out.append(rec)
                offset += length
        return out

    def read(self, rec: AttemptRecord) -> Example:
        """The recorded attempt ``rec`` as an example."""
        with open(self.examples_path, "rb") as fh:
            fh.seek(rec.offset)
            return Example.model_validate_json(fh.read(rec.length))

    def latest(self) -> dict[tuple[str, int], AttemptRecord]:
        """The last recorded attempt of every (instance_id, sample_index)."""
        last: dict[tuple[str, int], AttemptRecord] = {}
        for rec in self.scan():
            key = (rec.instance_id, rec.sample_index)
            cur = last.get(key)
            if cur is None or rec.attempt >= cur.attempt:
                last[key] = rec
        return last

    def write_final(self, metadata: dict[str, Any], order: list[str] | None = None) -> int:
        """Rebuild ``X.json`` from ``examples.jsonl``: one example per (instance, sample)."""
        latest = self.latest()
        rank = {iid: i for i, iid in enumerate(order or [])}
        keys = sorted(
            latest, key=lambda k: (rank.get(k[0], len(rank)), k[0] if k[0] not in rank else "", k[1])
        )
        meta = json.loads(self.redact(json.dumps(metadata, default=str)))
        with open(self.examples_path, "rb") as src, TrainingDataWriter(self.output, meta) as writer:
            for key in keys:
                rec = latest[key]
                src.seek(rec.offset)
                data = json.loads(src.read(rec.length))
                writer.write(Example.model_validate(data))
            return writer.count
