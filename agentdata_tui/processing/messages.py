"""Reading messages the way every export needs them: content as text, tool calls in one
fixed shape, a leading ``<think>`` block split off, the action and return code of a turn."""

from __future__ import annotations

import json
import re
from typing import Any

THINK_RE = re.compile(r"\A\s*<think>(.*?)</think>\s*", re.DOTALL)
# A reply cut at max_tokens inside its reasoning: ``<think>`` opened, never closed.
UNCLOSED_THINK_RE = re.compile(r"\A\s*<think>(?!.*</think>)(.*)\Z", re.DOTALL)
ACTION_RE = re.compile(r"```(?:bash|sh|mswea_bash_command)[ \t]*\n(.*?)\n```", re.DOTALL)
RETURNCODE_RE = re.compile(r"<returncode>\s*(-?\d+)\s*</returncode>")


def text_of(content: Any) -> str:
    """Message content as a string: Arrow needs one type per column (no str/list mixtures)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return json.dumps(content, ensure_ascii=False)


def tool_calls_of(raw: Any) -> list[dict[str, Any]]:
    """Tool calls in one fixed shape: ``{id, type, function: {name, arguments (a JSON string)}}``."""
    out = []
    for tc in raw or []:
        if not isinstance(tc, dict):
            continue
        fn = tc.get("function") or {}
        args = fn.get("arguments", "")
        out.append(
            {
                "id": str(tc.get("id") or ""),
                "type": str(tc.get("type") or "function"),
                "function": {
                    "name": str(fn.get("name") or ""),
                    "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False),
                },
            }
        )
    return out


def split_think(content: str) -> tuple[str | None, str]:
    """``(reasoning, rest)`` when content starts with a closed ``<think>`` block, else ``(None, content)``."""
    m = THINK_RE.match(content)
    if m is None:
        return None, content
    return m.group(1).strip(), content[m.end() :]


def split_reasoning(content: str) -> tuple[str | None, str]:
    """Like :func:`split_think`, but an unclosed leading ``<think>`` (a reply cut at
    ``max_tokens`` while reasoning) is reasoning to the end: ``(reasoning, "")``."""
    reasoning, rest = split_think(content)
    if reasoning is not None:
        return reasoning, rest
    m = UNCLOSED_THINK_RE.match(content)
    if m is None:
        return None, content
    return m.group(1).strip(), ""


def parse_arguments(arguments: Any) -> Any:
    """Tool-call arguments as an object: a JSON string decoded once (an object stays as it is).
    A string that is not JSON stays a string (it is what the model produced)."""
    if not isinstance(arguments, str):
        return arguments if arguments is not None else {}
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments
