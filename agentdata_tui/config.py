"""The agent config: mini-swe-agent's layout (agent / environment / model), validated by pydantic.

Its 1.x configs (templates under ``agent:``) and 2.x configs (``observation_template``,
``format_error_template`` and ``action_regex`` under ``model:``) load unchanged and run as
mini-swe-agent runs them (DESIGN §3, issue 10): the action mode follows ``model.model_class``
(:func:`action_mode`), the defaults of a template the config leaves out are the ones
mini-swe-agent would use for that layout and mode, and configs layer as its ``-c`` does
(:func:`load_configs`: files and ``key.path=value`` overrides, merged in order). Keys that
mini-swe-agent knows but this tool does not use are accepted and listed in
``Config.ignored_keys`` (shown in one line at start); any other key is an error naming it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentdata_tui.errors import InputError, UserError

DEFAULT_ACTION_REGEX = r"```bash\s*\n(.*?)\n```"
# mini-swe-agent 2.x's text-mode default (its configs rarely spell it out).
MSWEA2_ACTION_REGEX = r"```mswea_bash_command\s*\n(.*?)\n```"
SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
SUBMIT_MARKERS = (SUBMIT_MARKER, "MINI_SWE_AGENT_FINAL_OUTPUT")  # the second: 1.x only

# The templates mini-swe-agent uses when a config leaves one out (per layout and mode).
MSWEA2_OBSERVATION_TEMPLATE = (
    "{% if output.exception_info %}<exception>{{output.exception_info}}</exception>\n{% endif %}"
    "<returncode>{{output.returncode}}</returncode>\n<output>\n{{output.output}}</output>"
)
MSWEA2_TOOL_FORMAT_ERROR_TEMPLATE = "{{ error }}"
MSWEA2_TEXT_FORMAT_ERROR_TEMPLATE = (
    "Please always provide EXACTLY ONE action in triple backticks, found {{actions|length}} actions."
)
MSWEA1_OBSERVATION_TEMPLATE = "Observation: {{output}}"
MSWEA1_FORMAT_ERROR_TEMPLATE = "Please always provide EXACTLY ONE action in triple backticks."
MSWEA1_TIMEOUT_TEMPLATE = (
    "The last command <command>{{action['action']}}</command> timed out and has been killed.\n"
    "The output of the command was:\n"
    "{% if output | length < 10000 -%}\n"
    "<output>\n{{output}}\n</output>\n"
    "{%- else -%}\n"
    "<warning>Output was too long and has been truncated.</warning>\n"
    "<output_head>\n{{ output[:5000] }}\n</output_head>\n"
    "<elided_chars>{{ output | length - 10000 }} characters elided</elided_chars>\n"
    "<output_tail>\n{{ output[-5000:] }}\n</output_tail>\n"
    "{%- endif %}\n"
    "Please try another command and make sure to avoid those requiring interactive input."
)

# mini-swe-agent 2.x's model classes, by short name and import path → the action mode they use.
# All of them are OpenAI chat-completion clients to us: requests go to --base-url.
_MSWEA = "minisweagent.models."
TOOL_CALL_CLASSES = {
    "litellm": _MSWEA + "litellm_model.LitellmModel",
    "openrouter": _MSWEA + "openrouter_model.OpenRouterModel",
    "portkey": _MSWEA + "portkey_model.PortkeyModel",
    "requesty": _MSWEA + "requesty_model.RequestyModel",
}
TEXT_CLASSES = {
    "litellm_textbased": _MSWEA + "litellm_textbased_model.LitellmTextbasedModel",
    "openrouter_textbased": _MSWEA + "openrouter_textbased_model.OpenRouterTextbasedModel",
}

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
# model_kwargs the client takes for itself (the server address and key) rather than sending.
CONNECTION_KEYS = ("api_base", "base_url", "api_key")

# Keys mini-swe-agent's configs may carry that this tool has no use for.
_MSWEA_IGNORED = {
    "agent": {
        "agent_class",
        "mode",
        "confirm_exit",
        "whitelist_actions",
        "output_path",
        "cost_tracking",
        "observation_max_chars",  # ours, before templates owned the output (issue 10)
    },
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
    max_consecutive_format_errors: int = Field(3, ge=0)  # 0 = no limit, as mini-swe-agent
    action_regex: str | None = None
    action_format: Literal["text", "tool_call"] | None = None  # None: follows model.model_class


class EnvironmentConfig(_Section):
    environment_class: str = "local"
    cwd: str = ""
    timeout: float = Field(60, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    interpreter: list[str] | None = None
    # container options (docker / docker_remote)
    cpus: float | None = None
    memory: str | None = None  # docker: the container's memory; local: RLIMIT_AS of each command
    pids_limit: int | None = None  # docker: the container's pids; local: RLIMIT_NPROC (per user!)
    file_size_limit: str | None = None  # local: RLIMIT_FSIZE of each command ("1g"): a full disk stops there
    network: str | None = None
    devices: list[str] = Field(default_factory=list)
    gpus: str | None = None
    pull_policy: Literal["never", "if-missing", "always"] = "if-missing"
    # The built-in evaluator's fresh sandbox, built while the agent still runs (its copy and
    # setup_command overlap model time instead of the run's tail). None: local sandboxes yes;
    # docker, docker_remote and your own classes no (it would double the containers running).
    prepare_eval_sandbox: bool | None = None

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): "" if val is None else str(val) for k, val in v.items()}
        return v

    def prepares_eval_sandbox(self, environment_class: str | None = None) -> bool:
        """Whether evaluation sandboxes are prepared ahead (``prepare_eval_sandbox``, else by kind)."""
        if self.prepare_eval_sandbox is not None:
            return self.prepare_eval_sandbox
        return (environment_class or self.environment_class) == "local"

    def effective_interpreter(self) -> list[str]:
        if self.interpreter:
            return list(self.interpreter)
        return ["bash", "-c"] if self.environment_class == "local" else ["bash", "-lc"]


class ModelConfig(_Section):
    model_name: str | None = None
    # Several OpenAI-compatible servers of the same model (``--base-url A,B`` overrides): each
    # rollout sticks to one, new rollouts go to the least-loaded healthy one (model/pool.py).
    endpoints: list[str] = Field(default_factory=list)
    model_class: str | None = None
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

    @field_validator("model_class")
    @classmethod
    def _known_class(cls, v: str | None) -> str | None:
        if v:
            model_class_mode(v)  # raises ValueError naming the classes understood
        return v

    def api_base(self) -> str | None:
        """The server address the config names (litellm's ``api_base`` or OpenAI's ``base_url``)."""
        kw = self.model_kwargs
        value = kw.get("api_base") or kw.get("base_url")
        return str(value) if value else None

    def api_key(self) -> str | None:
        value = self.model_kwargs.get("api_key")
        return str(value) if value else None


def model_class_mode(model_class: str) -> Literal["text", "tool_call"]:
    """The action mode mini-swe-agent 2.x's ``model_class`` implies; ValueError for a class this
    tool does not speak (a Responses-API class, an unknown import path)."""
    name = model_class.strip()
    if name in TOOL_CALL_CLASSES or name in TOOL_CALL_CLASSES.values():
        return "tool_call"
    if name in TEXT_CLASSES or name in TEXT_CLASSES.values():
        return "text"
    tool = ", ".join(TOOL_CALL_CLASSES)
    text = ", ".join(TEXT_CLASSES)
    why = "a Responses-API class" if "response" in name.lower() else "not a class agentdata-tui understands"
    raise ValueError(
        f"model_class {name!r} is {why}; understood: {tool} (tool calls), {text} (text actions), "
        "or their minisweagent.models.* import paths"
    )


class Config(_Section):
    agent: AgentConfig = Field(default_factory=AgentConfig)
    environment: EnvironmentConfig = Field(default_factory=EnvironmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    path: str | None = Field(None, exclude=True)
    sources: list[str] = Field(default_factory=list, exclude=True)
    sha256: str | None = Field(None, exclude=True)
    ignored_keys: list[str] = Field(default_factory=list, exclude=True)

    # -- how mini-swe-agent would run this config -----------------------------------------
    @property
    def layout(self) -> Literal[1, 2]:
        """1 for a mini-swe-agent 1.x config (its templates under ``agent:``, no 2.x model keys),
        else 2."""
        m, a = self.model, self.agent
        if m.observation_template or m.format_error_template or m.action_regex or m.model_class:
            return 2
        if a.action_observation_template or a.format_error_template or a.timeout_template or a.action_regex:
            return 1
        return 2

    @property
    def action_mode(self) -> Literal["text", "tool_call"]:
        """``agent.action_format`` when set; else as mini-swe-agent: 1.x configs are text, a 2.x
        config is tool calls unless its ``model_class`` is a text-based one."""
        if self.agent.action_format:
            return self.agent.action_format
        if self.model.model_class:
            return model_class_mode(self.model.model_class)
        return "text" if self.layout == 1 else "tool_call"

    @property
    def v1_semantics(self) -> bool:
        """mini-swe-agent 1.x's loop: a rejected reply stays in the conversation, timeouts go
        through ``timeout_template``."""
        return self.layout == 1 and self.action_mode == "text"

    # -- effective settings: 2.x keys under model: win over 1.x keys under agent:
    @property
    def observation_template(self) -> str:
        if self.model.observation_template:
            return self.model.observation_template
        if self.agent.action_observation_template:
            return self.agent.action_observation_template
        return MSWEA1_OBSERVATION_TEMPLATE if self.layout == 1 else MSWEA2_OBSERVATION_TEMPLATE

    @property
    def format_error_template(self) -> str:
        if self.model.format_error_template:
            return self.model.format_error_template
        if self.agent.format_error_template:
            return self.agent.format_error_template
        if self.layout == 1:
            return MSWEA1_FORMAT_ERROR_TEMPLATE
        if self.action_mode == "tool_call":
            return MSWEA2_TOOL_FORMAT_ERROR_TEMPLATE
        return MSWEA2_TEXT_FORMAT_ERROR_TEMPLATE

    @property
    def timeout_template(self) -> str | None:
        """1.x's timeout message (the config's, else 1.x's default); None for 2.x, which renders
        timeouts through the observation template (``returncode`` -1, ``exception_info``)."""
        if not self.v1_semantics:
            return None
        return self.agent.timeout_template or MSWEA1_TIMEOUT_TEMPLATE

    @property
    def action_regex(self) -> str:
        explicit = self.model.action_regex or self.agent.action_regex
        if explicit:
            return explicit
        return DEFAULT_ACTION_REGEX if self.layout == 1 else MSWEA2_ACTION_REGEX

    def model_dump_public(self) -> dict[str, Any]:
        """The merged config as recorded in run metadata: the API key a config may hold is left out."""
        data = self.model_dump(mode="json")
        kwargs = data["model"]["model_kwargs"]
        if kwargs.get("api_key"):
            kwargs["api_key"] = "***"
        return data

    def unused_keys_line(self) -> str | None:
        """The one line shown at start: keys understood but not used (None when there are none)."""
        keys = list(self.ignored_keys)
        if self.environment.environment_class == "local":
            keys += [f"environment.env.{k}" for k in ("BASH_ENV", "ENV") if k in self.environment.env]
        if self.agent.timeout_template and not self.v1_semantics:
            keys.append("agent.timeout_template")  # 2.x has none: timeouts are observations
        keys += [f"model.model_kwargs.{k}" for k in self.model.model_kwargs if k in LITELLM_ONLY_KEYS]
        keys = [k for k in dict.fromkeys(keys) if k not in ("model.model_kwargs.api_base",)]
        if not keys:
            return None
        return "config keys understood but not used here: " + ", ".join(keys)


def bundled_config_path() -> Path:
    return Path(str(resources.files("agentdata_tui") / "configs" / "mini.yaml"))


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate one config file (the bundled ``mini.yaml`` when ``path`` is None)."""
    return load_configs([os.fspath(path)] if path else [])


def is_override(spec: str) -> bool:
    """``key.path=value`` (as mini-swe-agent's ``-c``), unless a file of that name exists."""
    return "=" in spec and not Path(spec).is_file()


def load_configs(specs: list[str] | tuple[str, ...] | None) -> Config:
    """Layered configs as mini-swe-agent 2.x's ``-c``: each spec a YAML file or a
    ``key.path=value`` override (the value read as JSON when it parses, else a string),
    merged in order, later ones winning (mappings merge, anything else is replaced).
    Only overrides (or nothing) apply to the bundled ``mini.yaml``."""
    specs = [str(s) for s in specs or []]
    if not any(not is_override(s) for s in specs):
        specs = [str(bundled_config_path()), *specs]
    layers: list[tuple[str, dict[str, Any]]] = []
    files: list[Path] = []
    digest = hashlib.sha256()
    for spec in specs:
        if is_override(spec):
            layers.append((f"--config {spec.split('=', 1)[0]}=...", _override(spec)))
            digest.update(b"override\0" + spec.encode() + b"\0")
            continue
        p = _find_config(spec)
        raw = _read_yaml(p)
        layers.append((str(p), raw[1]))
        files.append(p)
        digest.update(raw[0])
    merged: dict[str, Any] = {}
    for where, data in layers:
        if not isinstance(data, dict):
            raise InputError("config must be a mapping with agent:, environment:, model:", where=where)
        merged = merge(merged, data)
    where = layers[-1][0] if len(layers) == 1 else " + ".join(w for w, _ in layers)
    cfg = config_from_dict(merged, where=where, layers=layers)
    cfg.path = str(files[0].resolve()) if len(files) == 1 else ", ".join(str(f.resolve()) for f in files)
    cfg.sources = [str(_find_config(s).resolve()) if not is_override(s) else _redact_spec(s) for s in specs]
    cfg.sha256 = (
        digest.hexdigest() if len(layers) > 1 else hashlib.sha256(_read_yaml(files[0])[0]).hexdigest()
    )
    return cfg


def _redact_spec(spec: str) -> str:
    key, _, _value = spec.partition("=")
    return f"{key}=***" if key.rsplit(".", 1)[-1] == "api_key" else spec


def _find_config(spec: str) -> Path:
    """A path as given, else with ``.yaml`` added, else in ``$MSWEA_CONFIG_DIR`` or the bundled configs."""
    p = Path(spec).expanduser()
    names = [p] if p.suffix in (".yaml", ".yml") else [p, p.with_suffix(".yaml")]
    candidates = list(names)
    if not p.is_absolute():
        for base in (os.environ.get("MSWEA_CONFIG_DIR"), str(bundled_config_path().parent)):
            if base:
                candidates += [Path(base) / n for n in names]
    for c in candidates:
        if c.is_file():
            return c
    if p.is_dir():
        raise InputError("is a folder, not a config file", where=str(p))
    raise InputError("config file not found", where=str(p))


def _read_yaml(p: Path) -> tuple[bytes, Any]:
    where = str(p)
    try:
        raw_bytes = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read config: {exc.strerror}", where=where) from None
    try:
        return raw_bytes, (yaml.safe_load(raw_bytes) or {})
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise InputError(f"{line}not valid YAML ({getattr(exc, 'problem', exc)})", where=where) from None


def _override(spec: str) -> dict[str, Any]:
    key, value_text = spec.split("=", 1)
    keys = key.strip().split(".")
    if any(not k for k in keys):
        raise UserError(f"--config {key}=...: empty key in the key path (write it as section.key=value)")
    try:
        value: Any = json.loads(value_text)
    except ValueError:
        value = value_text
    out: dict[str, Any] = {}
    node = out
    for k in keys[:-1]:
        node[k] = {}
        node = node[k]
    node[keys[-1]] = value
    return out


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge (mini-swe-agent's): mappings merge key by key, other values are replaced."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def launch_defaults(config: Config) -> dict[str, Any]:
    """What a config says about the launch screen's fields (issue 10 §4: "the launch screen
    prefills from the chosen config"): only the fields the config sets. ``api_key`` is a secret:
    show it masked, never in a screenshot or a log."""
    out: dict[str, Any] = {}
    m = config.model
    if m.model_name:
        out["model"] = m.model_name
    if m.api_base():
        out["base_url"] = m.api_base()
    if m.api_key():
        out["api_key"] = m.api_key()
    kw = m.model_kwargs
    if "temperature" in kw:
        out["temperature"] = kw["temperature"]
    if "max_tokens" in kw or "max_completion_tokens" in kw:
        out["max_tokens"] = kw.get("max_tokens", kw.get("max_completion_tokens"))
    out["environment_class"] = config.environment.environment_class
    return out


def _where_key(layers: list[tuple[str, dict[str, Any]]] | None, loc: list[str], default: str) -> str:
    """The last layer that sets the key path ``loc`` (so an error names the file or override)."""
    for where, data in reversed(layers or []):
        node: Any = data
        for part in loc:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return where
    return default


def config_from_dict(
    data: Any, *, where: str = "config", layers: list[tuple[str, dict[str, Any]]] | None = None
) -> Config:
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
            raise InputError(
                f"unknown key '{top}' (expected agent, environment, model)",
                where=_where_key(layers, [top], where),
            )
    for section, names in _MSWEA_IGNORED.items():
        block = data.get(section)
        if block is None:
            data.pop(section, None)
            continue
        if not isinstance(block, dict):
            raise InputError(f"'{section}' must be a mapping", where=_where_key(layers, [section], where))
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
        parts = [str(p) for p in err["loc"]]
        loc = ".".join(parts)
        at = _where_key(layers, parts, where)
        if err["type"] == "extra_forbidden":
            raise InputError(f"unknown key '{loc}'", where=at) from None
        msg = err["msg"].removeprefix("Value error, ")
        raise InputError(f"'{loc}': {msg}", where=at) from None
    cfg.ignored_keys = ignored
    return cfg
