"""Signals of a run (DESIGN §3): the first Ctrl+C / SIGTERM / SIGHUP stops gracefully, a second
Ctrl+C at once.

Graceful: no new rollouts; running ones are cancelled at their next step boundary and not
recorded (``--resume`` runs them again); the final JSON is written. At once: live sandboxes are
closed and the process exits 130 — ``examples.jsonl`` keeps every recorded attempt. The TUI's
dashboard stops a run by sending SIGTERM to the pid in ``run.json``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from agentdata_tui.runner.runner import Runner, _now_iso


@contextlib.contextmanager
def graceful_signals(runner: Runner, *, notify: Callable[[str], None] | None = None) -> Iterator[None]:
    """First SIGINT/SIGTERM/SIGHUP: graceful stop. A second SIGINT: stop at once (exit 130).

    Only the main thread may install handlers; elsewhere (tests driving a runner from a
    thread) this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    say = notify or _say
    hits = {"n": 0}

    def handler(signum: int, frame: Any) -> None:
        hits["n"] += 1
        name = signal.Signals(signum).name
        if hits["n"] == 1:
            say(
                f"{name}: stopping — no new rollouts, running ones end at their next step; "
                "the output is still written (Ctrl+C again to stop at once)"
            )
            runner.request_stop()
            return
        if signum == signal.SIGINT or hits["n"] > 2:
            say("stopping at once: recorded attempts are kept in examples.jsonl; --resume continues")
            runner.abort()
            with contextlib.suppress(Exception):
                data = runner.store.read_run_json()
                data.update(status="aborted", updated_at=_now_iso())
                runner.store.write_run_json(data)
            os._exit(130)

    # A signal the caller chose to ignore stays ignored: under nohup, SIGHUP must not stop the run.
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    old = {s: h for s, h in old.items() if h is not signal.SIG_IGN}
    for s in old:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _say(message: str) -> None:
    """One line on stderr without the stream's buffer lock: a handler may interrupt another one."""
    with contextlib.suppress(OSError):
        os.write(2, (message + "\n").encode("utf-8", "replace"))
