"""Messages the TUI's worker threads post to the screens (widgets are touched only on the UI thread)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from agentdata_tui.tui.checks import CheckResult
from agentdata_tui.tui.index import Row


class IndexBatch(Message):
    """New rows of the browser's index (posted while the file is being indexed)."""

    def __init__(self, rows: list[Row]) -> None:
        super().__init__()
        self.rows = rows


class IndexDone(Message):
    def __init__(self, total: int, error: str | None = None) -> None:
        super().__init__()
        self.total = total
        self.error = error


class EventsBatch(Message):
    """A batch of events read from ``events.jsonl``."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        super().__init__()
        self.events = events


class LogReset(Message):
    """``events.jsonl`` was replaced or truncated: the run started over."""


class RunProcessExited(Message):
    """The background run started from the launch screen has exited."""

    def __init__(self, returncode: int, log_tail: str) -> None:
        super().__init__()
        self.returncode = returncode
        self.log_tail = log_tail


class CheckDone(Message):
    def __init__(self, result: CheckResult) -> None:
        super().__init__()
        self.result = result


class ExportProgress(Message):
    """Only the latest count matters: the queue keeps the newest."""

    def __init__(self, count: int, total: int) -> None:
        super().__init__()
        self.count = count
        self.total = total

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExportProgress)


class ExportDone(Message):
    def __init__(self, path: str, count: int, error: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.count = count
        self.error = error


class StatsReady(Message):
    def __init__(self, stats: dict[str, Any] | None, error: str | None = None) -> None:
        super().__init__()
        self.stats = stats
        self.error = error


class PreflightDone(Message):
    """Start's server tests, all answered."""

    def __init__(self, results: list[CheckResult], settings: Any) -> None:
        super().__init__()
        self.results = results
        self.settings = settings  # the validated LaunchSettings to start with


class RunStarted(Message):
    """The run launched from the form wrote its ``run_started`` event: it is under way."""


class PreviewReady(Message):
    """What the SFT export would leave out of the examples shown (an ``SftReport``)."""

    def __init__(self, report: Any, error: str | None = None) -> None:
        super().__init__()
        self.report = report
        self.error = error


class ControlAnswered(Message):
    """The runner's answer to a dashboard key (pause, workers, cancel)."""

    def __init__(self, command: str, ok: bool, detail: str) -> None:
        super().__init__()
        self.command = command
        self.ok = ok
        self.detail = detail
