"""The run store (DESIGN §3): ``X.run/`` beside ``--output X.json``.

- ``examples.jsonl``: one finished rollout attempt per line, appended and flushed as each
  attempt ends — the intermediate save that makes ``--resume`` possible after a SIGKILL;
- ``events.jsonl``: the event log (see :mod:`agentdata_tui.events`);
- ``run.json``: settings, hashes, run id, the runner's pid and status (never a secret).

``X.json`` is rebuilt from ``examples.jsonl`` (the last attempt per (instance, sample)) and
written atomically, at the end and on a graceful stop.
"""

from __future__ import annotations

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
from agentdata_tui.events import run_dir_for
from agentdata_tui.reader import ReaderWarning
from agentdata_tui.records import Example
from agentdata_tui.writer import TrainingDataWriter

EXAMPLES = "examples.jsonl"
EVENTS = "events.jsonl"
RUN_JSON = "run.json"
TOKENS = "tokens.jsonl"  # per model call token ids (model.capture_tokens), keyed by rollout and step
# An attempt ending like this runs again under --retry-errors (and on --resume with it).
RETRYABLE_STATUSES = frozenset({"ModelError", "SandboxError", "Error"})


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
        self.dir = run_dir_for(self.output)
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
        self.dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
        atomic_write_text(self.run_json_path, self.redact(text))

    def set_aside(self) -> Path:
        """Move an old run folder out of the way (``--force`` without ``--resume``): data is kept."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.dir.with_name(f"{self.dir.name}.old-{stamp}")
        n = 1
        while target.exists():
            target = self.dir.with_name(f"{self.dir.name}.old-{stamp}-{n}")
            n += 1
        self.dir.rename(target)
        return target

    # -- examples.jsonl -------------------------------------------------------------------
    def open_for_append(self) -> None:
        """Open ``examples.jsonl`` for appending, cutting a torn last line a killed run left."""
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
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run, closed in close()

    def append(self, example: Example) -> None:
        line = json.dumps(attempt_line(example), ensure_ascii=False, separators=(",", ":"), default=str)
        line = self.redact(line) + "\n"
        with self._lock:
            assert self._fh is not None, "open_for_append() first"
            self._fh.write(line)
            self._fh.flush()

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

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            if self._tokens_fh is not None:
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
