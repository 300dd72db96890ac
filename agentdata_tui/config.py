"""The agent config: mini-swe-agent's layout (agent / environment / model), validated by pydantic.

Its 1.x configs (templates under ``agent:``) and 2.x configs (``observation_template``,
``format_error_template`` and ``action_regex`` under ``model:``) load unchanged. Keys that
mini-swe-agent knows but this tool does not use are accepted and listed in
``Config.ignored_keys``; any other key is an error naming it.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentdata_tui.errors import InputError

DEFAULT_ACTION_REGEX = r"```bash\s*\n(.*?)\n```"
# mini-swe-agent 2.x's text-mode default (its configs rarely spell it out).
MSWEA2_ACTION_REGEX = r"```mswea_bash_command\s*\n(.*?)\n```"
SUBMIT_MARKERS = ("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT", "MINI_SWE_AGENT_FINAL_OUTPUT")

# litellm-only model keys: understood, never sent to an OpenAI-compatible server.
LITELLM_ONLY_KEYS = frozenset(
    {
        "drop_params",
        "custom_llm_provider",
        "api_base",
        "api_version",
        "num_retries",
        "caching",
        "metadata",
        "mock_response",
        "litellm_logging_obj",
        "input_cost_per_token",
        "output_cost_per_token",
    }
)

# Keys mini-swe-agent's configs may carry that this tool has no use for.
_MSWEA_IGNORED = {
    "agent": {"agent_class", "mode", "confirm_exit", "whitelist_actions", "output_path", "cost_tracking"},
    "environment": {
        "container_timeout",
        "pull_timeout",
        "executable",
        "run_args",
        "forward_env",
        "docker_executable",
        "start_args",
        "keep_container",
    },
    "model": {
        "model_class",
        "litellm_model_registry",
        "set_cache_control",
        "cost_tracking",
        "multimodal_regex",
        "outputs",
        "cost_per_call",
        "format_error_template_tool_call",
    },
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AgentConfig(_Section):
    system_template: str = ""
    instance_template: str = "{{task}}"
    action_observation_template: str | None = None
    format_error_template: str | None = None
    timeout_template: str | None = None
    step_limit: int = Field(0, ge=0)
    cost_limit: float = Field(3.0, ge=0)
    wall_time_limit_seconds: float = Field(0, ge=0)
    max_consecutive_format_errors: int = Field(3, ge=1)
    action_regex: str | None = None
    action_format: Literal["text", "tool_call"] = "text"
    observation_max_chars: int = Field(10000, ge=100)


class EnvironmentConfig(_Section):
    environment_class: str = "local"
    cwd: str = ""
    timeout: float = Field(60, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    interpreter: list[str] | None = None
    # container options (docker / docker_remote)
    cpus: float | None = None
    memory: str | None = None
    pids_limit: int | None = None
    network: str | None = None
    devices: list[str] = Field(default_factory=list)
    gpus: str | None = None
    pull_policy: Literal["never", "if-missing", "always"] = "if-missing"

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): "" if val is None else str(val) for k, val in v.items()}
        return v

    def effective_interpreter(self) -> list[str]:
        if self.interpreter:
            return list(self.interpreter)
        return ["bash", "-c"] if self.environment_class == "local" else ["bash", "-lc"]


class ModelConfig(_Section):
    model_name: str | None = None
    # Several OpenAI-compatible servers of the same model (``--base-url A,B`` overrides): each
    # rollout sticks to one, new rollouts go to the least-loaded healthy one (model/pool.py).
    endpoints: list[str] = Field(default_factory=list)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    observation_template: str | None = None
    format_error_template: str | None = None
    action_regex: str | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)
    extra_headers: dict[str, str] = Field(default_factory=dict)
    max_concurrent_requests: int = Field(0, ge=0)  # 0 = as many as workers
    request_timeout: float = Field(600, gt=0)  # overall deadline of one HTTP call, however it trickles
    retry_budget_s: float = Field(120, ge=0)  # retries go on until this much time is spent
    max_retries: int = Field(5, ge=0)  # a cap on retries only when the config sets it
    input_cost_per_token: float = Field(0.0, ge=0)
    output_cost_per_token: float = Field(0.0, ge=0)
    # Ask the server for token ids and logprobs (vLLM: ``return_token_ids``, ``logprobs``) and
    # keep them per model call in ``X.run/tokens.jsonl`` (for RL: ``export_rl``).
    capture_tokens: bool = False


class Config(_Section):
    agent: AgentConfig = Field(default_factory=AgentConfig)
    environment: EnvironmentConfig = Field(default_factory=EnvironmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    path: str | None = Field(None, exclude=True)
    sha256: str | None = Field(None, exclude=True)
    ignored_keys: list[str] = Field(default_factory=list, exclude=True)

    # -- effective settings: 2.x keys under model: win over 1.x keys under agent:
    @property
    def observation_template(self) -> str:
        return (
            self.model.observation_template
            or self.agent.action_observation_template
            or "<returncode>{{output.returncode}}</returncode>\n<output>\n{{output.output}}</output>"
        )

    @property
    def format_error_template(self) -> str:
        return (
            self.model.format_error_template
            or self.agent.format_error_template
            or "Please always provide EXACTLY ONE action in triple backticks, found {{actions|length}} actions."
        )

    @property
    def timeout_template(self) -> str:
        return self.agent.timeout_template or (
            "The last command <command>{{action}}</command> timed out and has been killed.\n"
            "<output>\n{{output}}\n</output>"
        )

    @property
    def action_regex(self) -> str:
        explicit = self.model.action_regex or self.agent.action_regex
        if explicit:
            return explicit
        # A 2.x-layout config (templates under model:) means 2.x's default block name.
        v2 = self.model.observation_template or self.model.format_error_template
        return MSWEA2_ACTION_REGEX if v2 else DEFAULT_ACTION_REGEX

    def model_dump_public(self) -> dict[str, Any]:
        """The config as recorded in run metadata (a config holds no secrets by design)."""
        return self.model_dump(mode="json")


def bundled_config_path() -> Path:
    return Path(str(resources.files("agentdata_tui") / "configs" / "mini.yaml"))


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file (the bundled ``mini.yaml`` when ``path`` is None)."""
    p = Path(path) if path else bundled_config_path()
    where = str(p)
    try:
        raw_bytes = p.read_bytes()
    except FileNotFoundError:
        raise InputError("config file not found", where=where) from None
    except OSError as exc:
        raise InputError(f"cannot read config: {exc.strerror}", where=where) from None
    try:
        data = yaml.safe_load(raw_bytes) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise InputError(f"{line}not valid YAML ({getattr(exc, 'problem', exc)})", where=where) from None
    cfg = config_from_dict(data, where=where)
    cfg.path = str(p.resolve())
    cfg.sha256 = hashlib.sha256(raw_bytes).hexdigest()
    return cfg


def config_from_dict(data: Any, *, where: str = "config") -> Config:
    if not isinstance(data, dict):
        raise InputError("config must be a mapping with agent:, environment:, model:", where=where)
    data = dict(data)
    ignored: list[str] = []
    for top in list(data):
        if top not in ("agent", "environment", "model"):
            if top == "run":  # mini-swe-agent's run section: output paths etc.
                ignored.append("run")
                data.pop(top)
                continue
            raise InputError(f"unknown key '{top}' (expected agent, environment, model)", where=where)
    for section, names in _MSWEA_IGNORED.items():
        block = data.get(section)
        if block is None:
            data.pop(section, None)
            continue
        if not isinstance(block, dict):
            raise InputError(f"'{section}' must be a mapping", where=where)
        block = dict(block)
        for name in list(block):
            if name in names:
                ignored.append(f"{section}.{name}")
                block.pop(name)
        data[section] = block
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise InputError(f"unknown key '{loc}'", where=where) from None
        raise InputError(f"'{loc}': {err['msg']}", where=where) from None
    cfg.ignored_keys = ignored
    return cfg
