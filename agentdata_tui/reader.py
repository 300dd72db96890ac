"""One reader for every input the commands accept, streaming.

Accepted inputs (DESIGN §3):
- a training-data JSON file (``{"metadata", "examples", "summary"}``), in any layout;
  files written by this tool put one example per line, which is read line by line,
  anything else is parsed incrementally with ijson;
- a run folder ``X.run/`` or its ``examples.jsonl`` (a torn last line is skipped with
  a warning: a killed writer leaves one);
- a mini-swe-agent trajectory file (v1: a bare list of messages; v2: ``{info, messages,
  trajectory_format, instance_id}``) or a folder of them (searched recursively).

Nothing here loads a whole large file: memory stays flat as files grow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ijson
from pydantic import ValidationError

from agentdata_tui.errors import InputError, validation_message
from agentdata_tui.records import Example, with_ids

# Layout written by :mod:`agentdata_tui.writer` (still plain JSON):
#   {"metadata": {...},\n"examples": [\n{ex},\n{ex}\n],\n"summary": {...}}\n
META_PREFIX = b'{"metadata": '
EXAMPLES_OPEN = b'"examples": [\n'
EXAMPLES_CLOSE = b"],\n"
SUMMARY_PREFIX = b'"summary": '

TRAJ_SUFFIXES = (".traj.json", ".traj")


class ReaderWarning(UserWarning):
    """Something was skipped while reading (e.g. a torn last line); the read went on."""


def _warn(message: str) -> None:
    warnings.warn(message, ReaderWarning, stacklevel=3)


def validate_example(raw: Any, where: str, label: str) -> Example:
    """Turn a raw dict into an :class:`Example`, or raise one readable line."""
    if not isinstance(raw, dict):
        raise InputError(f"{label} is not a JSON object", where=where)
    try:
        return Example.model_validate(raw)
    except ValidationError as exc:
        raise InputError(validation_message(exc, label), where=where) from None


class RawItem:
    """One example as read, and where it came from (for error messages and the browser's index).

    Line-per-example inputs hand over the line's bytes and parse them only when asked: counting
    or indexing needs no parse, and :meth:`example` validates straight from the bytes with
    pydantic-core, about twice as fast as ``json.loads`` followed by validation.
    """

    __slots__ = ("_data", "raw", "label", "offset", "length", "where")

    def __init__(
        self,
        data: Any = None,
        label: str = "",
        offset: int | None = None,
        length: int | None = None,
        *,
        raw: bytes | None = None,
        where: str = "",
    ) -> None:
        self._data = data
        self.raw = raw
        self.label = label
        self.offset = offset
        self.length = length
        self.where = where

    @property
    def data(self) -> Any:
        if self._data is None and self.raw is not None:
            try:
                self._data = json.loads(self.raw)
            except ValueError as exc:
                raise InputError(f"{self.label}: not valid JSON: {exc}", where=self.where) from None
        return self._data

    def example(self) -> Example:
        if self._data is None and self.raw is not None:
            try:
                return Example.model_validate_json(self.raw)
            except ValidationError:
                pass  # the slow path below words the error (bad JSON, not an object, a field)
        return validate_example(self.data, self.where, self.label)


@dataclass
class ExampleSource:
    """A readable input. Iterate it for :class:`Example` objects, in file order."""

    path: Path
    kind: str  # training_data | jsonl | run_dir | trajectory | trajectory_dir
    _metadata: dict[str, Any] | None = field(default=None, repr=False)
    summary: dict[str, Any] | None = field(default=None, repr=False)
    # A run folder or a .jsonl of attempts yields the latest attempt per (instance, sample)
    # unless every attempt is asked for (DESIGN §3: readers agree with X.json).
    all_attempts: bool = False
    _run_id: str | None = field(default=None, repr=False)

    # -- public API ---------------------------------------------------------
    def __iter__(self) -> Iterator[Example]:
        where = str(self.path)
        for item in self.iter_raw():
            item.where = item.where or where
            yield self.example_of(item)

    def example_of(self, item: RawItem) -> Example:
        """The validated example of ``item``, with its run and rollout ids (derived if missing)."""
        return with_ids(item.example(), lambda: self.run_id)

    def iter_raw(self) -> Iterator[RawItem]:
        if self.kind in ("jsonl", "run_dir") and not self.all_attempts:
            return _iter_latest_attempts(self.data_file)
        return _RAW_READERS[self.kind](self)

    @property
    def run_id(self) -> str:
        """The input's run id: the one its run record or metadata names, else one from its content."""
        if self._run_id is None:
            rid = None
            if self.kind == "run_dir":
                try:
                    data = json.loads((self.path / "run.json").read_text(encoding="utf-8"))
                    rid = data.get("run_id") if isinstance(data, dict) else None
                except (OSError, ValueError):
                    rid = None
            if not rid and self.kind in ("training_data", "run_dir"):
                rid = self.metadata.get("run_id")
            if not isinstance(rid, str) or not rid:
                rid = "sha-" + _content_hash(self.data_file)
            self._run_id = rid
        return self._run_id

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = _read_metadata(self)
        return self._metadata

    @property
    def line_indexable(self) -> bool:
        """True when each example sits on its own line (offsets are cheap to index)."""
        if self.kind in ("jsonl", "run_dir"):
            return True
        if self.kind == "training_data":
            with open(self.path, "rb") as fh:
                return _fast_layout_header(fh) is not None
        return False

    @property
    def data_file(self) -> Path:
        """The file holding the examples (for offset-based access)."""
        if self.kind == "run_dir":
            return self.path / "examples.jsonl"
        return self.path


def open_input(path: str | os.PathLike[str], *, all_attempts: bool = False) -> ExampleSource:
    """Recognise what ``path`` is, or raise an :class:`InputError` naming it.

    ``all_attempts``: a run folder or a ``.jsonl`` yields every recorded attempt, superseded
    ones included (each example says which ``attempt`` it is); by default only the latest
    attempt per (instance_id, sample_index), the same examples as the run's ``X.json``.
    """
    p = Path(path)
    if not p.exists():
        run_dir = p.with_name(p.name[: -len(".json")] + ".run") if p.name.endswith(".json") else None
        if run_dir is not None and (run_dir / "examples.jsonl").exists():
            # A run still going (or killed): its final JSON is not written yet.
            return ExampleSource(run_dir, "run_dir", all_attempts=all_attempts)
        raise InputError("no such file or folder", where=str(p))
    if p.is_dir():
        if (p / "examples.jsonl").is_file():
            return ExampleSource(p, "run_dir", all_attempts=all_attempts)
        if any(_iter_traj_files(p)):
            return ExampleSource(p, "trajectory_dir")
        raise InputError(
            "folder holds neither examples.jsonl (a run folder) nor mini-swe-agent *.traj.json files",
            where=str(p),
        )
    if p.name.endswith(".jsonl"):
        return ExampleSource(p, "jsonl", all_attempts=all_attempts)
    if p.name.endswith(TRAJ_SUFFIXES):
        return ExampleSource(p, "trajectory")
    return ExampleSource(p, _sniff_json(p))


def read_examples(path: str | os.PathLike[str], *, all_attempts: bool = False) -> Iterator[Example]:
    return iter(open_input(path, all_attempts=all_attempts))


def _content_hash(path: Path) -> str:
    """A short hash of a file's bytes (or of a folder's trajectory files): the run id of a record
    that names none."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else list(_iter_traj_files(path)) if path.is_dir() else []
    for f in files:
        with contextlib.suppress(OSError), open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()[:16]


def read_example_at(path: str | os.PathLike[str], offset: int, length: int | None = None) -> Example:
    """Read one example at a byte offset of a line-per-example file (the browser's random access)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        line = fh.read(length) if length is not None else fh.readline()
    text = line.rstrip(b"\r\n")
    if text.endswith(b","):
        text = text[:-1]
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InputError(f"no example at byte {offset}: {exc}", where=str(path)) from None
    return validate_example(raw, str(path), f"example at byte {offset}")


# -- sniffing ----------------------------------------------------------------


def _sniff_json(p: Path) -> str:
    with open(p, "rb") as fh:
        head = fh.read(4096)
    stripped = head.lstrip()
    if not stripped:
        raise InputError("file is empty", where=str(p))
    first = stripped[:1]
    if first == b"[":
        return "json_array"
    if first != b"{":
        raise InputError("not JSON (expected an object or an array at the start)", where=str(p))
    # Which top-level keys does the object have? Look at the first one.
    try:
        with open(p, "rb") as fh:
            for prefix, event, value in ijson.parse(fh):
                if prefix == "" and event == "map_key":
                    if value in ("metadata", "examples", "summary"):
                        return "training_data"
                    if value in ("info", "messages", "trajectory_format", "instance_id"):
                        return "trajectory"
                    return "training_data"
                if prefix == "" and event == "end_map":
                    return "training_data"
    except ijson.JSONError as exc:
        raise InputError(f"not valid JSON: {exc}", where=str(p)) from None
    return "training_data"


# -- training-data JSON --------------------------------------------------------


def _fast_layout_header(fh) -> dict[str, Any] | None:
    """Return the metadata when the file uses the line-per-example layout, else None."""
    first = fh.readline()
    if not first.startswith(META_PREFIX) or not first.endswith(b",\n"):
        return None
    try:
        meta = json.loads(first[len(META_PREFIX) : -2])
    except ValueError:
        return None
    if fh.readline() != EXAMPLES_OPEN or not isinstance(meta, dict):
        return None
    return meta


def _iter_training_data(src: ExampleSource) -> Iterator[RawItem]:
    with open(src.path, "rb") as fh:
        meta = _fast_layout_header(fh)
        if meta is None:
            fh.seek(0)
            yield from _iter_training_data_ijson(src, fh)
            return
        src._metadata = meta
        where = str(src.path)
        index = 0
        line_no = 2
        while True:
            offset = fh.tell()
            line = fh.readline()
            line_no += 1
            if not line:
                raise InputError("truncated JSON: the file ends inside 'examples'", where=where)
            if line == EXAMPLES_CLOSE or line == b"]\n":
                break
            if not line.endswith(b"\n"):
                raise InputError(f"truncated JSON: the file ends inside example {index}", where=where)
            body = line[:-2] if line.endswith(b",\n") else line[:-1]
            yield RawItem(None, f"example {index} (line {line_no})", offset, len(line), raw=body, where=where)
            index += 1
        rest = fh.read(1 << 20)
        if rest.startswith(SUMMARY_PREFIX):
            try:
                obj = json.loads(b"{" + rest)
                src.summary = obj.get("summary")
            except ValueError:
                raise InputError("truncated JSON: the file ends inside 'summary'", where=where) from None


def _iter_training_data_ijson(src: ExampleSource, fh) -> Iterator[RawItem]:
    """Any layout: build each example (and metadata/summary) from ijson's event stream."""
    where = str(src.path)
    index = 0
    builder: ijson.ObjectBuilder | None = None
    target = ""  # what the builder is building: "example", "metadata" or "summary"
    depth = 0
    try:
        for prefix, event, value in ijson.parse(fh, use_float=True):
            if builder is None:
                if prefix == "examples.item":
                    target = "example"
                elif prefix in ("metadata", "summary") and event != "map_key":
                    target = prefix
                else:
                    continue
                builder = ijson.ObjectBuilder()
                depth = 0
            builder.event(event, value)
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1
            if depth:
                continue
            built, builder = builder.value, None
            if target == "example":
                yield RawItem(built, f"example {index}")
                index += 1
            elif target == "metadata":
                src._metadata = built if isinstance(built, dict) else {}
            else:
                src.summary = built
    except ijson.IncompleteJSONError as exc:
        raise InputError(f"truncated JSON ({exc}) after {index} examples", where=where) from None
    except ijson.JSONError as exc:
        raise InputError(f"not valid JSON ({exc}) after {index} examples", where=where) from None


def _iter_json_array(src: ExampleSource) -> Iterator[RawItem]:
    """A top-level array: a v1 mini-swe-agent trajectory (messages) or a list of examples."""
    where = str(src.path)
    with open(src.path, "rb") as fh:
        try:
            items = ijson.items(fh, "item", use_float=True)
            first = next(items, None)
            if first is None:
                return
            if isinstance(first, dict) and "role" in first and "instance_id" not in first:
                messages = [first, *items]
                yield RawItem(_trajectory_to_example(messages, src.path), "trajectory")
                return
            yield RawItem(first, "example 0")
            for i, item in enumerate(items, start=1):
                yield RawItem(item, f"example {i}")
        except ijson.IncompleteJSONError as exc:
            raise InputError(f"truncated JSON: {exc}", where=where) from None
        except ijson.JSONError as exc:
            raise InputError(f"not valid JSON: {exc}", where=where) from None


# -- JSONL and run folders -----------------------------------------------------


def _iter_jsonl_file(path: Path, *, end: int | None = None, warn: bool = True) -> Iterator[RawItem]:
    where = str(path)
    with open(path, "rb") as fh:
        line_no = 0
        while True:
            offset = fh.tell()
            if end is not None and offset >= end:
                return
            line = fh.readline()
            if not line:
                return
            line_no += 1
            if not line.strip():
                continue
            item = RawItem(None, f"line {line_no}", offset, len(line), raw=line, where=where)
            if not line.endswith(b"\n") or not fh.peek(1):
                # The last line: a killed writer may have left it half-written. Only this one
                # is parsed here; any other bad line is reported when it is read.
                try:
                    json.loads(line)
                except ValueError:
                    if warn:
                        _warn(f"{where}: line {line_no}: torn last line skipped (a killed writer leaves one)")
                    return
            yield item


# The run store writes each attempt's identity first (see RunStore.append): its key is read
# from the line's head without parsing the whole conversation. Other layouts are parsed.
_STR = rb'"(?:[^"\\]|\\.)*"'
_HEAD = re.compile(
    rb'\{"instance_id":(' + _STR + rb'),"sample_index":(-?\d+),"attempt":(-?\d+)'
    rb'(?:,"metadata":\{"run_id":(' + _STR + rb"))?"
)


def attempt_key(raw: bytes) -> tuple[tuple[str, str, int], int] | None:
    """``((run_id, instance_id, sample_index), attempt)`` of one line, or None if it is no example."""
    m = _HEAD.match(raw)
    if m is not None:
        run_id = json.loads(m.group(4)) if m.group(4) else ""
        return (run_id, json.loads(m.group(1)), int(m.group(2))), int(m.group(3))
    try:
        d = json.loads(raw)
        meta = d.get("metadata")
        run_id = meta.get("run_id") if isinstance(meta, dict) else None
        key = (str(run_id or ""), str(d["instance_id"]), int(d.get("sample_index") or 0))
        return key, int(d.get("attempt") or 1)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _iter_latest_attempts(path: Path) -> Iterator[RawItem]:
    """The latest attempt of each (run, instance, sample), in file order; two passes, flat memory
    (only a key per pair is held). A line that is no example is yielded, to be reported when read."""
    best: dict[tuple[str, str, int], tuple[int, int]] = {}  # key -> (attempt, offset)
    winners: set[int] = set()  # offsets to yield: the latest attempts and lines that are no example
    end = 0
    for item in _iter_jsonl_file(path):
        assert item.raw is not None and item.offset is not None and item.length is not None
        end = item.offset + item.length
        found = attempt_key(item.raw)
        if found is None:
            winners.add(item.offset)
            continue
        key, attempt = found
        cur = best.get(key)
        if cur is None or attempt >= cur[0]:
            best[key] = (attempt, item.offset)
    winners.update(offset for _, offset in best.values())
    del best
    for item in _iter_jsonl_file(path, end=end, warn=False):
        if item.offset in winners:
            yield item


def _iter_jsonl(src: ExampleSource) -> Iterator[RawItem]:
    return _iter_jsonl_file(src.path)


def _iter_run_dir(src: ExampleSource) -> Iterator[RawItem]:
    return _iter_jsonl_file(src.path / "examples.jsonl")


# -- mini-swe-agent trajectories ---------------------------------------------


def _iter_traj_files(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(TRAJ_SUFFIXES):
                yield Path(root) / name


def _load_traj(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except ValueError as exc:
        raise InputError(f"not valid JSON (truncated?): {exc}", where=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None
    return _trajectory_to_example(data, path)


def _iter_trajectory(src: ExampleSource) -> Iterator[RawItem]:
    yield RawItem(_load_traj(src.path), "trajectory")


def _iter_trajectory_dir(src: ExampleSource) -> Iterator[RawItem]:
    for path in _iter_traj_files(src.path):
        yield RawItem(_load_traj(path), f"trajectory {path.relative_to(src.path)}")


_MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name", "reasoning_content")


def _trajectory_to_example(data: Any, path: Path) -> dict[str, Any]:
    """Map a mini-swe-agent trajectory (v1 list or v2 object) onto the training-data example."""
    where = str(path)
    if isinstance(data, list):
        info: dict[str, Any] = {}
        raw_messages = data
        instance_id = None
        fmt = "mini-swe-agent-v1"
    elif isinstance(data, dict) and isinstance(data.get("messages"), list):
        info = data.get("info") or {}
        raw_messages = data["messages"]
        instance_id = data.get("instance_id")
        fmt = data.get("trajectory_format", "mini-swe-agent")
    else:
        raise InputError("not a mini-swe-agent trajectory (no 'messages' list)", where=where)
    if not instance_id:
        name = path.name
        for suffix in TRAJ_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        instance_id = name

    messages: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    exit_status = info.get("exit_status")
    submission = info.get("submission")
    for i, m in enumerate(raw_messages):
        if not isinstance(m, dict) or "role" not in m:
            raise InputError(f"message {i} has no 'role'", where=where)
        extra = m.get("extra") or {}
        if m["role"] == "exit":
            exit_status = exit_status or extra.get("exit_status") or m.get("content")
            if submission is None:
                submission = extra.get("submission")
            continue
        messages.append({k: m[k] for k in _MESSAGE_KEYS if k in m})
        if m["role"] == "assistant":
            actions = extra.get("actions") or []
            command = actions[0].get("command") if actions and isinstance(actions[0], dict) else None
            steps.append({"command": command})
        elif m["role"] in ("user", "tool") and steps and "returncode" in extra:
            steps[-1]["returncode"] = extra.get("returncode")
    stats = info.get("model_stats") or {}
    model_cfg = (info.get("config") or {}).get("model") or {}
    problem = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
    if not isinstance(problem, str):
        problem = json.dumps(problem)
    out: dict[str, Any] = {
        "instance_id": str(instance_id),
        "problem_statement": problem,
        "messages": messages,
        "git_diff": submission or "",
        "exit_status": exit_status,
        "reward": 0.0,
        "speedup": None,
        "success": False,
        "model_calls": int(stats.get("api_calls") or len(steps)),
        "evaluation_info": {"status": "not_evaluated", "source": "mini-swe-agent trajectory"},
        "error": None,
        "metadata": {
            "source_file": str(path),
            "trajectory_format": fmt,
            "mini_version": info.get("mini_version"),
            "model_name": model_cfg.get("model_name"),
            "instance_cost": stats.get("instance_cost"),
        },
        "sample_index": 0,
        "attempt": 1,
        "steps": steps,
    }
    ours = info.get("agentdata")
    if isinstance(ours, dict):  # written by export_trajectory --format mini-swe-agent: our fields back
        meta = ours.get("metadata")
        if isinstance(meta, dict):
            out["metadata"] = {**meta, **{k: v for k, v in out["metadata"].items() if v is not None}}
        for key in ("run_id", "rollout_id"):
            if ours.get(key):
                out["metadata"][key] = ours[key]
        for key in (
            "problem_statement",
            "sample_index",
            "attempt",
            "reward",
            "speedup",
            "success",
            "evaluation_info",
            "error",
            "model_calls",
        ):
            if key in ours:
                out[key] = ours[key]
    if not out["metadata"].get("run_id"):
        # A foreign trajectory names no run: its content is its identity (stable across reads).
        out["metadata"]["run_id"] = "sha-" + _content_hash(path) if path.is_file() else None
    return out


# -- metadata ------------------------------------------------------------------


def _read_metadata(src: ExampleSource) -> dict[str, Any]:
    if src.kind == "training_data":
        with open(src.path, "rb") as fh:
            meta = _fast_layout_header(fh)
            if meta is not None:
                return meta
            fh.seek(0)
            try:
                found = next(ijson.items(fh, "metadata", use_float=True), None)
            except ijson.JSONError as exc:
                raise InputError(f"not valid JSON: {exc}", where=str(src.path)) from None
            return found if isinstance(found, dict) else {}
    if src.kind == "run_dir":
        run_json = src.path / "run.json"
        if run_json.is_file():
            try:
                data = json.loads(run_json.read_text(encoding="utf-8"))
                return data.get("metadata", data) if isinstance(data, dict) else {}
            except ValueError:
                _warn(f"{run_json}: not valid JSON, metadata ignored")
        return {}
    return {"source": str(src.path), "source_kind": src.kind}


_RAW_READERS: dict[str, Callable[[ExampleSource], Iterator[RawItem]]] = {
    "training_data": _iter_training_data,
    "json_array": _iter_json_array,
    "jsonl": _iter_jsonl,
    "run_dir": _iter_run_dir,
    "trajectory": _iter_trajectory,
    "trajectory_dir": _iter_trajectory_dir,
}
