"""The agent loop with real ``bash -c`` commands in the local sandbox (issue 3 §1, §7)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentdata_tui.agent.loop import Agent, is_submission
from agentdata_tui.config import DEFAULT_ACTION_REGEX, Config, config_from_dict, load_config
from agentdata_tui.dataset import Instance
from agentdata_tui.errors import UserError
from agentdata_tui.interfaces import (
    ContextLengthExceeded,
    ExecResult,
    ModelError,
    ModelResponse,
    RolloutCancelled,
    RolloutContext,
    SandboxError,
)
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox.local import LocalSandbox

SUBMIT = "Done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"
STEP_FIELDS = {
    "step",
    "command",
    "returncode",
    "prompt_tokens",
    "completion_tokens",
    "model_latency_s",
    "exec_time_s",
    "assistant",
    "observation",
}


def bash(cmd: str, thought: str = "THOUGHT: next.") -> str:
    return f"{thought}\n\n```bash\n{cmd}\n```"


class ScriptModel:
    """Plays replies in order (the last repeats) and keeps a copy of every request it saw."""

    name = "script"

    def __init__(self, replies: list[Any], prompt_tokens: int = 10, completion_tokens: int = 5) -> None:
        self.replies = replies
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.seen: list[list[dict[str, Any]]] = []
        self.tools: list[Any] = []

    def query(self, messages, *, tools=None, context=None) -> ModelResponse:
        self.seen.append(copy.deepcopy(messages))
        self.tools.append(tools)
        reply = self.replies[min(len(self.seen) - 1, len(self.replies) - 1)]
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, ModelResponse):
            return reply
        return ModelResponse(
            content=reply,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            finish_reason="stop",
            latency_s=0.01,
        )


def instance(**extra: Any) -> Instance:
    return Instance(instance_id="demo-1", problem_statement="Fix the bug in demo-1.", **extra)


def run_agent(config: Config, model, inst: Instance | None = None, sandbox=None, **kwargs):
    inst = inst or instance()
    steps: list[dict[str, Any]] = []
    sandbox = sandbox or LocalSandbox(inst, config.environment, context=SandboxContext())
    sandbox.start()
    try:
        agent = Agent(
            config,
            model,
            sandbox,
            instance=inst,
            context=RolloutContext(instance_id=inst.instance_id),
            on_step=steps.append,
            **kwargs,
        )
        result = agent.run()
        diff = sandbox.diff()[0] if hasattr(sandbox, "diff") else ""
    finally:
        sandbox.close()
    return result, steps, diff


@pytest.fixture
def config() -> Config:
    return load_config()


def test_submission_records_messages_steps_and_events(config):
    model = ScriptModel([bash("echo hello > greeting.txt && echo wrote"), SUBMIT])
    result, events, diff = run_agent(config, model)
    assert result.exit_status == "Submitted" and result.error is None
    assert result.model_calls == 2
    roles = [m["role"] for m in result.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert "Fix the bug in demo-1." in result.messages[1]["content"]
    assert "<returncode>0</returncode>" in result.messages[3]["content"]
    assert "wrote" in result.messages[3]["content"]
    assert result.messages[-1]["content"] == SUBMIT  # the submission's output is not sent back
    assert model.seen[1] == result.messages[:4]  # exactly what the model saw
    assert "greeting.txt" in diff and "+hello" in diff
    first = result.steps[0]
    assert first.command == "echo hello > greeting.txt && echo wrote"
    assert first.returncode == 0 and first.exec_time_s > 0 and first.prompt_tokens == 10
    assert first.finish_reason == "stop" and not first.timed_out and not first.output_truncated
    assert result.steps[1].command == "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
    assert [set(e) for e in events] == [STEP_FIELDS, STEP_FIELDS]
    assert [e["step"] for e in events] == [1, 2]
    assert "wrote" in events[0]["observation"] and events[0]["assistant"].startswith("THOUGHT")
    assert events[1]["observation"].startswith("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")


def test_submission_markers_only_on_the_first_line(config):
    assert is_submission("\n  MINI_SWE_AGENT_FINAL_OUTPUT\nrest")
    assert is_submission("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")
    assert not is_submission("x\nCOMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")
    assert not is_submission("")
    model = ScriptModel(
        [
            bash("echo x; echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"),
            bash("printf '\\n  MINI_SWE_AGENT_FINAL_OUTPUT\\nlater'"),
        ]
    )
    result, _, _ = run_agent(config, model)  # the bundled config is 1.x: both markers count
    assert result.exit_status == "Submitted" and result.model_calls == 2


def test_a_submission_needs_return_code_zero(config):
    """Reproduced: a submission was accepted whatever the command's return code (mini-swe-agent
    requires 0, and shows the failed command's output instead)."""
    assert not is_submission("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT", 1)
    model = ScriptModel([bash("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT; exit 3"), SUBMIT])
    result, _, _ = run_agent(config, model)
    assert result.exit_status == "Submitted" and result.model_calls == 2
    assert "<returncode>3</returncode>" in result.messages[3]["content"]


def test_2x_accepts_only_its_own_marker():
    cfg = _v2_config()
    mswea = "THOUGHT: x\n\n```mswea_bash_command\n{}\n```"
    model = ScriptModel(
        [
            mswea.format("echo MINI_SWE_AGENT_FINAL_OUTPUT"),
            mswea.format("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"),
        ]
    )
    result, _, _ = run_agent(cfg, model)
    assert result.exit_status == "Submitted" and result.model_calls == 2
    assert "MINI_SWE_AGENT_FINAL_OUTPUT" in result.messages[3]["content"]


def test_format_errors_end_as_repeated_format_error(config):
    """1.x layout: the rejected replies stay in the conversation; the format-error message that
    ends the rollout is recorded (reproduced: it was dropped)."""
    two_blocks = bash("ls") + "\n" + bash("pwd")
    model = ScriptModel(["no block at all", two_blocks, "still nothing"])
    result, events, _ = run_agent(config, model)
    assert result.exit_status == "RepeatedFormatError"
    assert result.model_calls == 3 and result.format_errors == 3
    assert [m["role"] for m in result.messages] == ["system", "user"] + ["assistant", "user"] * 3
    errors = [m["content"] for m in result.messages if m["role"] == "user"][1:]
    assert len(errors) == 3
    assert "found 0 actions" in errors[0] and "found 2 actions" in errors[1] and "found 0" in errors[2]
    assert all(s.command is None and s.format_error for s in result.steps)
    assert "EXACTLY ONE action" in events[2]["observation"]


def test_2x_format_errors_leave_the_reply_out_and_zero_means_no_limit():
    """As mini-swe-agent 2.x: the rejected reply is not sent back (kept in the step), the error
    is a user message; max_consecutive_format_errors: 0 is no limit (reproduced: rejected)."""
    cfg = config_from_dict({**_v2_config().model_dump(), "agent": {"max_consecutive_format_errors": 0}})
    assert cfg.agent.max_consecutive_format_errors == 0
    mswea = "THOUGHT: x\n\n```mswea_bash_command\n{}\n```"
    model = ScriptModel(["none"] * 5 + [mswea.format("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")])
    result, _, _ = run_agent(cfg, model)
    assert result.exit_status == "Submitted" and result.format_errors == 5
    assert [m["role"] for m in result.messages] == ["system", "user"] + ["user"] * 5 + ["assistant"]
    assert model.seen[5] == result.messages[:7]
    assert result.steps[0].rejected_reply == {"role": "assistant", "content": "none"}


def test_format_error_count_resets_after_a_valid_action(config):
    model = ScriptModel(["none", "none", bash("true"), "none", "none", SUBMIT])
    result, _, _ = run_agent(config, model)
    assert result.exit_status == "Submitted"
    assert result.format_errors == 4 and result.model_calls == 6


def test_step_limit(config):
    config.agent.step_limit = 2
    result, _, _ = run_agent(config, ScriptModel([bash("ls")]))
    assert result.exit_status == "LimitsExceeded" and result.model_calls == 2
    assert result.messages[-1]["role"] == "user"  # the last observation, no invented exit message


def test_cost_limit(config):
    config.model.input_cost_per_token = 0.001
    config.model.output_cost_per_token = 0.002
    config.agent.cost_limit = 0.25  # 100 * 0.001 + 10 * 0.002 = 0.12 per call
    result, _, _ = run_agent(config, ScriptModel([bash("ls")], prompt_tokens=100, completion_tokens=10))
    assert result.exit_status == "LimitsExceeded"
    assert result.model_calls == 3
    assert result.cost == pytest.approx(0.36)


def test_zero_costs_never_hit_the_cost_limit(config):
    config.agent.step_limit = 4
    result, _, _ = run_agent(config, ScriptModel([bash("true")]))
    assert result.cost == 0 and result.model_calls == 4


def test_wall_time_limit(config):
    config.agent.wall_time_limit_seconds = 1
    result, _, _ = run_agent(config, ScriptModel([bash("sleep 0.4")]))
    assert result.exit_status == "TimeExceeded"
    assert 2 <= result.model_calls <= 4
    assert result.elapsed_s >= 1


def test_wall_time_limit_shortens_a_long_command(config):
    config.agent.wall_time_limit_seconds = 1.5
    config.environment.timeout = 60
    result, _, _ = run_agent(config, ScriptModel([bash("sleep 30")]))
    assert result.exit_status == "TimeExceeded"
    assert result.steps[0].timed_out
    assert result.elapsed_s < 10


def test_timeout_template(config):
    """1.x layout: a timeout renders 1.x's timeout_template."""
    config.environment.timeout = 0.5
    model = ScriptModel([bash("echo partial; sleep 5"), SUBMIT])
    result, _, _ = run_agent(config, model)
    assert result.exit_status == "Submitted"
    obs = result.messages[3]["content"]
    assert "timed out" in obs and "<command>echo partial; sleep 5</command>" in obs and "partial" in obs
    assert result.steps[0].timed_out and result.steps[0].exec_time_s < 3


def test_2x_timeout_is_an_observation_with_exception_info():
    """Reproduced: timeouts used a 1.x timeout_template with returncode -9; 2.x renders them
    through observation_template, returncode -1 and exception_info."""
    cfg = _v2_config()
    cfg.environment.timeout = 1
    mswea = "THOUGHT: x\n\n```mswea_bash_command\n{}\n```"
    model = ScriptModel(
        [mswea.format("echo partial; sleep 5"), mswea.format("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")]
    )
    result, _, _ = run_agent(cfg, model)
    assert result.messages[3]["content"] == (
        "<exception>An error occurred while executing the command: Command 'echo partial; sleep 5' "
        "timed out after 1 seconds</exception>\n<returncode>-1</returncode>\n<output>\npartial\n</output>"
    )
    assert result.steps[0].timed_out and result.steps[0].returncode == -1


def test_templates_get_the_raw_output():
    """Reproduced: outputs were cut to head+tail before the template rendered, so a 2.x
    template that truncates itself said "elided_chars": 36 for 200,001 characters (mini-swe-agent:
    190,001)."""
    cfg = _v2_config()
    cfg.model.observation_template = (
        '{"elided_chars": {{ output.output | length - 10000 }}, "head": {{ output.output[:3] | tojson }}}'
    )
    mswea = "THOUGHT: x\n\n```mswea_bash_command\n{}\n```"
    model = ScriptModel(
        [
            mswea.format("python3 -c \"print('x' * 200000)\""),
            mswea.format("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"),
        ]
    )
    result, events, _ = run_agent(cfg, model)
    assert result.messages[3]["content"] == '{"elided_chars": 190001, "head": "xxx"}'
    assert not result.steps[0].output_truncated


def test_only_a_flood_past_the_memory_bound_is_cut_and_flagged():
    from agentdata_tui.sandbox.local import OUTPUT_HEAD, OUTPUT_TAIL

    cfg = _v2_config()
    cfg.model.observation_template = "{{ output.output | length }} {{ output.output[-6:] | tojson }}"
    mswea = "THOUGHT: x\n\n```mswea_bash_command\n{}\n```"
    n = OUTPUT_HEAD + OUTPUT_TAIL + 500_000
    model = ScriptModel(
        [
            mswea.format(f"python3 -c \"print('y' * {n} + 'END')\""),
            mswea.format("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"),
        ]
    )
    result, events, _ = run_agent(cfg, model)
    length, tail = result.messages[3]["content"].split(" ")
    assert OUTPUT_HEAD + OUTPUT_TAIL <= int(length) < OUTPUT_HEAD + OUTPUT_TAIL + 100
    assert tail == '"yyEND\\n"'
    assert result.steps[0].output_truncated
    assert len(events[0]["observation"]) < 4100  # the step event's own cut, in characters


def test_reasoning_content_kept_on_assistant_messages(config):
    reply = ModelResponse(
        content=SUBMIT, reasoning_content="I should submit.", prompt_tokens=3, completion_tokens=2
    )
    result, _, _ = run_agent(config, ScriptModel([reply]))
    assert result.messages[-1] == {
        "role": "assistant",
        "content": SUBMIT,
        "reasoning_content": "I should submit.",
    }


def test_tool_call_mode(config):
    config.agent.action_format = "tool_call"

    def call(cid: str, command: str) -> dict[str, Any]:
        import json

        return {
            "id": cid,
            "type": "function",
            "function": {"name": "bash", "arguments": json.dumps({"command": command})},
        }

    replies = [
        ModelResponse(content="Look first.", tool_calls=[call("c1", "echo one"), call("c2", "echo two")]),
        ModelResponse(content="No tool call here."),
        ModelResponse(
            content="",
            tool_calls=[{"id": "c3", "type": "function", "function": {"name": "python", "arguments": "{}"}}],
        ),
        ModelResponse(
            content="Submit.", tool_calls=[call("c4", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")]
        ),
    ]
    model = ScriptModel(replies)
    result, events, _ = run_agent(config, model)
    assert result.exit_status == "Submitted"
    assert model.tools[0][0]["function"]["name"] == "bash"
    assert model.tools[0][0]["function"]["parameters"]["required"] == ["command"]
    m = result.messages
    assert [x["role"] for x in m] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
        "user",
        "assistant",
    ]
    assert m[2]["tool_calls"][0]["id"] == "c1"
    assert m[3]["tool_call_id"] == "c1" and "one" in m[3]["content"]
    assert m[4]["tool_call_id"] == "c2" and "two" in m[4]["content"]
    assert "found 0 actions" in m[5]["content"]  # the bundled config's format-error template
    assert "found 0 actions" in m[6]["content"]  # 2.x: the rejected reply is left out
    assert result.steps[2].rejected_reply["tool_calls"][0]["id"] == "c3"
    assert result.steps[0].command == "echo one\necho two"
    assert result.format_errors == 2
    assert events[0]["command"] == "echo one\necho two"


def test_unknown_tool_renders_2x_format_error_template():
    """Reproduced: action_format tool_call + a reply calling an unknown tool failed with
    "UserError: 'has_tool_calls' is undefined" (2.x's template uses it)."""
    cfg = _v2_config()
    cfg.model.model_class = "litellm"  # tool calls
    cfg.model.format_error_template = "{% if finish_reason == 'tool_calls' and not has_tool_calls %}cut{% else %}{{error}}|{{actions|length}}{% endif %}"
    call = {"id": "u1", "type": "function", "function": {"name": "python", "arguments": "{}"}}
    submit = {
        "id": "s1",
        "type": "function",
        "function": {
            "name": "bash",
            "arguments": '{"command": "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"}',
        },
    }
    model = ScriptModel(
        [
            ModelResponse(content="", tool_calls=[call], finish_reason="tool_calls"),
            ModelResponse(content="", finish_reason="tool_calls"),
            ModelResponse(content="", tool_calls=[submit], finish_reason="tool_calls"),
        ]
    )
    result, _, _ = run_agent(cfg, model)
    assert result.exit_status == "Submitted"
    assert (
        result.messages[2]["content"]
        == "Unknown tool 'python'.Missing 'command' argument in bash tool call.|0"
    )
    assert result.messages[3]["content"] == "cut"


def _v1_config() -> Config:
    return config_from_dict(
        {
            "agent": {
                "system_template": "You run on {{system}} {{machine}}; limit {{step_limit}} steps.",
                "instance_template": "Task: {{task}}\nRepo: {{repo_name}} / {{instance.repo_name}} ({{instance.instance_id}})",
                "action_observation_template": "rc={{output.returncode}}{% if output.exception_info %} exc{% endif %}\n{{output.output}}",
                "format_error_template": "Need one action, got {{actions|length}}.",
                "timeout_template": "TIMEOUT {{action['action']}}: {{output}}",
                "step_limit": 5,
            },
            "environment": {"timeout": 0.5, "env": {"PAGER": "cat"}},
            "model": {"model_name": "m", "model_kwargs": {"drop_params": True}},
        }
    )


def _v2_config() -> Config:
    return config_from_dict(
        {
            "agent": {
                "system_template": "sys",
                "instance_template": "Please solve: {{task}} (calls so far {{n_model_calls}}, cost {{model_cost}})",
                "step_limit": 0,
                "cost_limit": 3.0,
            },
            "environment": {"cwd": "", "timeout": 30, "env": {}},
            "model": {
                "model_name": "m",
                "model_class": "litellm_textbased",
                "observation_template": "{% if output.exception_info %}<exception>{{output.exception_info}}</exception>\n{% endif %}<returncode>{{output.returncode}}</returncode>\n<output>\n{{output.output}}</output>",
                "format_error_template": "Format error: {{error}}",
                "action_regex": "```mswea_bash_command\\s*\\n(.*?)\\n```",
            },
        }
    )


def test_mini_swe_agent_1x_config_renders():
    cfg = _v1_config()
    model = ScriptModel(["nothing", bash("echo hi; sleep 3"), bash("echo out; exit 3"), SUBMIT])
    result, _, _ = run_agent(cfg, model, instance(repo_name="demo/repo"))
    m = result.messages
    assert m[0]["content"].startswith("You run on ") and "limit 5 steps" in m[0]["content"]
    assert m[1]["content"] == "Task: Fix the bug in demo-1.\nRepo: demo/repo / demo/repo (demo-1)"
    assert m[3]["content"] == "Need one action, got 0."
    assert m[5]["content"].startswith("TIMEOUT echo hi; sleep 3: hi")
    assert m[7]["content"] == "rc=3\nout\n"
    assert result.exit_status == "Submitted"


def test_mini_swe_agent_2x_config_renders():
    cfg = _v2_config()
    mswea = "THOUGHT: x\n\n```mswea_bash_command\n{}\n```"
    model = ScriptModel(
        [bash("ls"), mswea.format("echo two"), mswea.format("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")]
    )
    result, _, _ = run_agent(cfg, model)
    m = result.messages
    assert m[1]["content"] == "Please solve: Fix the bug in demo-1. (calls so far 0, cost 0.0)"
    # ```bash is not 2.x's block; 2.x leaves the rejected reply out of the conversation
    assert m[2] == {"role": "user", "content": "Format error: Expected exactly 1 action, found 0."}
    assert m[4]["content"] == "<returncode>0</returncode>\n<output>\ntwo\n</output>"
    assert result.exit_status == "Submitted"


@pytest.mark.parametrize(
    ("section", "key", "source"),
    [
        ("agent", "instance_template", "Task {{no_such_var}}"),
        ("agent", "system_template", "{% if %}"),
        ("model", "observation_template", "{{output.nope}}"),
        ("agent", "action_observation_template", "{{output.returncode.nope}}"),
    ],
)
def test_template_errors_name_the_template(section, key, source):
    cfg = load_config()
    setattr(getattr(cfg, section), key, source)
    cfg.model.action_regex = DEFAULT_ACTION_REGEX  # (a model: template alone means 2.x's block name)
    with pytest.raises(UserError, match=f"template {section}.{key}"):
        run_agent(cfg, ScriptModel([bash("ls"), SUBMIT]))


def test_bad_action_regex_is_a_user_error(config):
    config.model.action_regex = "```(bash"
    with pytest.raises(UserError, match="action_regex"):
        run_agent(config, ScriptModel([SUBMIT]))


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ModelError("model server failed after 6 attempts: HTTP 500"), "ModelError"),
        (ContextLengthExceeded("context length exceeded: too long"), "ContextLengthExceeded"),
    ],
)
def test_model_errors_become_exit_statuses(config, error, status):
    result, events, _ = run_agent(config, ScriptModel([bash("true"), error]))
    assert result.exit_status == status
    assert result.error == str(error)
    # model_calls counts the requests made, the failed one too; steps only the answered ones
    assert result.model_calls == 2 and len(result.steps) == 1 and len(events) == 1


def test_a_failed_first_call_is_counted(config):
    result, events, _ = run_agent(config, ScriptModel([ModelError("model server failed: HTTP 500")]))
    assert result.exit_status == "ModelError"
    assert result.model_calls == 1 and result.steps == [] and events == []
    assert [m["role"] for m in result.messages] == ["system", "user"]


class BrokenSandbox:
    def start(self) -> None:
        pass

    def execute(self, command: str, timeout: float | None = None) -> ExecResult:
        if "crash" in command:
            raise SandboxError("container vanished")
        if "bug" in command:
            raise RuntimeError("bug in a sandbox class")
        return ExecResult(output="ok\n", returncode=0, exec_time_s=0.001)

    def diff(self) -> tuple[str, bool]:
        return "", False

    def close(self) -> None:
        pass


def test_sandbox_error_becomes_exit_status(config):
    result, events, _ = run_agent(config, ScriptModel([bash("true"), bash("crash")]), sandbox=BrokenSandbox())
    assert result.exit_status == "SandboxError" and result.error == "container vanished"
    assert result.steps[-1].command == "crash" and result.steps[-1].returncode is None
    assert "container vanished" in events[-1]["observation"]


def test_other_exceptions_propagate(config):
    with pytest.raises(RuntimeError, match="bug in a sandbox class"):
        run_agent(config, ScriptModel([bash("bug")]), sandbox=BrokenSandbox())


def test_should_stop_cancels_at_a_step_boundary(config):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    model = ScriptModel([bash("true")])
    with pytest.raises(RolloutCancelled):
        run_agent(config, model, sandbox=BrokenSandbox(), should_stop=should_stop)
    assert len(model.seen) == 2


def test_model_error_during_a_stop_is_a_cancellation(config):
    stopping = {"now": False}

    class StoppingModel(ScriptModel):
        def query(self, messages, **kw):
            stopping["now"] = True
            raise ModelError("model client closed")

    with pytest.raises(RolloutCancelled):
        run_agent(config, StoppingModel([]), sandbox=BrokenSandbox(), should_stop=lambda: stopping["now"])


def test_validate_templates_reports_before_a_run():
    from agentdata_tui.agent.templates import validate_templates

    cfg = load_config()
    validate_templates(cfg, instance().to_dict())
    cfg.agent.instance_template = "{{task}} {{missing}}"
    validate_templates(cfg)  # compiles: undefined names only show when rendering
    with pytest.raises(UserError, match="agent.instance_template.*missing"):
        validate_templates(cfg, instance().to_dict())
    cfg.agent.timeout_template = "{% for %}"
    with pytest.raises(UserError, match="template agent.timeout_template"):
        validate_templates(cfg)
    cfg = load_config()
    cfg.agent.action_regex = "(("
    with pytest.raises(UserError, match="action_regex"):
        validate_templates(cfg)


def test_machine_variables_win_over_instance_fields(config):
    import platform

    config.agent.system_template = "{{version}} | {{instance.version}} | {{repo}} | {{task}}"
    inst = instance(version="3.0", repo="astropy/astropy", task="not the task")
    result, _, _ = run_agent(config, ScriptModel([SUBMIT]), inst)
    assert (
        result.messages[0]["content"]
        == f"{platform.uname().version} | 3.0 | astropy/astropy | Fix the bug in demo-1."
    )


def test_default_action_regex_follows_the_config_layout():
    from agentdata_tui.config import MSWEA2_ACTION_REGEX

    assert load_config().action_regex == DEFAULT_ACTION_REGEX  # 1.x layout (bundled)
    assert config_from_dict({"model": {"observation_template": "x"}}).action_regex == MSWEA2_ACTION_REGEX
    explicit = config_from_dict({"model": {"observation_template": "x"}, "agent": {"action_regex": "A(.*)"}})
    assert explicit.action_regex == "A(.*)"


def test_templates_get_mini_swe_agent_2_variables_but_never_a_key(monkeypatch):
    """The variables mini-swe-agent 2.4 merges (config fields, uname incl. node, environment
    variables, counters) are there; the environment variables are the sandbox's scrubbed ones."""
    import platform

    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-in-a-prompt")
    cfg = _v2_config()
    cfg.environment.env = {"PAGER": "cat"}
    cfg.model.model_kwargs = {
        "api_key": "sk-config-key",
        "temperature": 0.5,
        "extra_headers": {"Authorization": "Bearer sk-header-key"},
    }
    cfg.agent.instance_template = (
        "{{task}}|{{node}}|{{PAGER}}|{{TERM}}|{{timeout}}|{{step_limit}}|{{model_name}}|{{elapsed_seconds}}"
        "|{{model_kwargs}}|{{cwd}}|{{max_consecutive_format_errors}}"
    )
    model = ScriptModel(
        ["THOUGHT: x\n\n```mswea_bash_command\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"]
    )
    result, _, _ = run_agent(cfg, model)
    assert result.messages[1]["content"] == (
        f"Fix the bug in demo-1.|{platform.uname().node}|cat|dumb|30|0|m|0|{{'temperature': 0.5}}||3"
    )
    cfg.agent.instance_template = "{{OPENAI_API_KEY}}"
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        run_agent(cfg, ScriptModel([SUBMIT]))


def test_a_template_is_compiled_once_however_many_rollouts_start_together(monkeypatch):
    """A thousand rollouts starting at once each compiled the same system and instance templates
    (seconds of the runner's one core before the first model calls went out): the first compiles,
    the others wait for it."""
    import threading

    from agentdata_tui.agent import templates

    n = 16
    arrived = 0
    cond = threading.Condition()
    compiles: list[str] = []
    real = templates._ENV.from_string

    def slow_compile(source, *a, **kw):
        compiles.append(source)
        with cond:  # hold the compile until every thread has asked for the template
            assert cond.wait_for(lambda: arrived == n, 10)
        return real(source, *a, **kw)

    monkeypatch.setattr(templates._ENV, "from_string", slow_compile)
    source = "Task {{ task }} (compiled once) " + "x" * 10
    results: list[str] = []

    def rollout(i: int) -> None:
        nonlocal arrived
        with cond:
            arrived += 1
            cond.notify_all()
        results.append(templates.render("agent.instance_template", source, {"task": str(i)}))

    threads = [threading.Thread(target=rollout, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(compiles) == 1
    assert sorted(results) == sorted(f"Task {i} (compiled once) " + "x" * 10 for i in range(n))
