"""Processing of training data: selection, statistics, exports, merging, display.

Textual-free on purpose: the CLI subcommands and the TUI browser call the same functions.
Everything streams over :func:`agentdata_tui.reader.open_input` so memory stays flat as
files grow.
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEY = re.compile(r"(?i)(^|[_-])(api[_-]?key|token|secret|password|authorization|auth)$")


def scrub_secrets(metadata: Any) -> Any:
    """A copy of ``metadata`` without secret-looking keys (``api_key``, ``eval_token``, ...).

    Metadata written by this tool never holds secrets, but files from elsewhere might; the
    outputs of processing must not carry them further. ``max_tokens`` and the like are kept.
    """
    if isinstance(metadata, dict):
        return {k: scrub_secrets(v) for k, v in metadata.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(metadata, list):
        return [scrub_secrets(v) for v in metadata]
    return metadata


def processing_record(command: str, input: Any, **fields: Any) -> dict[str, Any]:
    """One processing step (command, input, its criteria and other fields, tool version, time),
    as the CLI and the TUI both record it in ``metadata.processing``."""
    from datetime import datetime, timezone

    from agentdata_tui import __version__

    return {
        "command": command,
        "input": input,
        **fields,
        "tool_version": __version__,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def with_processing(metadata: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The input's metadata, kept (less secret-looking keys), plus this step appended to its
    processing history."""
    out = scrub_secrets(dict(metadata))
    history = out.get("processing")
    out["processing"] = [*(history if isinstance(history, list) else []), record]
    return out
