"""Parity with mini-swe-agent itself: replaying a real 2.x trajectory (its own config, its own
replies) through our loop must reproduce the conversation it recorded, message for message."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agentdata_tui.agent.loop import Agent
from agentdata_tui.config import MSWEA2_ACTION_REGEX, config_from_dict
from agentdata_tui.dataset import Instance
from agentdata_tui.interfaces import ModelResponse, RolloutContext
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox.local import LocalSandbox

SAMPLES = Path(__file__).resolve().parent / "data" / "mini-swe-agent"
UNAME = re.compile(r"<system_information>\n.*?\n</system_information>", re.DOTALL)
TIMING = re.compile(r"Ran (\d+) tests? in [0-9.]+s")


class Replay:
    name = "replay"

    def __init__(self, replies: list[ModelResponse]) -> None:
        self.replies = replies
        self.n = 0

    def query(self, messages, *, tools=None, context=None) -> ModelResponse:
        self.n += 1
        return self.replies[self.n - 1]


def normalise(text: str) -> str:
    return TIMING.sub(r"Ran \1 tests in Xs", UNAME.sub("<system_information/>", text))


def replay(
    name: str, tool_call: bool, tmp_path: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    traj = json.loads((SAMPLES / f"{name}.traj.json").read_text())
    raw = traj["info"]["config"]
    config = config_from_dict({k: raw[k] for k in ("agent", "environment", "model")})
    if tool_call:
        config.agent.action_format = "tool_call"  # mini-swe-agent picks it by model class
    # The recorded run's cwd (/workspace/r) was its own checkout; here the sandbox's copy is it
    # (an absolute cwd missing from the local sandbox is a SandboxError, never a stand-in).
    config.environment.cwd = ""
    recorded = [m for m in traj["messages"] if m["role"] != "exit"]
    replies = [
        ModelResponse(
            content=m["content"], tool_calls=m.get("tool_calls"), prompt_tokens=1, completion_tokens=1
        )
        for m in recorded
        if m["role"] == "assistant"
    ]
    task = re.search(r"Please solve this issue: (.*?)\n", recorded[1]["content"]).group(1)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    inst = Instance(instance_id=name, problem_statement=task)
    sandbox = LocalSandbox(inst, config.environment, context=SandboxContext(repo_dir=repo))
    sandbox.start()
    try:
        result = Agent(config, Replay(replies), sandbox, instance=inst, context=RolloutContext(name)).run()
    finally:
        sandbox.close()
    assert result.exit_status == traj["info"]["exit_status"]
    return result.messages, recorded, config.action_regex


@pytest.mark.parametrize(("name", "tool_call"), [("sample-text-solved", False), ("sample-tool-solved", True)])
def test_replayed_trajectory_matches_mini_swe_agent(name, tool_call, tmp_path):
    ours, theirs, regex = replay(name, tool_call, tmp_path)
    if not tool_call:
        assert regex == MSWEA2_ACTION_REGEX  # a 2.x config without action_regex: 2.x's block name
    assert [m["role"] for m in ours] == [m["role"] for m in theirs]
    for mine, recorded in zip(ours, theirs, strict=True):
        assert normalise(mine["content"]) == normalise(recorded["content"])
        assert mine.get("tool_call_id") == recorded.get("tool_call_id")
        assert mine.get("tool_calls") == recorded.get("tool_calls")
