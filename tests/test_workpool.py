"""The run's background pools (runner/workpool.py): order, bound, shutdown, errors, and a submit
that never waits on another pool."""

from __future__ import annotations

import concurrent.futures.thread
import logging
import threading

import pytest

from agentdata_tui.runner.workpool import WorkPool


def test_calls_run_in_order_on_one_thread():
    pool = WorkPool(1, "t")
    seen: list[int] = []
    for i in range(50):
        pool.submit(seen.append, i)
    pool.shutdown(wait=True)
    assert seen == list(range(50))


def test_never_more_than_max_workers_at_once_and_all_run():
    pool = WorkPool(3, "t")
    lock = threading.Lock()
    running = peak = done = 0
    three_in = threading.Barrier(3, timeout=30)

    def job(i: int) -> None:
        nonlocal running, peak, done
        with lock:
            running += 1
            peak = max(peak, running)
        if i < 3:
            three_in.wait()  # the first three are all in at once: the pool did start 3 threads
        with lock:
            running -= 1
            done += 1

    for i in range(30):
        pool.submit(job, i)
    pool.shutdown(wait=True)
    assert done == 30 and peak == 3


def test_submit_does_not_wait_on_another_pool_growing():
    """ThreadPoolExecutor starts its threads under a lock all executors share and waits there for
    the new thread to run: a rollout handing its sandbox to be closed waited on whichever pool was
    growing (0.2 s on average at 64 workers, on the rollout's critical path)."""
    pool = WorkPool(2, "t")
    ran = threading.Event()
    returned = threading.Event()

    def submitter() -> None:
        pool.submit(ran.set)
        returned.set()

    # As if another executor were starting a thread right now.
    with concurrent.futures.thread._global_shutdown_lock:
        t = threading.Thread(target=submitter)
        t.start()
        assert returned.wait(10), "submit waited for a lock other pools hold"
        assert ran.wait(10)
    t.join(10)
    pool.shutdown()


def test_shutdown_runs_what_is_queued_unless_cancelled_then_refuses():
    gate = threading.Event()
    seen: list[int] = []
    pool = WorkPool(1, "t")
    pool.submit(gate.wait, 30)
    for i in range(5):
        pool.submit(seen.append, i)
    gate.set()
    pool.shutdown(wait=True)
    assert seen == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError):
        pool.submit(seen.append, 9)

    gate2 = threading.Event()
    entered = threading.Event()
    dropped: list[int] = []
    pool2 = WorkPool(1, "t")
    pool2.submit(lambda: (entered.set(), gate2.wait(30)))
    assert entered.wait(10)
    for i in range(5):
        pool2.submit(dropped.append, i)
    assert pool2.pending == 5
    closer = threading.Thread(target=pool2.shutdown, kwargs={"wait": True, "cancel_futures": True})
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "shutdown(wait=True) waits for the call in progress"
    gate2.set()
    closer.join(10)
    assert not closer.is_alive() and dropped == []


def test_a_failing_call_is_logged_and_the_pool_goes_on(caplog):
    pool = WorkPool(1, "evaluate")
    seen: list[int] = []

    def boom() -> None:
        raise ValueError("broken call")

    with caplog.at_level(logging.ERROR, logger="agentdata_tui.runner"):
        pool.submit(boom)
        pool.submit(seen.append, 1)
        pool.shutdown(wait=True)
    assert seen == [1]
    assert any(
        "evaluate: a background call failed" in r.message and "broken call" in r.message
        for r in caplog.records
    )


def test_idle_calls_wait_for_the_queue_and_keep_to_their_bound():
    """Evaluation sandboxes prepared ahead go behind every rollout's own sandbox start: an idle
    call runs only while no ordinary call waits, at most ``idle_workers`` at a time."""
    pool = WorkPool(4, "t", idle_workers=1)
    gate = threading.Event()
    order: list[str] = []
    lock = threading.Lock()
    running_idle = peak_idle = 0

    def ordinary(i: int) -> None:
        gate.wait(30)
        with lock:
            order.append(f"o{i}")

    def idle(i: int) -> None:
        nonlocal running_idle, peak_idle
        with lock:
            running_idle += 1
            peak_idle = max(peak_idle, running_idle)
            order.append(f"i{i}")
        with lock:
            running_idle -= 1

    for i in range(8):
        pool.submit(ordinary, i)  # four run (held by the gate), four wait
    lane = pool.idle_lane()
    for i in range(3):
        lane.submit(idle, i)
    gate.set()
    pool.shutdown(wait=True)
    firsts = [k for k, name in enumerate(order) if name.startswith("i")]
    assert len(order) == 11 and peak_idle == 1
    assert min(firsts) >= 4, f"an idle call ran while ordinary ones waited: {order}"
    assert [n for n in order if n.startswith("i")] == ["i0", "i1", "i2"]
    with pytest.raises(ValueError):
        WorkPool(2, "t").submit_idle(print)
