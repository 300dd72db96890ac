"""Datasets of task instances (DESIGN §3): a JSON array, ``{"instances": [...]}``, or JSONL."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentdata_tui.errors import InputError, validation_message


class EvalSpec(BaseModel):
    """How the built-in evaluator grades a patch (DESIGN §4)."""

    model_config = ConfigDict(extra="allow")

    test_command: str | None = None
    benchmark_command: str | None = None
    warmup: int = Field(1, ge=0)
    repeats: int = Field(5, ge=1)
    min_speedup: float = Field(1.05, gt=0)
    target_speedup: float = Field(2.0, gt=1)
    timeout: float = Field(600, gt=0)
    # Gitignore-style globs of the files that judge the patch (tests, benchmarks): the patch's
    # changes to them are dropped before it is applied. None: the defaults; [] disables.
    protected_paths: list[str] | None = None


class Instance(BaseModel):
    """One task. Unknown fields are kept, given to the templates and sent to the eval server."""

    model_config = ConfigDict(extra="allow")

    instance_id: str
    problem_statement: str
    image: str | None = None
    cwd: str | None = None
    repo_path: str | None = None
    setup_command: str | None = None
    eval: EvalSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


@dataclass
class Dataset:
    path: Path
    instances: list[Instance]
    sha256: str

    @property
    def base_dir(self) -> Path:
        """Folder that relative ``repo_path`` values are resolved against."""
        return self.path.parent

    def repo_dir(self, instance: Instance) -> Path | None:
        if not instance.repo_path:
            return None
        p = Path(instance.repo_path)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def by_id(self) -> dict[str, Instance]:
        return {i.instance_id: i for i in self.instances}


def _validate_instance(raw: Any, where: str, label: str) -> Instance:
    if not isinstance(raw, dict):
        raise InputError(f"{label} is not a JSON object", where=where)
    try:
        return Instance.model_validate(raw)
    except ValidationError as exc:
        ident = raw.get("instance_id")
        label = f"{label} ({ident})" if ident else label
        raise InputError(validation_message(exc, label), where=where) from None


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    p = Path(path)
    where = str(p)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError("dataset file not found", where=where) from None
    except IsADirectoryError:
        raise InputError("is a folder, expected a dataset file (.json or .jsonl)", where=where) from None
    except OSError as exc:
        raise InputError(f"cannot read dataset: {exc.strerror}", where=where) from None
    sha = hashlib.sha256(data).hexdigest()
    text = data.decode("utf-8", errors="replace")
    raws: list[tuple[Any, str]] = []
    stripped = text.lstrip()
    if not stripped:
        raise InputError("dataset is empty", where=where)
    if p.suffix == ".jsonl" or (stripped[0] == "{" and "\n{" in stripped and not _is_single_json(stripped)):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raws.append((json.loads(line), f"line {n}"))
            except ValueError as exc:
                raise InputError(f"line {n}: not valid JSON: {exc}", where=where) from None
    else:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InputError(f"not valid JSON: {exc}", where=where) from None
        if isinstance(doc, dict) and isinstance(doc.get("instances"), list):
            doc = doc["instances"]
        elif isinstance(doc, dict) and "instance_id" in doc:
            doc = [doc]
        elif isinstance(doc, dict) and isinstance(doc.get("examples"), list):
            # A training-data file (generate_single --instance takes one): its examples are instances.
            doc = doc["examples"]
        if not isinstance(doc, list):
            raise InputError('expected a JSON array of instances or {"instances": [...]}', where=where)
        raws = [(item, f"instance {i}") for i, item in enumerate(doc)]
    instances: list[Instance] = []
    seen: set[str] = set()
    for raw, label in raws:
        inst = _validate_instance(raw, where, label)
        if inst.instance_id in seen:
            raise InputError(f"{label}: duplicate instance_id '{inst.instance_id}'", where=where)
        seen.add(inst.instance_id)
        instances.append(inst)
    return Dataset(path=p.resolve(), instances=instances, sha256=sha)


def _is_single_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
