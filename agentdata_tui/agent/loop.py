"""The agent loop, with mini-swe-agent's semantics (issue 3 §1).

``run`` renders the two opening messages, then repeats ``step`` = query the model, parse one
action, execute it, append the observation, until an exit. How a rollout ends is decided in
one place: ``step`` raises a small exception family (``Submitted``, ``LimitsExceeded``, ...)
or the seams' ``ModelError`` / ``SandboxError``, and ``run`` turns each into an exit status.
Unlike mini-swe-agent, each model call leaves a ``Step`` record (latency, tokens, command,
timing) and an ``on_step`` callback, so a dashboard can follow a rollout as it grows.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentdata_tui.agent.templates import ActionText, base_variables, render
from agentdata_tui.config import SUBMIT_MARKER, SUBMIT_MARKERS, Config
from agentdata_tui.dataset import Instance
from agentdata_tui.errors import UserError
from agentdata_tui.events import cut
from agentdata_tui.interfaces import (
    ExecResult,
    Model,
    ModelResponse,
    RolloutCancelled,
    RolloutContext,
    RolloutError,
    Sandbox,
)
from agentdata_tui.records import Step

# The tool mini-swe-agent 2.x offers in tool-call mode, in its shape: one ``bash`` function
# taking ``command``. Recorded with the run (run.json ``tools``, metadata ``tools``) so a
# tool-call conversation can be rebuilt as the model saw it.
BASH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Execute a bash command",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The bash command to execute"}},
            "required": ["command"],
        },
    },
}


def tools_for(config: Config) -> list[dict[str, Any]] | None:
    """The tools offered to the model under ``config`` (None in text mode)."""
    return [copy.deepcopy(BASH_TOOL)] if config.action_mode == "tool_call" else None


# -- how a rollout ends ----------------------------------------------------------------
class _Exit(Exception):
    exit_status = "Exit"


class Submitted(_Exit):
    exit_status = "Submitted"


class LimitsExceeded(_Exit):
    exit_status = "LimitsExceeded"


class TimeExceeded(_Exit):
    exit_status = "TimeExceeded"


class RepeatedFormatError(_Exit):
    exit_status = "RepeatedFormatError"


class _FormatError(Exception):
    """The reply held no usable action: the rendered format-error text goes back to the model."""


@dataclass
class AgentResult:
    messages: list[dict[str, Any]]
    steps: list[Step]
    exit_status: str
    model_calls: int
    cost: float
    error: str | None = None
    elapsed_s: float = 0.0
    format_errors: int = 0
    tokens: list[dict[str, Any] | None] = field(default_factory=list)  # per step (capture_tokens)


@dataclass
class _Action:
    command: str
    tool_call_id: str | None = None


@dataclass
class _Outcome:
    """What executing one reply's actions produced, summed over its actions for the Step."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    observation: str = ""


class _V1Output(dict):
    """1.x's observation dict (``{{output}}`` shows exactly its keys), still answering
    ``output.exception_info`` (empty) for 1.x-layout templates written for 2.x, such as ours."""

    exception_info = ""


def is_submission(output: str, returncode: int | None = 0, markers: tuple[str, ...] = SUBMIT_MARKERS) -> bool:
    """mini-swe-agent's test: the output's first line is the marker and the command succeeded."""
    lines = output.lstrip().splitlines()
    return returncode == 0 and bool(lines) and lines[0].strip() in markers


class Agent:
    """One rollout of one instance. The caller starts and closes the sandbox."""

    def __init__(
        self,
        config: Config,
        model: Model,
        sandbox: Sandbox,
        *,
        instance: Instance,
        context: RolloutContext,
        on_step: Callable[[dict[str, Any]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.sandbox = sandbox
        self.instance = instance
        self.context = context
        self.on_step = on_step
        self.should_stop = should_stop or (lambda: False)
        self.tools = tools_for(config)
        self.tool_mode = self.tools is not None
        # mini-swe-agent 1.x's loop (a 1.x text config): the rejected reply stays in the
        # conversation, timeouts use timeout_template, both submission markers count.
        self.v1 = config.v1_semantics
        self.markers = SUBMIT_MARKERS if self.v1 else (SUBMIT_MARKER,)
        try:
            self.action_regex = re.compile(config.action_regex, re.DOTALL)
        except re.error as exc:
            raise UserError(
                f"action_regex {config.action_regex!r} is not a valid regular expression: {exc}"
            ) from None
        self.messages: list[dict[str, Any]] = []
        self.steps: list[Step] = []
        self.tokens: list[dict[str, Any] | None] = []
        self.model_calls = 0
        self.cost = 0.0
        self.format_errors = 0
        self._consecutive_format_errors = 0
        self._variables: dict[str, Any] = {}
        self._started = 0.0

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> AgentResult:
        self._started = time.monotonic()
        template_env = getattr(self.sandbox, "template_env", None)
        env_vars = template_env() if callable(template_env) else None
        self._variables = base_variables(self.config, self.instance.to_dict(), env_vars)
        agent = self.config.agent
        self.messages.append(
            {"role": "system", "content": self._render("agent.system_template", agent.system_template)}
        )
        self.messages.append(
            {"role": "user", "content": self._render("agent.instance_template", agent.instance_template)}
        )
        error: str | None = None
        while True:
            try:
                self.step()
            except _Exit as exc:
                status = exc.exit_status
                break
            except RolloutError as exc:  # ModelError, ContextLengthExceeded, SandboxError
                if self.should_stop():
                    raise RolloutCancelled(str(exc)) from exc
                status, error = exc.exit_status, str(exc)
                break
        return AgentResult(
            messages=self.messages,
            steps=self.steps,
            exit_status=status,
            model_calls=self.model_calls,
            cost=round(self.cost, 8),
            error=error,
            elapsed_s=round(time.monotonic() - self._started, 3),
            format_errors=self.format_errors,
            tokens=self.tokens,
        )

    def step(self) -> None:
        self._check_limits()
        response = self._query()
        step = Step(
            model_latency_s=response.latency_s,
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            finish_reason=response.finish_reason,
        )
        self.steps.append(step)
        self.tokens.append(response.tokens)
        assistant = self._assistant_message(response)
        outcome = _Outcome()
        try:
            try:
                actions = self._parse(response)
            except _FormatError as exc:
                self._format_error_step(assistant, str(exc), step, outcome)
                return
            self.messages.append(assistant)
            self._consecutive_format_errors = 0
            self._execute(actions, step, outcome)
        except Exception as exc:
            outcome.observation = outcome.observation or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._emit(step, response, outcome.observation)
        self.messages.extend(outcome.messages)

    def _format_error_step(self, assistant: dict[str, Any], text: str, step: Step, outcome: _Outcome) -> None:
        """As mini-swe-agent: the format-error message goes back as a user message, and is
        recorded even when it ends the rollout. 2.x leaves the rejected reply out of the
        conversation (the model never sees it again; it is kept in the step as
        ``rejected_reply``); 1.x keeps it."""
        self.format_errors += 1
        self._consecutive_format_errors += 1
        step.format_error = True
        if self.v1:
            self.messages.append(assistant)
        else:
            step.rejected_reply = assistant
        self.messages.append({"role": "user", "content": text})
        outcome.observation = text
        limit = self.config.agent.max_consecutive_format_errors
        if 0 < limit <= self._consecutive_format_errors:
            raise RepeatedFormatError()

    # -- pieces ------------------------------------------------------------------------------
    def _check_limits(self) -> None:
        if self.should_stop():
            raise RolloutCancelled("stopped")
        agent = self.config.agent
        if 0 < agent.step_limit <= self.model_calls or 0 < agent.cost_limit <= self.cost:
            raise LimitsExceeded()
        if 0 < agent.wall_time_limit_seconds <= time.monotonic() - self._started:
            raise TimeExceeded()

    def _query(self) -> ModelResponse:
        # A call counts when it is made: a request that failed (ModelError) was still made.
        self.model_calls += 1
        response = self.model.query(self.messages, tools=self.tools, context=self.context)
        model_cfg = self.config.model
        self.cost += (response.prompt_tokens or 0) * model_cfg.input_cost_per_token + (
            response.completion_tokens or 0
        ) * model_cfg.output_cost_per_token
        return response

    def _assistant_message(self, response: ModelResponse) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": response.content or ""}
        if response.reasoning_content:
            message["reasoning_content"] = response.reasoning_content
        if self.tool_mode and response.tool_calls:
            message["tool_calls"] = response.tool_calls
        return message

    def _parse(self, response: ModelResponse) -> list[_Action]:
        """The reply's actions, or a _FormatError with the rendered text (mini-swe-agent 2.x's
        checks and messages, in its order)."""
        if not self.tool_mode:
            found = [a.strip() for a in self.action_regex.findall(response.content or "")]
            if len(found) == 1:
                return [_Action(found[0])]
            raise self._format_error(found, f"Expected exactly 1 action, found {len(found)}.", response)
        calls = response.tool_calls or []
        if not calls:
            raise self._format_error(
                [],
                "No tool calls found in the response. Every response MUST include at least one tool call.",
                response,
            )
        actions: list[_Action] = []
        for call in calls:
            fn = call.get("function") or {}
            error = ""
            args: Any = {}
            try:
                args = json.loads(fn.get("arguments") or "")
            except (TypeError, ValueError) as exc:
                error = f"Error parsing tool call arguments: {exc}."
            if fn.get("name") != "bash":
                error += f"Unknown tool '{fn.get('name')}'."
            if not isinstance(args, dict) or "command" not in args:
                error += "Missing 'command' argument in bash tool call."
            if error:
                raise self._format_error([], error.strip(), response)
            command = args["command"]
            actions.append(_Action(command if isinstance(command, str) else str(command), call.get("id")))
        return actions

    def _format_error(self, actions: list[str], error: str, response: ModelResponse) -> _FormatError:
        text = self._render(
            "format_error_template",
            self.config.format_error_template,
            actions=actions,
            error=error,
            has_tool_calls=bool(response.tool_calls),
            finish_reason=response.finish_reason,
        )
        return _FormatError(text)

    def _execute(self, actions: list[_Action], step: Step, outcome: _Outcome) -> None:
        """Every action of the reply in order, each answered by its own message (a ``tool``
        message per tool call). A submission ends the rollout at once, as in mini-swe-agent."""
        step.command = "\n".join(a.command for a in actions)
        step.exec_time_s = 0.0
        observations: list[str] = []
        for action in actions:
            result = self.sandbox.execute(action.command, timeout=self._command_timeout())
            step.returncode = result.returncode
            step.exec_time_s = round(step.exec_time_s + (result.exec_time_s or 0.0), 4)
            step.timed_out = step.timed_out or result.timed_out
            step.output_truncated = step.output_truncated or result.output_truncated
            if not (self.v1 and result.timed_out) and is_submission(
                result.output, result.returncode, self.markers
            ):
                outcome.observation = result.output
                raise Submitted()
            text = self._observation(action, result)
            observations.append(text)
            if action.tool_call_id is not None:
                outcome.messages.append(
                    {"role": "tool", "tool_call_id": action.tool_call_id, "content": text}
                )
            else:
                outcome.messages.append({"role": "user", "content": text})
        outcome.observation = "\n".join(observations)

    def _observation(self, action: _Action, result: ExecResult) -> str:
        """The observation template always gets the raw output (the sandbox's memory bound is
        the only cut, flagged ``output_truncated``): templates own truncation, as in mini-swe-agent."""
        if result.timed_out and self.config.timeout_template is not None:
            return self._render(
                "agent.timeout_template",
                self.config.timeout_template,
                action=ActionText(action.command),
                output=result.output or "",
            )
        observed: dict[str, Any]
        if self.v1:  # 1.x: the output dict plus the action
            observed = _V1Output(
                output=result.output or "", returncode=result.returncode, action=action.command
            )
        else:
            observed = {
                "output": result.output or "",
                "returncode": result.returncode,
                "exception_info": result.exception_info or "",
            }
        return self._render(
            self._observation_template_name(), self.config.observation_template, output=observed
        )

    def _observation_template_name(self) -> str:
        if self.config.model.observation_template:
            return "model.observation_template"
        return "agent.action_observation_template"

    def _command_timeout(self) -> float:
        """The configured timeout, shortened to what the wall-time limit leaves."""
        timeout = self.config.environment.timeout
        limit = self.config.agent.wall_time_limit_seconds
        if limit > 0:
            remaining = limit - (time.monotonic() - self._started)
            timeout = max(1.0, min(timeout, remaining))
        return timeout

    def _render(self, name: str, source: str, **extra: Any) -> str:
        variables = {
            **self._variables,
            "n_model_calls": self.model_calls,
            "model_cost": self.cost,
            "elapsed_seconds": int(time.monotonic() - self._started),
            **extra,
        }
        if name == "format_error_template":
            name = "model." + name if self.config.model.format_error_template else "agent." + name
        return render(name, source, variables)

    def _emit(self, step: Step, response: ModelResponse, observation: str) -> None:
        if self.on_step is None:
            return
        self.on_step(
            {
                "step": len(self.steps),
                "command": step.command,
                "returncode": step.returncode,
                "prompt_tokens": step.prompt_tokens,
                "completion_tokens": step.completion_tokens,
                "model_latency_s": step.model_latency_s,
                "exec_time_s": step.exec_time_s,
                "assistant": cut(response.content),
                "observation": cut(observation),
            }
        )
