"""The agent loop, with mini-swe-agent's semantics (issue 3 §1).

``run`` renders the two opening messages, then repeats ``step`` = query the model, parse one
action, execute it, append the observation, until an exit. How a rollout ends is decided in
one place: ``step`` raises a small exception family (``Submitted``, ``LimitsExceeded``, ...)
or the seams' ``ModelError`` / ``SandboxError``, and ``run`` turns each into an exit status.
Unlike mini-swe-agent, each model call leaves a ``Step`` record (latency, tokens, command,
timing) and an ``on_step`` callback, so a dashboard can follow a rollout as it grows.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentdata_tui.agent.templates import ActionText, base_variables, render
from agentdata_tui.config import SUBMIT_MARKERS, Config
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

BASH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Execute a bash command in a fresh subshell of the task's repository.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The bash command to execute"}},
            "required": ["command"],
        },
    },
}


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


def cut_middle(text: str, limit: int) -> tuple[str, bool]:
    """Head + tail of ``text`` with the number of elided characters between (mini-swe-agent's way)."""
    if len(text) <= limit:
        return text, False
    head = limit // 2
    tail = limit - head
    elided = len(text) - head - tail
    return f"{text[:head]}\n[... {elided} characters elided ...]\n{text[-tail:]}", True


def is_submission(output: str) -> bool:
    lines = output.lstrip().splitlines()
    return bool(lines) and lines[0].strip() in SUBMIT_MARKERS


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
        self.tool_mode = config.agent.action_format == "tool_call"
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
        self._variables = base_variables(config, instance.to_dict())
        self._started = 0.0

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> AgentResult:
        self._started = time.monotonic()
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
        self.messages.append(assistant)
        outcome = _Outcome()
        try:
            actions = self._parse(response)
            self._consecutive_format_errors = 0
            self._execute(actions, step, outcome)
        except _FormatError as exc:
            self.format_errors += 1
            self._consecutive_format_errors += 1
            outcome.observation = str(exc)
            if self._consecutive_format_errors >= self.config.agent.max_consecutive_format_errors:
                raise RepeatedFormatError() from None
            outcome.messages = self._reply_messages(assistant, str(exc))
        except Exception as exc:
            outcome.observation = outcome.observation or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._emit(step, response, outcome.observation)
        self.messages.extend(outcome.messages)

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
        response = self.model.query(
            self.messages, tools=[BASH_TOOL] if self.tool_mode else None, context=self.context
        )
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
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except (TypeError, ValueError) as exc:
                raise self._format_error([], f"Error parsing tool call arguments: {exc}.", response) from None
            if fn.get("name") != "bash":
                raise self._format_error([], f"Unknown tool '{fn.get('name')}'.", response)
            if not isinstance(args, dict) or not isinstance(args.get("command"), str):
                raise self._format_error([], "Missing 'command' argument in bash tool call.", response)
            actions.append(_Action(args["command"], call.get("id")))
        return actions

    def _format_error(self, actions: list[str], error: str, response: ModelResponse) -> _FormatError:
        text = self._render(
            "format_error_template",
            self.config.format_error_template,
            actions=actions,
            error=error,
            finish_reason=response.finish_reason,
        )
        return _FormatError(text)

    def _reply_messages(self, assistant: dict[str, Any], text: str) -> list[dict[str, Any]]:
        """The messages answering a reply: one ``tool`` message per tool call (the API requires
        an answer to each), else one ``user`` message."""
        calls = assistant.get("tool_calls") or []
        if calls:
            return [{"role": "tool", "tool_call_id": c.get("id"), "content": text} for c in calls]
        return [{"role": "user", "content": text}]

    def _execute(self, actions: list[_Action], step: Step, outcome: _Outcome) -> None:
        step.command = "\n".join(a.command for a in actions)
        step.exec_time_s = 0.0
        observations: list[str] = []
        for action in actions:
            result = self.sandbox.execute(action.command, timeout=self._command_timeout())
            step.returncode = result.returncode
            step.exec_time_s = round(step.exec_time_s + (result.exec_time_s or 0.0), 4)
            step.timed_out = step.timed_out or result.timed_out
            if not result.timed_out and is_submission(result.output):
                outcome.observation = result.output
                raise Submitted()
            text = self._observation(action, result, step)
            observations.append(text)
            if action.tool_call_id is not None:
                outcome.messages.append(
                    {"role": "tool", "tool_call_id": action.tool_call_id, "content": text}
                )
            else:
                outcome.messages.append({"role": "user", "content": text})
        outcome.observation = "\n".join(observations)

    def _observation(self, action: _Action, result: ExecResult, step: Step) -> str:
        output, truncated = cut_middle(result.output or "", self.config.agent.observation_max_chars)
        step.output_truncated = step.output_truncated or truncated or result.output_truncated
        if result.timed_out:
            return self._render(
                "agent.timeout_template",
                self.config.timeout_template,
                action=ActionText(action.command),
                output=output,
            )
        observed = {
            "returncode": result.returncode,
            "output": output,
            "exception_info": result.exception_info,
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
