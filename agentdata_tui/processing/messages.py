"""Reading messages the way every export needs them: content as text, tool calls in one
fixed shape, a leading ``<think>`` block split off, the action and return code of a turn."""

from __future__ import annotations

import json
import re
from typing import Any

THINK_RE = re.compile(r"\A\s*<think>(.*?)</think>\s*", re.DOTALL)
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
