"""The model client fails safe (issue 9), against real loopback servers that misbehave: malformed
200s, a server trickling bytes, a graceful stop during a hung call or a Retry-After sleep, a
server restarting for 20 s in the middle of a run."""

from __future__ import annotations

import math
import threading
import time

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_runner import make_runner, scripts_for, write_dataset

from agentdata_tui.config import ModelConfig
from agentdata_tui.dataset import load_dataset
from agentdata_tui.interfaces import ModelError
from agentdata_tui.model.client import OpenAIModel
from agentdata_tui.reader import open_input

KEY = "sk-robust-SECRET-77"
MESSAGES = [{"role": "user", "content": "fix task-1"}]
GOOD = {"choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}


def make_model(server: ModelServer, **cfg) -> OpenAIModel:
    model = OpenAIModel(server.base_url, KEY, "test-model", ModelConfig(**cfg))
    model.backoff_base = 0.01
    return model


MALFORMED = [
    ({"choices": [{"message": "hello"}]}, "message is not an object"),
    ({"choices": [{"message": {"content": "x"}}], "usage": "lots"}, "usage is not an object"),
    ({"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "12"}}, "prompt_tokens"),
    (
        {"choices": [{"message": {"content": "x"}}], "usage": {"completion_tokens": math.nan}},
        "completion_tokens",
    ),
    ({"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": True}}, "prompt_tokens"),
    ({"choices": [{"message": {"content": 5}}]}, "content"),
    ({"choices": [{"message": {"content": "x", "tool_calls": [{"function": "bash"}]}}]}, "tool call"),
    ({"choices": ["nope"]}, "choices[0]"),
    ([1, 2], "JSON list"),
]


@pytest.mark.parametrize(("payload", "why"), MALFORMED, ids=[w for _, w in MALFORMED])
def test_a_malformed_200_is_retried_then_one_line_model_error(payload, why):
    with ModelServer() as server:
        server.add_faults(("body", 200, payload))  # once: the retry gets a good answer
        assert make_model(server).query(MESSAGES).content.startswith("THOUGHT")
        server.add_faults(*[("body", 200, payload)] * 10)
        with pytest.raises(ModelError) as err:
            make_model(server, max_retries=2).query(MESSAGES)
    text = str(err.value)
    assert "malformed reply" in text and why in text and "\n" not in text and KEY not in text
    assert "after 3 attempts" in text


def test_integral_float_token_counts_are_accepted():
    payload = {**GOOD, "usage": {"prompt_tokens": 12.0, "completion_tokens": 3}}
    with ModelServer() as server:
        server.add_faults(("body", 200, payload))
        resp = make_model(server).query(MESSAGES)
    assert (resp.prompt_tokens, resp.completion_tokens) == (12, 3)


def test_a_trickling_server_cannot_stretch_a_call_past_its_deadline():
    """Reproduced on main: one byte every 0.5 s held a call 66 s against a 2 s timeout."""
    with ModelServer() as server:
        server.add_faults(("trickle", 0.3), ("trickle", 0.3))
        model = make_model(server, request_timeout=2, max_retries=1)
        t0 = time.monotonic()
        with pytest.raises(ModelError, match="no answer within 2s"):
            model.query(MESSAGES)
        elapsed = time.monotonic() - t0
        assert server.wait_for_requests(2)
    assert elapsed < 6, elapsed  # two attempts of 2 s each, not the ~100 s the trickle would take
    # The per-call deadline leaves a normal slow answer alone.
    with ModelServer(latency=0.5) as server:
        assert make_model(server, request_timeout=2).query(MESSAGES).content


def test_interrupt_ends_a_hung_call_and_a_retry_after_sleep_within_5s():
    with ModelServer() as server:
        server.add_faults(("hang", 120))
        model = make_model(server)
        caught: list[BaseException] = []
        done = threading.Event()

        def call() -> None:
            try:
                model.query(MESSAGES)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                caught.append(exc)
            done.set()

        threading.Thread(target=call, daemon=True).start()
        assert server.wait_for_requests(1)
        t0 = time.monotonic()
        model.interrupt()
        assert done.wait(5) and time.monotonic() - t0 < 5
        assert isinstance(caught[0], ModelError) and "stopping" in str(caught[0])

        server.add_faults(("status", 429, {"Retry-After": "250"}))
        model = make_model(server)
        done.clear()
        caught.clear()
        threading.Thread(target=call, daemon=True).start()
        assert server.wait_for_requests(2)
        time.sleep(0.2)  # let it reach its Retry-After sleep (no event to wait on inside the client)
        t0 = time.monotonic()
        model.interrupt()
        assert done.wait(5) and time.monotonic() - t0 < 5
        assert isinstance(caught[0], ModelError)
        # An interrupted client starts no new call.
        with pytest.raises(ModelError, match="stopping"):
            model.query(MESSAGES)
        assert server.request_count == 2


def test_the_retry_budget_bounds_retries_by_time():
    url = "http://127.0.0.1:9/v1"  # nothing listens: refused at once
    model = OpenAIModel(url, KEY, "m", ModelConfig(retry_budget_s=1.5))
    model.backoff_base = 0.1
    t0 = time.monotonic()
    with pytest.raises(ModelError) as err:
        model.query(MESSAGES)
    elapsed = time.monotonic() - t0
    assert 1.4 < elapsed < 4 and "connection refused" in str(err.value)
    attempts = int(str(err.value).split("after ")[1].split(" ")[0])
    assert attempts >= 4  # more than a count of 1-2 quick tries: the budget decided


# -- through the runner -----------------------------------------------------------------------


def test_a_graceful_stop_during_a_hung_model_call_ends_the_run_within_5s(tmp_path):
    """Reproduced on main: a SIGTERM waited out a hung call (281 s once)."""
    ds = load_dataset(write_dataset(tmp_path, 2))
    out = tmp_path / "out.json"
    with ModelServer(ScriptedResponder(scripts_for(2))) as server:
        server.add_faults(("hang", 300), ("hang", 300))
        runner = make_runner(server, ds, out, workers=2)
        box: dict = {}
        done = threading.Event()

        def run() -> None:
            box["outcome"] = runner.run()
            done.set()

        threading.Thread(target=run, daemon=True).start()
        assert server.wait_for_requests(2, timeout=30)  # both workers are inside a hung call
        t0 = time.monotonic()
        runner.request_stop()
        assert done.wait(5), "the stop did not end the hung calls within 5 s"
        elapsed = time.monotonic() - t0
    outcome = box["outcome"]
    assert outcome.stopped and elapsed < 5
    assert outcome.counts["cancelled"] == 2 and outcome.written == 0  # not recorded: --resume re-runs them


@pytest.mark.slow
def test_a_20s_model_server_restart_loses_no_rollout(tmp_path):
    """Reproduced on main: a 15-25 s restart turned rollouts into ModelError."""
    ds = load_dataset(write_dataset(tmp_path, 4))
    out = tmp_path / "out.json"
    responder = ScriptedResponder(scripts_for(4, steps=3))
    first = ModelServer(responder).start()
    port = first.port
    runner = make_runner(first, ds, out, workers=2)
    box: dict = {}
    done = threading.Event()

    def run() -> None:
        box["outcome"] = runner.run()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert first.wait_for_requests(3, timeout=30)  # mid-run: rollouts are between steps
    first.stop()
    t_down = time.monotonic()
    assert not done.wait(20)  # the server is down for 20 s (the outage itself, not a wait on workers)
    second = ModelServer(responder, port=port).start()
    try:
        assert done.wait(120)
    finally:
        second.stop()
    outcome = box["outcome"]
    assert second.request_count > 0 and time.monotonic() - t_down >= 20
    assert outcome.written == 4 and outcome.counts["successful"] == 4
    for ex in open_input(out):
        assert ex.exit_status == "Submitted" and ex.reward == 1.0 and ex.error is None
