"""The launch screen's settings (Textual-free): defaults, validation, memory, and the run command.

Defaults come, lowest first, from the built-in values, the config file, the last used
settings (``$XDG_CONFIG_HOME/agentdata-tui/last.json``), the environment
(``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``AGENTDATA_EVAL_TOKEN``) and the command-line
flags. The API key and the eval-server token are never saved and never put on a command line:
the run gets them through its environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentdata_tui.atomic import atomic_write_text
from agentdata_tui.events import output_run_dir

DEFAULT_BASE_URL = "http://localhost:8000/v1"
SANDBOX_KINDS = ("local", "docker", "docker_remote")
# Fields remembered between sessions (never the API key).
REMEMBERED = (
    "base_url",
    "model",
    "temperature",
    "max_tokens",
    "environment_class",
    "docker_servers",
    "eval_server",
    "dataset",
    "config",
    "output",
    "workers",
    "max_tasks",
    "samples_per_task",
)
_HOST_PORT = re.compile(r"^(tcp://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class LaunchSettings(BaseModel):
    """What the launch screen edits; validation messages are shown next to each field."""

    model_config = ConfigDict(extra="ignore")

    base_url: str = DEFAULT_BASE_URL
    api_key: str = Field("", repr=False)
    model: str = ""
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    environment_class: str = "local"
    docker_servers: str = ""
    eval_server: str = "local"
    eval_token: str = Field("", repr=False)
    dataset: str = ""
    config: str = ""
    output: str = "training_data.json"
    workers: int = Field(4, ge=1, le=4096)
    max_tasks: int | None = Field(None, ge=1)
    samples_per_task: int = Field(1, ge=1)
    allow_unisolated_local: bool = False  # --allow-unisolated-local: the local sandbox without bubblewrap

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("environment_class")
    @classmethod
    def _env_class(cls, v: str) -> str:
        v = v.strip() or "local"
        if v not in SANDBOX_KINDS and not re.match(r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$", v):
            raise ValueError("local, docker, docker_remote or an import path like pkg.mod:Class")
        return v

    @field_validator("docker_servers")
    @classmethod
    def _docker(cls, v: str) -> str:
        parts = [p.strip() for p in v.split(",") if p.strip()]
        bad = [p for p in parts if not _HOST_PORT.match(p)]
        if bad:
            raise ValueError(f"'{bad[0]}' is not HOST:PORT")
        return ",".join(parts)

    @field_validator("eval_server")
    @classmethod
    def _eval(cls, v: str) -> str:
        v = v.strip() or "local"
        if v != "local" and not (re.match(r"^https?://\S+$", v) or _HOST_PORT.match(v)):
            raise ValueError("'local', a URL or HOST:PORT")
        return v

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("required: a dataset file (JSON array, {instances: [...]} or JSONL)")
        if not Path(v).expanduser().is_file():
            raise ValueError("no such file")
        return v

    @field_validator("config")
    @classmethod
    def _config(cls, v: str) -> str:
        v = v.strip()
        if v and not Path(v).expanduser().is_file():
            raise ValueError("no such file (leave empty for the bundled mini.yaml)")
        return v

    @field_validator("output")
    @classmethod
    def _output(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("required")
        parent = Path(v).expanduser().resolve().parent
        if not parent.is_dir():
            raise ValueError(f"folder {parent} does not exist")
        return v

    @property
    def run_dir(self) -> Path:
        return output_run_dir(Path(self.output).expanduser())

    def local_sandbox_warning(self) -> str | None:
        if self.environment_class == "local":
            return (
                "The local sandbox runs the model's commands on this machine, in a temporary copy of "
                "the task's repo: use docker for untrusted models."
            )
        return None

    def remembered(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in REMEMBERED}


def plain_message(err: dict[str, Any]) -> str:
    """A pydantic error in the words of the form ("at least 1", "a whole number"), short
    enough for the note beside the field."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    given = err.get("input")
    shown = f" (got '{given}')" if isinstance(given, str) and given and len(given) <= 20 else ""
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"must be {'at least' if kind == 'greater_than_equal' else 'more than'} {bound:g}"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return f"must be {'at most' if kind == 'less_than_equal' else 'less than'} {bound:g}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"a whole number, like 4{shown}"
    if kind in ("float_parsing", "float_type"):
        return f"a number, like 0.7{shown}"
    if kind == "missing":
        return "required"
    return str(err.get("msg", "not valid")).removeprefix("Value error, ")


def bubblewrap_missing() -> bool:
    """The local sandbox isolates commands with bubblewrap; without it a real run needs an opt-in."""
    import shutil

    return shutil.which("bwrap") is None


def validate_fields(values: dict[str, Any]) -> tuple[LaunchSettings | None, dict[str, str]]:
    """Validate the form: the settings, or one message per bad field, in plain words."""
    clean = {
        k: (None if v == "" and k in ("temperature", "max_tokens", "max_tasks") else v)
        for k, v in values.items()
    }
    try:
        return LaunchSettings.model_validate(clean), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "form"
            errors.setdefault(name, plain_message(err))
        return None, errors


def validate_field(name: str, value: Any) -> str | None:
    """One field alone (for messages as the user types)."""
    if name not in LaunchSettings.model_fields:
        return None
    base = LaunchSettings.model_construct()
    data = {k: getattr(base, k) for k in LaunchSettings.model_fields}
    data["dataset"] = "."  # placeholder, checked only when it is the field at hand
    data[name] = value
    _, errors = validate_fields(data)
    if name != "dataset":
        errors.pop("dataset", None)
    return errors.get(name)


# -- remembering -------------------------------------------------------------


def last_settings_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agentdata-tui" / "last.json"


def load_last(path: Path | None = None) -> dict[str, Any]:
    path = path or last_settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if k in REMEMBERED} if isinstance(data, dict) else {}


def save_last(settings: LaunchSettings, path: Path | None = None) -> Path:
    path = path or last_settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings.remembered(), indent=2) + "\n")
    return path


# -- defaults ----------------------------------------------------------------


CONFIG_FIELDS = ("model", "base_url", "api_key", "temperature", "max_tokens", "environment_class")


def config_defaults(config_path: str | None) -> dict[str, Any]:
    """What a config file sets among the form's fields (the bundled mini.yaml when empty), from
    the core's ``config.launch_defaults``; nothing for a config that does not load (its field
    says why on Start)."""
    try:
        from agentdata_tui.config import launch_defaults, load_config

        return {
            k: v for k, v in launch_defaults(load_config(config_path or None)).items() if k in CONFIG_FIELDS
        }
    except Exception:
        return {}


def initial_values(
    flags: dict[str, Any] | None = None, env: dict[str, str] | None = None, last: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's starting values and, per field, where a value came from (shown as a hint)."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {k: v for k, v in LaunchSettings.model_construct().model_dump().items()}
    sources: dict[str, str] = {}
    config_path = (flags or {}).get("config") or (last or {}).get("config") or ""
    for k, v in config_defaults(config_path).items():
        values[k] = v
        if k != "environment_class":
            sources[k] = "from the config"
    for k, v in (last or {}).items():
        if v is not None and k in REMEMBERED:
            values[k], sources[k] = v, "last used"
    if env.get("OPENAI_BASE_URL"):
        values["base_url"], sources["base_url"] = env["OPENAI_BASE_URL"], "from OPENAI_BASE_URL"
    if env.get("OPENAI_API_KEY"):
        values["api_key"], sources["api_key"] = env["OPENAI_API_KEY"], "from OPENAI_API_KEY"
    if env.get("AGENTDATA_EVAL_TOKEN"):
        values["eval_token"], sources["eval_token"] = env["AGENTDATA_EVAL_TOKEN"], "from AGENTDATA_EVAL_TOKEN"
    for k, v in (flags or {}).items():
        if v is not None and k in LaunchSettings.model_fields:
            values[k], sources[k] = v, "from a flag"
    return values, sources


# -- starting a run ----------------------------------------------------------


def build_command(settings: LaunchSettings, python: str | None = None, *, mode: str = "new") -> list[str]:
    """``python -m agentdata_tui generate-multi ...`` for these settings. Never the API key or
    the eval token. ``mode``: ``new``, ``resume`` (``--resume``: continue the run in the output's
    run folder) or ``start_over`` (``--force``: the old run folder is moved aside)."""
    cmd = [python or sys.executable, "-m", "agentdata_tui", "generate-multi"]
    cmd += ["--dataset", settings.dataset, "--output", settings.output, "--base-url", settings.base_url]
    cmd += ["--workers", str(settings.workers), "--samples-per-task", str(settings.samples_per_task)]
    cmd += ["--environment-class", settings.environment_class, "--eval-server", settings.eval_server]
    if settings.model:
        cmd += ["--model", settings.model]
    if settings.temperature is not None:
        cmd += ["--temperature", str(settings.temperature)]
    if settings.max_tokens is not None:
        cmd += ["--max-tokens", str(settings.max_tokens)]
    if settings.docker_servers:
        cmd += ["--docker-server", settings.docker_servers]
    if settings.config:
        cmd += ["--config", settings.config]
    if settings.max_tasks is not None:
        cmd += ["--max-tasks", str(settings.max_tasks)]
    if settings.allow_unisolated_local and settings.environment_class == "local":
        cmd.append("--allow-unisolated-local")
    if mode == "resume":
        cmd.append("--resume")
    elif mode == "start_over":
        cmd.append("--force")
    elif mode != "new":
        raise ValueError(f"unknown mode {mode!r}")
    return cmd


def child_env(api_key: str, base: dict[str, str] | None = None, eval_token: str = "") -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    if api_key:
        env["OPENAI_API_KEY"] = api_key
    if eval_token:
        env["AGENTDATA_EVAL_TOKEN"] = eval_token
    env.pop("AGENTDATA_TUI_CLOCK", None)  # a frozen clock is for snapshots, never for a run
    return env


def start_background(
    cmd: list[str], run_dir: Path, env: dict[str, str], log_name: str = "tui-launch.log"
) -> subprocess.Popen:
    """Start a run as its own session: it outlives the TUI, its terminal and a dropped SSH link."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / log_name, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
