"""Jinja2 templates with mini-swe-agent's variable names, compiled once per distinct source.

StrictUndefined, as mini-swe-agent: a template that names a variable we do not provide fails
loudly (a ``UserError`` naming the template) instead of silently rendering an empty string
into every prompt of a long run.
"""

from __future__ import annotations

import functools
import platform
import re
import threading
from collections import OrderedDict
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, TemplateError

from agentdata_tui.config import Config
from agentdata_tui.errors import UserError

_ENV = Environment(undefined=StrictUndefined, keep_trailing_newline=False)


_COMPILED: OrderedDict[str, Template] = OrderedDict()
_COMPILED_MAX = 256
_COMPILE_LOCK = threading.Lock()


def _compile(source: str) -> Template:
    """The compiled template, made by the first caller while the others wait for it: a thousand
    rollouts starting at once each compiled the same system and instance templates (lru_cache
    does not hold concurrent misses back), seconds of the runner's one core before any first
    model call went out."""
    template = _COMPILED.get(source)
    if template is not None:
        return template
    with _COMPILE_LOCK:
        template = _COMPILED.get(source)
        if template is None:
            template = _ENV.from_string(source)
            _COMPILED[source] = template
            while len(_COMPILED) > _COMPILED_MAX:
                _COMPILED.popitem(last=False)
    return template


def compile_template(name: str, source: str) -> Template:
    try:
        return _compile(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        at = f" (line {line})" if line else ""
        raise UserError(f"template {name}{at}: {exc}") from None


def render(name: str, source: str, variables: dict[str, Any]) -> str:
    template = compile_template(name, source)
    try:
        return template.render(**variables)
    except TemplateError as exc:
        raise UserError(f"template {name}: {exc}") from None
    except Exception as exc:  # e.g. a filter applied to the wrong type
        raise UserError(f"template {name}: {type(exc).__name__}: {exc}") from None


class ActionText(str):
    """The command, also answering ``action['action']`` as mini-swe-agent 1.x templates write it."""

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            if key == "action":
                return str(self)
            raise KeyError(key)
        return str.__getitem__(self, key)


@functools.lru_cache(maxsize=1)
def _uname() -> dict[str, str]:
    return dict(platform.uname()._asdict())  # system, node, release, version, machine


def _number(value: Any) -> Any:
    """A whole float as mini-swe-agent's int fields render it (``60``, not ``60.0``)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# model_kwargs that carry credentials (a key, or headers such as Authorization / api-key):
# a template that renders ``model_kwargs`` must not put them in a prompt.
_SECRET_KWARGS = frozenset({"api_key", "extra_headers", "headers"})


def base_variables(
    config: Config, instance: dict[str, Any], env_vars: dict[str, str] | None = None
) -> dict[str, Any]:
    """Variables every template sees, as mini-swe-agent 2.4 merges them (later sources win).

    Its order: the agent config's fields; the environment's (its config's ``cwd``/``env``/
    ``timeout``, the machine's ``platform.uname()`` fields, then the environment variables);
    the model config's fields; then ``n_model_calls``/``model_cost``/``elapsed_seconds`` and
    ``task`` (added per render by the loop). The environment variables here are the sandbox's
    scrubbed ones (``env_vars``), never this process's: no key is ever among them, and none is
    in ``model_kwargs`` either (its key and headers are left out). Ours on top of that: the instance's own fields, lowest (still
    reachable as ``instance.version`` where a SWE-bench ``version`` meets the machine's), and
    ``instance``.
    """
    a, e, m = config.agent, config.environment, config.model
    variables: dict[str, Any] = dict(instance)
    variables.update(a.model_dump(mode="json", exclude={"action_format"}))
    variables["wall_time_limit_seconds"] = _number(a.wall_time_limit_seconds)
    variables.update({"cwd": e.cwd, "env": dict(e.env), "timeout": _number(e.timeout)})
    variables.update(_uname())
    variables.update(env_vars if env_vars is not None else e.env)
    kwargs = {k: v for k, v in m.model_kwargs.items() if k not in _SECRET_KWARGS}
    variables.update(
        {
            "model_name": m.model_name,
            "model_kwargs": kwargs,
            "observation_template": config.observation_template,
            "format_error_template": config.format_error_template,
        }
    )
    if config.action_mode == "text":
        variables["action_regex"] = config.action_regex
    variables["instance"] = instance
    variables["task"] = instance.get("problem_statement", "")
    return variables


TEMPLATE_NAMES = {
    "agent.system_template": lambda c: c.agent.system_template,
    "agent.instance_template": lambda c: c.agent.instance_template,
    "observation_template": lambda c: c.observation_template,
    "format_error_template": lambda c: c.format_error_template,
    "agent.timeout_template": lambda c: c.timeout_template or "",
}


def validate_templates(config: Config, instance: dict[str, Any] | None = None) -> None:
    """Compile every template (and render the opening two for ``instance``) before a run starts,
    so a typo is one clear error up front rather than an error in every example."""
    for name, get in TEMPLATE_NAMES.items():
        compile_template(name, get(config))
    try:
        re.compile(config.action_regex, re.DOTALL)
    except re.error as exc:
        raise UserError(
            f"action_regex {config.action_regex!r} is not a valid regular expression: {exc}"
        ) from None
    if instance is not None:
        variables = base_variables(config, instance) | {
            "n_model_calls": 0,
            "model_cost": 0.0,
            "elapsed_seconds": 0,
        }
        render("agent.system_template", config.agent.system_template, variables)
        render("agent.instance_template", config.agent.instance_template, variables)
