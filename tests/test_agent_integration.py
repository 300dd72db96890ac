"""Agent loop + model client + local sandbox against the loopback model server, end to end."""

from __future__ import annotations

import json
import logging

from servers.model_server import ModelServer, ScriptedResponder

from agentdata_tui.agent.loop import Agent
from agentdata_tui.config import load_config
from agentdata_tui.dataset import Instance
from agentdata_tui.interfaces import RolloutContext
from agentdata_tui.model.client import OpenAIModel
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox.local import LocalSandbox

KEY = "sk-integration-SECRET-42"


def rollout(server: ModelServer, config, inst: Instance):
    model = OpenAIModel(server.base_url, KEY, "test-model", config.model, temperature=0.3, max_tokens=64)
    model.backoff_base = 0.01
    sandbox = LocalSandbox(inst, config.environment, context=SandboxContext())
    sandbox.start()
    events: list[dict] = []
    try:
        result = Agent(
            config,
            model,
            sandbox,
            instance=inst,
            context=RolloutContext(inst.instance_id),
            on_step=events.append,
        ).run()
        diff = sandbox.diff()[0]
    finally:
        sandbox.close()
        model.close()
    return result, events, diff


def test_text_mode_rollout_over_http_with_faults(caplog):
    caplog.set_level(logging.DEBUG)
    script = [
        "THOUGHT: create the file.\n\n```bash\nprintf 'fixed\\n' > answer.txt && cat answer.txt\n```",
        {
            "content": "```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```",
            "reasoning_content": "All done.",
        },
    ]
    config = load_config()
    inst = Instance(instance_id="t-7", problem_statement="Write answer.txt for t-7.")
    with ModelServer(ScriptedResponder({"t-7": script})) as server:
        server.add_faults(("status", 429, {"Retry-After": "0"}), ("status", 500))
        result, events, diff = rollout(server, config, inst)
        requests = server.chat_requests()
    assert result.exit_status == "Submitted" and result.model_calls == 2
    assert len(requests) == 4  # two faults retried, then two answers
    last = requests[-1].body
    assert last["messages"] == result.messages[:4]
    assert last["temperature"] == 0.3 and last["max_tokens"] == 64 and "drop_params" not in last
    assert result.messages[-1]["reasoning_content"] == "All done."
    assert "fixed" in result.messages[3]["content"]
    assert "+fixed" in diff
    assert result.steps[0].prompt_tokens > 0 and result.steps[0].model_latency_s > 0
    assert events[0]["command"].startswith("printf")
    dumped = json.dumps([result.messages, [s.model_dump() for s in result.steps], events])
    assert KEY not in dumped and KEY not in caplog.text


def test_tool_call_mode_rollout_over_http():
    config = load_config()
    config.agent.action_format = "tool_call"
    script = [
        "```bash\necho 42 > n.txt && echo stored\n```",
        "```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```",
    ]
    inst = Instance(instance_id="tool-1", problem_statement="tool-1: store 42.")
    with ModelServer(ScriptedResponder({"tool-1": script}, tool_call=True)) as server:
        result, _, diff = rollout(server, config, inst)
        requests = server.chat_requests()
    assert result.exit_status == "Submitted"
    assert requests[0].body["tools"][0]["function"]["name"] == "bash"
    roles = [m["role"] for m in result.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert result.messages[2]["tool_calls"][0]["id"] == "call_1"
    assert result.messages[3] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": result.messages[3]["content"],
    }
    assert "stored" in result.messages[3]["content"]
    assert requests[1].body["messages"][3]["tool_call_id"] == "call_1"
    assert "+42" in diff


def test_context_length_and_dead_server_end_rollouts_with_their_status():
    config = load_config()
    config.model.max_retries = 1
    script = ["```bash\necho one\n```", "```bash\necho two\n```"]
    inst = Instance(instance_id="ctx-1", problem_statement="ctx-1")
    with ModelServer(ScriptedResponder({"ctx-1": script})) as server:
        server.add_faults(("delay", 0), ("context_length",))  # the 2nd call is too long
        result, events, _ = rollout(server, config, inst)
        assert result.exit_status == "ContextLengthExceeded" and "maximum context length" in result.error
        # the refused 2nd call was made: model_calls counts it, steps hold the answered one
        assert result.model_calls == 2 and len(events) == 1 and len(result.steps) == 1
        assert [m["role"] for m in result.messages] == ["system", "user", "assistant", "user"]

        server.add_faults(("delay", 0), ("status", 503), ("status", 503))
        result, _, _ = rollout(server, config, inst)
        assert result.exit_status == "ModelError" and "HTTP 503" in result.error
        assert result.model_calls == 2
