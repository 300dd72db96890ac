"""Waiting helpers for Pilot tests: conditions with a timeout, never fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot


async def wait_until(
    pilot: Pilot, condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def index_done(pilot: Pilot) -> None:
    """The browser on the current screen has indexed its input and shown the rows."""
    await pilot.app.workers.wait_for_complete()
    await wait_until(
        pilot, lambda: pilot.app.screen.index is not None and pilot.app.screen.index.complete, what="index"
    )
    await pilot.pause()


async def dashboard_caught_up(pilot: Pilot, finished: bool = False, timeout: float = 20.0) -> None:
    screen = pilot.app.screen

    def ready() -> bool:
        state = screen.state
        if state is None or not state.events_seen or screen.painted_events != state.events_seen:
            return False
        if screen.rewrap_pending:  # the conversation is about to be written again at its new width
            return False
        log = screen.query_one("#live-log")
        if log.lines and log.scroll_y < log.max_scroll_y:  # it follows the newest line: not there yet
            return False
        return state.run_finished is not None if finished else True

    await wait_until(pilot, ready, timeout=timeout, what="the dashboard to paint every event")
    await pilot.pause()


def run_async(fn):
    """Run an ``async def`` test with asyncio (no pytest async plugin is a dependency)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
