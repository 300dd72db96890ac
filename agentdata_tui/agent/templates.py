"""Jinja2 templates with mini-swe-agent's variable names, compiled once per distinct source.

StrictUndefined, as mini-swe-agent: a template that names a variable we do not provide fails
loudly (a ``UserError`` naming the template) instead of silently rendering an empty string
into every prompt of a long run.
"""

from __future__ import annotations

import functools
import platform
import re
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, TemplateError

from agentdata_tui.config import Config
from agentdata_tui.errors import UserError

_ENV = Environment(undefined=StrictUndefined, keep_trailing_newline=False)


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> Template:
    return _ENV.from_string(source)


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
    u = platform.uname()
    return {"system": u.system, "release": u.release, "version": u.version, "machine": u.machine}


def base_variables(config: Config, instance: dict[str, Any]) -> dict[str, Any]:
    """Variables every template sees (later sources win).

    Like mini-swe-agent, the config sections' fields are variables too (``step_limit``,
    ``cwd``, ``model_name``, ...); unlike it, the process environment is not (it may hold keys).
    The instance's own fields come next, then the machine's ``system``/``release``/``version``/
    ``machine``, which must keep their meaning even though SWE-bench instances carry a
    ``version`` field of their own (still reachable as ``instance.version``).
    """
    variables: dict[str, Any] = {}
    variables.update(config.environment.model_dump(mode="json"))
    variables.update(config.model.model_dump(mode="json", include={"model_name", "model_kwargs"}))
    variables.update(config.agent.model_dump(mode="json"))
    variables.update(instance)
    variables.update(_uname())
    variables["instance"] = instance
    variables["task"] = instance.get("problem_statement", "")
    return variables


TEMPLATE_NAMES = {
    "agent.system_template": lambda c: c.agent.system_template,
    "agent.instance_template": lambda c: c.agent.instance_template,
    "observation_template": lambda c: c.observation_template,
    "format_error_template": lambda c: c.format_error_template,
    "agent.timeout_template": lambda c: c.timeout_template,
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
        variables = base_variables(config, instance) | {"n_model_calls": 0, "model_cost": 0.0}
        render("agent.system_template", config.agent.system_template, variables)
        render("agent.instance_template", config.agent.instance_template, variables)
