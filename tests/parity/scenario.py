"""One task, one scripted model, two agents: the pieces the parity test and the 1.x recorder share.

The script exercises what differs between agents: several tool calls in one reply, an unknown
tool, a reply without an action (with ``finish_reason`` "length" too), two actions where one is
allowed, a 200,001-character output (templates truncate it themselves), a timeout, a submission
whose command fails (not a submission), the fix (a reply with null content), the submission. Commands behave the same under
``sh -c`` (mini-swe-agent's local shell) and ``bash -c`` (ours) and print no paths.
"""

from __future__ import annotations

import json
import platform
import shutil
import threading
from pathlib import Path
from typing import Any

from servers.model_server import Reply

TASK = "calc.add(2, 3) returns -1 instead of 5: fix add in calc.py"
SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
FIX = "sed -i 's/a - b/a + b/' calc.py && cat calc.py"
# 200,001 characters. No python3: under swebench.yaml's BASH_ENV=/root/.bashrc a pyenv shim (a
# bash script) would source this machine's rc file in mini-swe-agent's run too.
LONG = "head -c 200000 /dev/zero | tr '\\0' x; echo"
SLOW = "sleep 30"
FAKE_SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT; exit 3"
TIMEOUT_S = 5  # generous: python3 may start slowly on a loaded machine


def make_repo(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (path / "README.md").write_text("calc\n")
    return path


def _call(cid: str, command: str, name: str = "bash") -> dict[str, Any]:
    args = json.dumps({"command": command}) if name == "bash" else json.dumps({"code": command})
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def tool_script() -> list[Reply]:
    t = "tool_calls"
    return [
        Reply(
            content="Look around first.",
            tool_calls=[_call("call_1a", "cat calc.py"), _call("call_1b", "ls")],
            finish_reason=t,
        ),
        Reply(
            content="Try python.", tool_calls=[_call("call_2", "print(1)", name="python")], finish_reason=t
        ),
        Reply(content="I think the bug is in add.", finish_reason="stop"),
        Reply(content="A big output.", tool_calls=[_call("call_4", LONG)], finish_reason=t),
        Reply(content="Wait a bit.", tool_calls=[_call("call_5", SLOW)], finish_reason=t),
        Reply(content="Submit too early.", tool_calls=[_call("call_6", FAKE_SUBMIT)], finish_reason=t),
        # vLLM and OpenAI send null content with a tool-call-only reply; litellm sends it back without one
        Reply(content=None, tool_calls=[_call("call_7", FIX)], finish_reason=t),
        Reply(content="Done.", tool_calls=[_call("call_8", SUBMIT)], finish_reason=t),
    ]


def text_script(block: str, slow: str = SLOW) -> list[Reply]:
    def act(thought: str, command: str) -> str:
        return f"THOUGHT: {thought}\n\n```{block}\n{command}\n```"

    return [
        Reply(content="THOUGHT: I was cut off before the", finish_reason="length"),
        Reply(content=act("look first.", "cat calc.py")),
        Reply(content="THOUGHT: no command in this one.", finish_reason="stop"),
        Reply(content=act("two at once.", "cat calc.py") + "\n\n" + act("and", "ls")),
        Reply(content=act("list.", "ls")),
        Reply(content=act("a big output.", LONG)),
        Reply(content=act("wait a bit.", slow)),
        Reply(content=act("submit too early.", FAKE_SUBMIT)),
        Reply(content=act("fix it.", FIX)),
        Reply(content=act("done.", SUBMIT)),
    ]


class Script:
    """Answers the n-th chat request of a session with the n-th reply (``reset`` between agents:
    a format error leaves no assistant message in 2.x, so the request alone cannot say where we are)."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.n = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.n = 0

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.n += 1
            return self.replies[min(self.n, len(self.replies)) - 1]


def wire_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parts of each message a model sees: role, content, tool calls (id, type, function name
    and arguments) and tool_call_id; keys that are absent or null are not a difference."""
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m.get("role"), "content": m.get("content")}
        if m.get("tool_calls"):
            item["tool_calls"] = [
                {
                    "id": c.get("id"),
                    "type": c.get("type"),
                    "function": {
                        "name": c["function"].get("name"),
                        "arguments": c["function"].get("arguments"),
                    },
                }
                for c in m["tool_calls"]
            ]
        if m.get("tool_call_id") is not None:
            item["tool_call_id"] = m["tool_call_id"]
        extra = {
            k
            for k, v in m.items()
            if v not in (None, [], {}) and k not in ("role", "content", "tool_calls", "tool_call_id")
        }
        if extra:
            item["other_keys"] = sorted(extra)
        out.append(item)
    return out


def request_params(body: dict[str, Any]) -> dict[str, Any]:
    """Everything a request carries but its messages and tools: model and sampling parameters."""
    return {k: v for k, v in body.items() if k not in ("messages", "tools")}


def machine_placeholders(text: str) -> str:
    """This machine's uname fields as placeholders (a recorded conversation must hold on another machine)."""
    u = platform.uname()
    line = f"{u.system} {u.release} {u.version} {u.machine}"
    return text.replace(line, "<SYSTEM> <RELEASE> <VERSION> <MACHINE>")
