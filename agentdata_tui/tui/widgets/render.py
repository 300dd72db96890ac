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
# Control characters other than newline and tab: shown as \xNN instead of acting on the terminal
# (an ANSI colour code in a model's output must read as the bytes the model wrote).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
CONTROL_STYLE = "bold reverse magenta"
SUSPICIOUS_SPEEDUP = 10.0  # the evaluation flags speedups above this (speedup_flagged)
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
    if _CONTROL.search(text):
        return visible(text, style="bold #87d7af" if lexer == "bash" else "")
    if lexer in ("bash", "text") or len(text) > 20_000:
        return Text(text, style="bold #87d7af" if lexer == "bash" else "")
    return Syntax(text, lexer, theme=THEME, word_wrap=True, background_color="default")


def visible(text: str, style: str = "") -> Text:
    """``text`` as it is, control characters (escape codes, carriage returns) spelled out."""
    out = Text(style=style)
    pos = 0
    for m in _CONTROL.finditer(text):
        out.append(text[pos : m.start()])
        out.append(f"\\x{ord(m.group()):02x}", style=CONTROL_STYLE)
        pos = m.end()
    out.append(text[pos:])
    return out


def render_raw(message: dict[str, Any]) -> RenderableType:
    """One message verbatim: every key but the role, the content exactly as stored (fences,
    blank lines, trailing spaces), control characters spelled out."""
    parts: list[RenderableType] = []
    for key, value in message.items():
        if key == "role":
            continue
        parts.append(Text(f"{key}:", style="dim italic"))
        if isinstance(value, str):
            parts.append(visible(value) if value else Text('""', style="dim"))
        else:
            parts.append(visible(json.dumps(value, ensure_ascii=False, indent=2)))
    return Group(*parts) if parts else Text("(no fields)", style="dim italic")


def _plain(text: str) -> Text:
    return visible(text) if _CONTROL.search(text) else Text(text)


def render_content(text: str) -> RenderableType:
    """Plain text with fenced code blocks highlighted (bash, python, diff, ...)."""
    parts: list[RenderableType] = []
    pos = 0
    for m in _FENCE.finditer(text):
        before = text[pos : m.start()].strip("\n")
        if before:
            parts.append(_plain(before))
        parts.append(code(m.group(2), _lexer(m.group(1), m.group(2))))
        pos = m.end()
    rest = text[pos:].strip("\n")
    if rest:
        parts.append(_plain(rest))
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


def render_json(data: Any) -> Text | Syntax:
    return code(json.dumps(data, ensure_ascii=False, indent=2, default=str), "json")


def _is_output(value: Any) -> bool:
    return isinstance(value, str) and ("\n" in value or len(value) > 120)


def render_evaluation(data: dict[str, Any]) -> RenderableType:
    """Figures as ``key: value`` lines, and every output (a multi-line or long string at any
    depth, e.g. ``test_output``) as its own block of text, as a terminal showed it."""
    figures: list[RenderableType] = []
    outputs: list[RenderableType] = []

    def walk(value: Any, path: str, depth: int) -> None:
        pad = "  " * depth
        if isinstance(value, dict) and value:
            figures.append(Text(f"{pad}{path}:", style="bold"))
            for k, v in value.items():
                walk(v, str(k), depth + 1)
            return
        if _is_output(value):
            figures.append(Text(f"{pad}{path}: ", style="bold").append("(below)", style="dim italic"))
            outputs.append(Text(""))
            outputs.append(Text(f" {path} ", style="bold reverse"))
            outputs.append(visible(value))
            return
        shown = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
        line = Text(f"{pad}{path}: ", style="bold")
        line.append(visible(shown))
        figures.append(line)

    for key, value in data.items():
        walk(value, key, 0)
    return Group(*figures, *outputs)


def is_suspicious(speedup: float | None, flagged: bool | None = None) -> bool:
    """A speedup to review before training on it: flagged by the evaluation, or over 10×."""
    return bool(flagged) or (speedup is not None and speedup > SUSPICIOUS_SPEEDUP)


def speedup_cell(speedup: float | None, flagged: bool | None = None) -> Text:
    if speedup is None:
        return Text("–", justify="right")
    if is_suspicious(speedup, flagged):
        return Text(f"{speedup:.1f}× ⚠", style="bold magenta", justify="right")
    return Text(f"{speedup:.2f}×", justify="right")
