"""The run's log: warnings on stderr, and with ``--log-file`` a line per rollout and every error.

Every record passes a filter that replaces the run's secrets, so a key that ends up in an
error message still never reaches the log.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from agentdata_tui.errors import UserError


class RedactFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        for s in self.secrets:
            msg = msg.replace(s, "***")
        record.msg, record.args = msg, None
        return True


class LogListener:
    """Writes a line per finished rollout to the run's log (``--log-file``)."""

    def __init__(self) -> None:
        self.log = logging.getLogger("agentdata_tui.runner")

    def run_started(self, total: int, pending: int, done_before: int) -> None:
        self.log.info("run started: %d pending of %d (%d already done)", pending, total, done_before)

    def rollout_finished(self, example, elapsed_s: float) -> None:
        from agentdata_tui.runner.progress import describe

        self.log.info("finished %s", describe(example, elapsed_s))

    def run_finished(self, counts: dict[str, Any], elapsed_s: float, stopped: bool) -> None:
        self.log.info("run %s after %.1fs: %s", "stopped" if stopped else "finished", elapsed_s, counts)


def setup_logging(log_file: str | None, secrets: list[str]) -> None:
    """Warnings and errors to stderr; with --log-file, everything (INFO) to that file too."""
    logger = logging.getLogger("agentdata_tui")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    err.addFilter(RedactFilter(secrets))
    logger.addHandler(err)
    if log_file:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"--log-file {log_file}: cannot open ({exc.strerror or exc})") from None
        fh.setFormatter(fmt)
        fh.addFilter(RedactFilter(secrets))
        logger.addHandler(fh)
