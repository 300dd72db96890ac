"""A pool of threads for the run's background work (sandbox starts and closes, gradings).

Why not ``concurrent.futures.ThreadPoolExecutor``: it starts a thread inside ``submit``, under a
lock that every executor of the process shares, and waits there until the new thread has run.
With hundreds of busy threads a thread's first run can be a second away, so while any one pool
grew, every other pool's ``submit`` waited: a rollout handing its sandbox over to be closed
waited 0.2 s on average (1.2 s at most) at 64 workers, on its critical path. Here ``submit``
only appends to this pool's own queue and, when no thread is idle, starts one without waiting
for it. Nothing is returned: the callers never needed a future.
"""

from __future__ import annotations

import _thread
import logging
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("agentdata_tui.runner")


class WorkPool:
    """Runs submitted calls in order on at most ``max_workers`` threads, started on demand and
    kept for the pool's life. A call's exception is logged, never lost silently or raised
    elsewhere. After :meth:`shutdown` a submit raises RuntimeError (as the executor did)."""

    def __init__(self, max_workers: int, name: str = "pool") -> None:
        self.max_workers = max(1, int(max_workers))
        self.name = name
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads = 0  # started, not yet ended
        self._idle = 0  # waiting for work and not already woken for an item
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        with self._cond:
            if self._shutdown:
                raise RuntimeError(f"{self.name}: the pool is shut down")
            self._queue.append((fn, args, kwargs))
            if self._idle:
                self._idle -= 1  # this one is woken for the item: not counted idle twice
                self._cond.notify()
                return
            if self._threads >= self.max_workers:
                return  # a busy thread takes it next
            self._threads += 1
        try:
            # Not threading.Thread: its start() waits for the new thread's first run.
            _thread.start_new_thread(self._run, ())
        except RuntimeError:  # no thread can be started now: the ones there take the item
            with self._cond:
                self._threads -= 1
                if self._threads == 0:
                    self._queue.pop()
                    raise

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._shutdown:
                        self._threads -= 1
                        self._cond.notify_all()  # a waiting shutdown counts the threads
                        return
                    self._idle += 1
                    self._cond.wait()
                fn, args, kwargs = self._queue.popleft()
            try:
                fn(*args, **kwargs)
            except BaseException:  # noqa: BLE001 - a background call must never end the thread silently
                log.error("%s: a background call failed:\n%s", self.name, traceback.format_exc())
            del fn, args, kwargs

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits; queued calls still run unless ``cancel_futures``; ``wait``: return
        once every thread has ended."""
        with self._cond:
            self._shutdown = True
            if cancel_futures:
                self._queue.clear()
            self._idle = 0
            self._cond.notify_all()
            if wait:
                while self._threads:
                    self._cond.wait()

    @property
    def pending(self) -> int:
        """Calls queued and not yet taken by a thread."""
        with self._cond:
            return len(self._queue)
