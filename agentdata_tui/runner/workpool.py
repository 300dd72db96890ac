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
    elsewhere. After :meth:`shutdown` a submit raises RuntimeError (as the executor did).

    ``idle_workers``: calls given to :meth:`submit_idle` run only while no :meth:`submit` call is
    waiting, at most that many at a time (work that may wait, behind work that may not)."""

    def __init__(self, max_workers: int, name: str = "pool", *, idle_workers: int = 0) -> None:
        self.max_workers = max(1, int(max_workers))
        self.idle_workers = min(self.max_workers, max(0, int(idle_workers)))
        self.name = name
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = deque()
        self._later: deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = deque()
        self._later_running = 0
        self._cond = threading.Condition(threading.Lock())
        self._threads = 0  # started, not yet ended
        self._idle = 0  # waiting for work and not already woken for an item
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        with self._cond:
            if self._shutdown:
                raise RuntimeError(f"{self.name}: the pool is shut down")
            self._queue.append((fn, args, kwargs))
            spawn = self._wake_or_grow()
        if spawn:
            self._spawn(self._queue)

    def submit_idle(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Queue a call that runs once no :meth:`submit` call waits (``idle_workers`` at a time)."""
        if not self.idle_workers:
            raise ValueError(f"{self.name}: no idle_workers")
        with self._cond:
            if self._shutdown:
                raise RuntimeError(f"{self.name}: the pool is shut down")
            self._later.append((fn, args, kwargs))
            spawn = not self._queue and self._later_running < self.idle_workers and self._wake_or_grow()
        if spawn:
            self._spawn(self._later)

    def idle_lane(self) -> _IdleLane:
        """This pool's :meth:`submit_idle`, as an object with a ``submit`` method."""
        return _IdleLane(self)

    def _wake_or_grow(self) -> bool:
        """Under the lock: wake an idle thread for a new item, or say one should be started."""
        if self._idle:
            self._idle -= 1  # this one is woken for the item: not counted idle twice
            self._cond.notify()
            return False
        if self._threads >= self.max_workers:
            return False  # a busy thread takes it next
        self._threads += 1
        return True

    def _spawn(self, queue: deque[Any]) -> None:
        try:
            # Not threading.Thread: its start() waits for the new thread's first run.
            _thread.start_new_thread(self._run, ())
        except RuntimeError:  # no thread can be started now: the ones there take the item
            with self._cond:
                self._threads -= 1
                if self._threads == 0:
                    queue.pop()
                    raise

    def _next(self) -> tuple[Any, bool] | None:
        """Under the lock: the next call and whether it is an idle one; None: end this thread."""
        while True:
            if self._queue:
                return self._queue.popleft(), False
            if self._later and self._later_running < self.idle_workers:
                self._later_running += 1
                return self._later.popleft(), True
            if self._shutdown and not self._later:
                self._threads -= 1
                self._cond.notify_all()  # a waiting shutdown counts the threads
                return None
            self._idle += 1
            self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                nxt = self._next()
            if nxt is None:
                return
            (fn, args, kwargs), later = nxt
            try:
                fn(*args, **kwargs)
            except BaseException:  # noqa: BLE001 - a background call must never end the thread silently
                log.error("%s: a background call failed:\n%s", self.name, traceback.format_exc())
            del fn, args, kwargs, nxt
            if later:
                with self._cond:
                    self._later_running -= 1
                    if self._shutdown:
                        self._cond.notify_all()  # the next idle call, or the threads' end
                    elif self._later and not self._queue and self._idle:
                        self._idle -= 1
                        self._cond.notify()  # the next idle call may go now

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits; queued calls still run unless ``cancel_futures``; ``wait``: return
        once every thread has ended."""
        with self._cond:
            self._shutdown = True
            if cancel_futures:
                self._queue.clear()
                self._later.clear()
            self._idle = 0
            self._cond.notify_all()
            if wait:
                while self._threads:
                    self._cond.wait()

    @property
    def pending(self) -> int:
        """Calls queued and not yet taken by a thread."""
        with self._cond:
            return len(self._queue) + len(self._later)


class _IdleLane:
    def __init__(self, pool: WorkPool) -> None:
        self._pool = pool

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        self._pool.submit_idle(fn, *args, **kwargs)
