"""Rich renderables for conversations: fenced code and diffs highlighted, reasoning split out.

Shared by the browser's Conversation tab and the dashboard's live view, so a step looks the
same in both.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text

ROLE_STYLES = {
    "system": "bold magenta",
    "user": "bold cyan",
    "assistant": "bold green",
    "tool": "bold yellow",
}
THEME = "ansi_dark"
_FENCE = re.compile(r"```([\w+-]*)[ \t]*\n(.*?)(?:\n```|\Z)", re.DOTALL)
_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.DOTALL)
LONG_LINES = 25
LONG_CHARS = 3000


def split_reasoning(message: dict[str, Any]) -> tuple[str, str]:
    """(reasoning, content): ``reasoning_content`` or a leading ``<think>…</think>`` block."""
    content = message.get("content")
    if not isinstance(content, str):
        content = "" if content is None else json.dumps(content, ensure_ascii=False, indent=2)
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    if not isinstance(reasoning, str):
        reasoning = str(reasoning)
    if not reasoning:
        m = _THINK.match(content)
        if m:
            reasoning, content = m.group(1).strip(), content[m.end() :]
    return reasoning, content


def _lexer(lang: str, code: str) -> str:
    lang = lang.lower()
    if lang in ("diff", "patch") or code.startswith(("diff --git", "--- ", "@@ ")):
        return "diff"
    return {"sh": "bash", "shell": "bash", "": "text", "py": "python"}.get(lang, lang)


DIFF_STYLES = (
    ("+++", "bold"),
    ("---", "bold"),
    ("+", "green"),
    ("-", "red"),
    ("@@", "cyan"),
    ("diff ", "bold yellow"),
)


def diff_text(text: str) -> Text:
    """A diff coloured line by line: much cheaper than a lexer on large patches."""
    out = Text()
    for line in text.splitlines(keepends=True):
        style = next((st for prefix, st in DIFF_STYLES if line.startswith(prefix)), "")
        out.append(line, style=style)
    return out


def code(text: str, lexer: str) -> Text | Syntax:
    """Highlighted code. Shell commands and diffs get cheap styling (they are most of a
    trajectory and the browser must move to the next example fast); other languages a lexer."""
    if lexer == "diff":
        return diff_text(text)
    if lexer in ("bash", "text") or len(text) > 20_000:
        return Text(text, style="bold #87d7af" if lexer == "bash" else "")
    return Syntax(text, lexer, theme=THEME, word_wrap=True, background_color="default")


def render_content(text: str) -> RenderableType:
    """Plain text with fenced code blocks highlighted (bash, python, diff, ...)."""
    parts: list[RenderableType] = []
    pos = 0
    for m in _FENCE.finditer(text):
        before = text[pos : m.start()].strip("\n")
        if before:
            parts.append(Text(before))
        parts.append(code(m.group(2), _lexer(m.group(1), m.group(2))))
        pos = m.end()
    rest = text[pos:].strip("\n")
    if rest:
        parts.append(Text(rest))
    return Group(*parts) if parts else Text("(empty)", style="dim italic")


def render_tool_calls(tool_calls: Any) -> RenderableType:
    parts: list[RenderableType] = []
    for call in tool_calls or []:
        fn = (call or {}).get("function") or {}
        args = fn.get("arguments", "")
        try:
            parsed = json.loads(args) if isinstance(args, str) else args
        except ValueError:
            parsed = args
        if isinstance(parsed, dict) and isinstance(parsed.get("command"), str):
            parts.append(Text(f"⚙ {fn.get('name', 'tool')}", style="bold yellow"))
            parts.append(code(parsed["command"], "bash"))
        else:
            parts.append(Text(f"⚙ {fn.get('name', 'tool')}", style="bold yellow"))
            parts.append(code(json.dumps(parsed, ensure_ascii=False, indent=2), "json"))
    return Group(*parts)


def is_long(text: str) -> bool:
    return len(text) > LONG_CHARS or text.count("\n") >= LONG_LINES


def role_title(role: str, index: int, extra: str = "") -> Text:
    t = Text()
    t.append(f" {role.upper()} ", style=ROLE_STYLES.get(role, "bold") + " reverse")
    t.append(f"  message {index}", style="dim")
    if extra:
        t.append("  " + extra, style="dim italic")
    return t


def render_json(data: Any) -> Syntax:
    return code(json.dumps(data, ensure_ascii=False, indent=2, default=str), "json")
