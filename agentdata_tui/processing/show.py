"""``show_example``: one example, readable (messages, diff, evaluation, metadata, steps).

The example is found by streaming to it: nothing but the wanted example (and, for a negative
index, a short ring buffer or a counting pass) is held in memory.
"""

from __future__ import annotations

import json
import os
from collections import deque
from typing import TYPE_CHECKING, Any

from agentdata_tui.errors import InputError
from agentdata_tui.reader import RawItem, open_input
from agentdata_tui.records import Example

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

RING_MAX = 64  # a negative index up to this deep is found in one pass
ROLE_STYLES = {
    "system": "magenta",
    "user": "green",
    "assistant": "cyan",
    "tool": "yellow",
}


def _count(n: int) -> str:
    return f"{n} example" + ("" if n == 1 else "s")


def find_example(path: str | os.PathLike[str], index: int, *, all_attempts: bool = False) -> Example:
    """The example at ``index`` (negative counts from the end), or an InputError naming the
    file and how many examples it has."""
    src = open_input(path, all_attempts=all_attempts)
    where = str(src.path)
    found: RawItem | None = None
    total = 0
    if index >= 0:
        for item in src.iter_raw():
            if total == index:
                found = item
                break
            total += 1
    elif -index <= RING_MAX:
        ring: deque[RawItem] = deque(maxlen=-index)
        for item in src.iter_raw():
            ring.append(item)
            total += 1
        if total >= -index:
            found = ring[0]
    else:
        total = sum(1 for _ in src.iter_raw())
        if total >= -index:
            wanted = total + index
            for i, item in enumerate(src.iter_raw()):
                if i == wanted:
                    found = item
                    break
    if found is None:
        raise InputError(
            f"index {index} is out of range: it has {_count(total)}"
            + (f" (valid: 0..{total - 1} or -{total}..-1)" if total else ""),
            where=where,
        )
    found.where = found.where or where
    return src.example_of(found)


def _json(obj: Any) -> RenderableType:
    from rich.json import JSON

    return JSON(json.dumps(obj, ensure_ascii=False, default=str))


def render_example(ex: Example, console: Console, *, title: str | None = None) -> None:
    """Print ``ex`` with Rich. Content is shown as plain text (never parsed as markup)."""
    from rich.panel import Panel
    from rich.rule import Rule
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    reward_style = "green" if ex.success else "red"
    for name, value in (
        ("instance", ex.instance_id),
        ("sample / attempt", f"{ex.sample_index} / {ex.attempt}"),
        ("exit status", str(ex.exit_status)),
        ("success", str(ex.success)),
        ("reward", f"{ex.reward:.4f}"),
        ("speedup", "–" if ex.speedup is None else f"{ex.speedup:.3f}×"),
        ("model calls", str(ex.model_calls)),
        ("messages", f"{len(ex.messages)} ({ex.assistant_steps} assistant)"),
    ):
        head.add_row(name, Text(value, style=reward_style if name in ("success", "reward") else ""))
    if ex.error:
        head.add_row("error", Text(ex.error, style="bold red"))
    console.print(Panel(head, title=title or ex.instance_id, title_align="left"))

    if ex.problem_statement:
        console.print(Panel(Text(ex.problem_statement), title="problem statement", title_align="left"))

    console.print(Rule("messages"))
    for i, msg in enumerate(ex.messages):
        role = str(msg.get("role", "?"))
        style = ROLE_STYLES.get(role, "white")
        body = Text()
        rc = msg.get("reasoning_content")
        if isinstance(rc, str) and rc.strip():
            body.append("reasoning: ", style="italic dim")
            body.append(rc.strip() + "\n\n", style="dim")
        content = msg.get("content")
        body.append(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))
        for tc in msg.get("tool_calls") or []:
            fn = (tc or {}).get("function") or {}
            body.append(
                f"\n→ tool call {fn.get('name', '?')}({fn.get('arguments', '')})", style="bold " + style
            )
        subtitle = f"tool_call_id {msg['tool_call_id']}" if msg.get("tool_call_id") else None
        console.print(
            Panel(
                body,
                title=f"[{style} bold]{i} {role}[/]",
                title_align="left",
                subtitle=subtitle,
                border_style=style,
            )
        )

    console.print(Rule("diff"))
    if ex.git_diff:
        console.print(Syntax(ex.git_diff, "diff", theme="ansi_dark", word_wrap=True))
    else:
        console.print(Text("(no diff)", style="dim"))

    console.print(Rule("evaluation"))
    console.print(_json(ex.evaluation_info) if ex.evaluation_info else Text("(none)", style="dim"))

    console.print(Rule("metadata"))
    console.print(_json(ex.metadata) if ex.metadata else Text("(none)", style="dim"))

    if ex.steps:
        console.print(Rule("steps"))
        table = Table(caption="model s: model latency; prompt / output: tokens")
        for col in (
            "#",
            "command",
            "rc",
            "exec s",
            "latency s",
            "prompt tok",
            "compl tok",
            "finish",
            "flags",
        ):
            table.add_column(col, justify="left" if col in ("command", "finish", "flags") else "right")
        for i, st in enumerate(ex.steps):
            flags = ", ".join(
                f for f, on in (("timeout", st.timed_out), ("truncated", st.output_truncated)) if on
            )
            cmd = (st.command or "").strip().replace("\n", " ⏎ ")
            table.add_row(
                str(i),
                Text(cmd[:80] + ("…" if len(cmd) > 80 else "")),
                "" if st.returncode is None else str(st.returncode),
                "" if st.exec_time_s is None else f"{st.exec_time_s:.2f}",
                "" if st.model_latency_s is None else f"{st.model_latency_s:.2f}",
                "" if st.prompt_tokens is None else str(st.prompt_tokens),
                "" if st.completion_tokens is None else str(st.completion_tokens),
                st.finish_reason or "",
                flags,
            )
        console.print(table)
