"""The model client against a real loopback HTTP server: what it sends, retries, faults, secrecy."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from servers.model_server import ModelServer, Reply, ScriptedResponder

from agentdata_tui.config import ModelConfig
from agentdata_tui.errors import UserError
from agentdata_tui.interfaces import ContextLengthExceeded, ModelError
from agentdata_tui.model.client import OpenAIModel, list_models, parse_retry_after, resolve_model_name

KEY = "sk-test-SECRET-0123456789"
MESSAGES = [{"role": "system", "content": "sys"}, {"role": "user", "content": "fix task-1"}]


def make_model(server: ModelServer, key: str | None = KEY, **cfg) -> OpenAIModel:
    flags = {k: cfg.pop(k) for k in ("temperature", "max_tokens") if k in cfg}
    model = OpenAIModel(server.base_url, key, "test-model", ModelConfig(**cfg), **flags)
    model.backoff_base = 0.01
    return model


@pytest.fixture
def server():
    with ModelServer() as s:
        yield s


def test_sends_model_messages_kwargs_extra_body_and_headers(server):
    model = make_model(
        server,
        temperature=0.7,
        max_tokens=321,
        model_kwargs={
            "temperature": 0.0,
            "max_tokens": 99,
            "top_p": 0.9,
            "stop": ["</s>"],
            "seed": 7,
            "drop_params": True,
            "custom_llm_provider": "openai",
            "extra_body": {"top_k": 20},
        },
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
        extra_headers={"X-Team": "data"},
    )
    resp = model.query(MESSAGES)
    assert resp.content.startswith("THOUGHT")
    [req] = server.chat_requests()
    body = req.body
    assert body["model"] == "test-model"
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0.7  # the flag wins over model_kwargs
    assert body["max_tokens"] == 321
    assert body["top_p"] == 0.9 and body["stop"] == ["</s>"] and body["seed"] == 7
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["top_k"] == 20
    assert "tools" not in body
    for key in ("drop_params", "custom_llm_provider", "extra_body", "extra_headers"):
        assert key not in body
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.headers["X-Team"] == "data"
    assert req.path == "/v1/chat/completions"


def test_config_kwargs_used_without_flags_and_nothing_when_neither(server):
    make_model(server, model_kwargs={"temperature": 0.2}).query(MESSAGES)
    make_model(server, key=None).query(MESSAGES, tools=[{"type": "function", "function": {"name": "bash"}}])
    first, second = server.chat_requests()
    assert first.body["temperature"] == 0.2 and "max_tokens" not in first.body
    assert "temperature" not in second.body and "max_tokens" not in second.body
    assert second.body["tools"][0]["function"]["name"] == "bash"
    assert "Authorization" not in second.headers


def test_usage_finish_reason_reasoning_and_tool_calls():
    replies = iter(
        [
            Reply(content="a", reasoning_content="think 1", prompt_tokens=11, completion_tokens=5),
            Reply(content="b", reasoning_content="think 2", reasoning_field="reasoning"),
            Reply(
                content=None,
                tool_calls=[
                    {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}
                ],
                finish_reason="tool_calls",
            ),
        ]
    )
    with ModelServer(lambda body: next(replies)) as s:
        model = make_model(s)
        r1, r2, r3 = (model.query(MESSAGES) for _ in range(3))
    assert (r1.content, r1.reasoning_content, r1.prompt_tokens, r1.completion_tokens) == (
        "a",
        "think 1",
        11,
        5,
    )
    assert r1.finish_reason == "stop" and r1.latency_s > 0
    assert r2.reasoning_content == "think 2"
    assert r3.content == "" and r3.tool_calls[0]["id"] == "c1" and r3.finish_reason == "tool_calls"


def test_429_then_success_honours_retry_after(server):
    server.add_faults(("status", 429, {"Retry-After": "0"}), ("status", 429, {"Retry-After": "1"}))
    model = make_model(server)
    model.backoff_base = 30  # would fail the test's patience if Retry-After were ignored
    start = time.monotonic()
    resp = model.query(MESSAGES)
    elapsed = time.monotonic() - start
    assert resp.content
    assert len(server.chat_requests()) == 3
    assert 0.9 <= elapsed < 10


def test_retry_after_http_date_and_seconds():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= parse_retry_after(future) <= 31
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_500_retried_then_success(server):
    server.add_faults(("status", 500), ("status", 503))
    assert make_model(server).query(MESSAGES).content
    assert len(server.chat_requests()) == 3


def test_5xx_forever_gives_model_error_after_max_retries(server):
    server.add_faults(*[("status", 502)] * 10)
    with pytest.raises(ModelError, match="after 3 attempts.*HTTP 502"):
        make_model(server, max_retries=2).query(MESSAGES)
    assert len(server.chat_requests()) == 3


def test_hang_past_read_timeout_is_retried(server):
    server.add_faults(("hang", 5))
    start = time.monotonic()
    assert make_model(server, request_timeout=1.0).query(MESSAGES).content
    assert time.monotonic() - start < 4.5
    assert len(server.chat_requests()) == 2


def test_hang_every_time_ends_in_model_error(server):
    server.add_faults(*[("hang", 5)] * 3)
    with pytest.raises(ModelError, match=r"no answer within 0.5s"):
        make_model(server, request_timeout=0.5, max_retries=1).query(MESSAGES)
    assert len(server.chat_requests()) == 2


def test_malformed_body_retried_then_success_or_model_error(server):
    server.add_faults(("malformed",), ("no_choices",))
    assert make_model(server).query(MESSAGES).content
    server.add_faults(*[("malformed",)] * 3)
    with pytest.raises(ModelError, match="malformed reply"):
        make_model(server, max_retries=2).query(MESSAGES)


def test_context_length_400_is_not_retried(server):
    server.add_faults(("context_length",))
    with pytest.raises(ContextLengthExceeded, match="maximum context length"):
        make_model(server).query(MESSAGES)
    assert len(server.chat_requests()) == 1


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens",
        "The prompt is too long: 40000, model maximum context length: 32768",
        "The decoder prompt (length 40000) is longer than the maximum model length of 32768.",
        "the request exceeds the available context size, try increasing it",
        "The input (40000 tokens) is longer than the model's context length (32768 tokens).",
    ],
)
def test_vllm_and_sglang_context_messages(server, message):
    server.add_faults(("error", 400, message))
    with pytest.raises(ContextLengthExceeded):
        make_model(server).query(MESSAGES)


def test_a_plain_400_is_a_model_error_not_a_context_error(server):
    server.add_faults(("error", 400, "temperature must be between 0 and 2"))
    with pytest.raises(ModelError, match="HTTP 400: temperature must be between 0 and 2") as info:
        make_model(server).query(MESSAGES)
    assert not isinstance(info.value, ContextLengthExceeded)
    assert len(server.chat_requests()) == 1


def test_other_4xx_is_model_error_with_server_message_and_no_key(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.add_faults(("error", 401, f"Incorrect API key provided: {KEY}."))
    model = make_model(server)
    with pytest.raises(ModelError) as info:
        model.query(MESSAGES)
    assert "HTTP 401" in str(info.value) and "Incorrect API key provided" in str(info.value)
    assert len(server.chat_requests()) == 1
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert KEY not in repr(model)
    assert KEY not in caplog.text


def test_key_reaches_only_the_authorization_header(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.add_faults(("status", 500), ("malformed",))
    model = make_model(server)
    model.query(MESSAGES)
    assert "retry" in caplog.text  # the retries were logged ...
    assert KEY not in caplog.text  # ... without the key
    for req in server.requests:
        assert KEY.encode() not in req.raw
        others = {k: v for k, v in req.headers.items() if k.lower() != "authorization"}
        assert KEY not in repr(others)
        assert req.headers["Authorization"] == f"Bearer {KEY}"


def test_connection_refused_is_retried_then_model_error():
    with ModelServer() as s:
        url = s.base_url
    model = OpenAIModel(url, KEY, "m", ModelConfig(max_retries=2))
    model.backoff_base = 0.01
    with pytest.raises(ModelError, match="cannot connect") as info:
        model.query(MESSAGES)
    assert KEY not in str(info.value)


def test_max_concurrent_requests_bounds_requests_in_flight():
    with ModelServer(latency=0.2) as s:
        model = make_model(s, max_concurrent_requests=2)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                model.query(MESSAGES)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert not errors
    assert len(s.chat_requests()) == 8
    assert s.max_in_flight == 2


def test_unbounded_when_limit_is_zero():
    with ModelServer(latency=0.3) as s:
        model = make_model(s)
        threads = [threading.Thread(target=model.query, args=(MESSAGES,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert s.max_in_flight >= 3


def test_close_ends_a_pending_backoff(server):
    server.add_faults(("status", 503, {"Retry-After": "60"}))
    model = make_model(server)
    result: list[BaseException] = []
    t = threading.Thread(target=lambda: result.append(pytest.raises(ModelError, model.query, MESSAGES).value))
    t.start()
    assert server.wait_for_requests(1)
    model.close()
    t.join(timeout=10)
    assert not t.is_alive()
    assert "closed" in str(result[0])


def test_list_models_and_resolve_model_name():
    with ModelServer(models=("only-one",)) as s:
        assert list_models(s.base_url, KEY) == ["only-one"]
        assert resolve_model_name(s.base_url, KEY, None, ModelConfig()) == "only-one"
        assert resolve_model_name(s.base_url, KEY, "explicit", ModelConfig(model_name="cfg")) == "explicit"
        assert resolve_model_name(s.base_url, KEY, None, ModelConfig(model_name="cfg")) == "cfg"
        assert s.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    with (
        ModelServer(models=("a", "b")) as s,
        pytest.raises(UserError, match=r"several models \(a, b\).*--model"),
    ):
        resolve_model_name(s.base_url, KEY, None, ModelConfig())
    with ModelServer(models=()) as s, pytest.raises(UserError, match="lists no models"):
        resolve_model_name(s.base_url, KEY, None, ModelConfig())
    with pytest.raises(UserError, match="cannot reach") as info:
        resolve_model_name(url := s.base_url, KEY, None, ModelConfig())
    assert url in str(info.value) and KEY not in str(info.value)


def test_list_models_reports_http_errors(server):
    server.add_faults(("error", 403, "forbidden here"))
    with pytest.raises(ModelError, match="HTTP 403: forbidden here"):
        list_models(server.base_url, None)


def test_scripted_responder_picks_by_instance_and_turn():
    responder = ScriptedResponder({"task-1": ["one", "two"], "task-10": ["ten"]}, default=["dflt"])
    with ModelServer(responder) as s:
        model = make_model(s)
        assert model.query([{"role": "user", "content": "task-1"}]).content == "one"
        turn2 = [
            {"role": "user", "content": "task-1"},
            {"role": "assistant", "content": "one"},
            {"role": "user", "content": "x"},
        ]
        assert model.query(turn2).content == "two"
        assert model.query(turn2 + turn2[1:]).content == "two"  # past the end: the last reply
        assert model.query([{"role": "user", "content": "task-10"}]).content == "ten"
        assert model.query([{"role": "user", "content": "other"}]).content == "dflt"


def test_tool_calls_normalised_and_content_parts_joined():
    odd = Reply(
        content=None,
        tool_calls=[{"function": {"name": "bash", "arguments": {"command": "ls"}}}],
        finish_reason="tool_calls",
    )
    parts = Reply(content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])  # type: ignore[arg-type]
    replies = iter([odd, parts])
    with ModelServer(lambda body: next(replies)) as s:
        model = make_model(s, model_kwargs={"stream": True})
        r1 = model.query(MESSAGES)
        r2 = model.query(MESSAGES)
        assert "stream" not in s.chat_requests()[0].body
    [call] = r1.tool_calls
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "bash", "arguments": '{"command": "ls"}'}
    assert r2.content == "ab"


def test_netrc_never_replaces_the_bearer_key(server, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    make_model(server).query(MESSAGES)
    make_model(server, key=None).query(MESSAGES)
    with_key, without_key = server.chat_requests()
    assert with_key.headers["Authorization"] == f"Bearer {KEY}"
    assert "Authorization" not in without_key.headers


def test_server_can_count_without_recording():
    with ModelServer(record=False) as s:
        make_model(s).query(MESSAGES)
        assert s.request_count == 1 and s.requests == []


def test_a_broken_responder_answers_500_and_is_reported():
    def broken(body):
        raise KeyError("no script")

    with ModelServer(broken) as s:
        with pytest.raises(ModelError, match="HTTP 500"):
            make_model(s, max_retries=1).query(MESSAGES)
        assert len(s.errors) == 2 and isinstance(s.errors[0], KeyError)


def test_recorded_extras_are_not_sent_back(server):
    history = [
        *MESSAGES,
        {"role": "assistant", "content": "x", "reasoning_content": "secret thoughts"},
        {"role": "user", "content": "obs"},
    ]
    make_model(server).query(history)
    [req] = server.chat_requests()
    assert req.body["messages"][2] == {"role": "assistant", "content": "x"}
    assert history[2]["reasoning_content"] == "secret thoughts"  # the caller's record is untouched


def test_connections_are_kept_alive_and_reused(server):
    model = make_model(server)
    for _ in range(5):
        model.query(MESSAGES)
    assert len({r.client_port for r in server.chat_requests()}) == 1


def test_server_in_a_child_process_answers_scripts():
    from servers.model_server import ModelServerProcess

    with ModelServerProcess(scripts={"task-9": ["nine"]}, models=("m1",)) as proc:
        assert list_models(proc.base_url, None) == ["m1"]
        model = OpenAIModel(proc.base_url, None, "m1", ModelConfig())
        assert model.query([{"role": "user", "content": "task-9"}]).content == "nine"
        child = proc.proc
    assert child.returncode == 0


def test_environment_proxies_read_once_and_no_proxy_honoured(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    model = OpenAIModel("http://gpu1.example:8000/v1", None, "m", ModelConfig())
    assert model._session.proxies.get("http") == "http://127.0.0.1:9"
    assert model._session.trust_env is False
    monkeypatch.setenv("NO_PROXY", "gpu1.example")
    bypass = OpenAIModel("http://gpu1.example:8000/v1", None, "m", ModelConfig())
    assert "http" not in bypass._session.proxies


def test_a_redirect_is_a_model_error_naming_where_not_followed(server):
    """A POST is never re-sent elsewhere behind the user's back (requests turned a 302 into a
    GET): the user is told where the server points, once, without retries."""
    target = server.base_url + "/chat/completions"
    server.add_faults(("status", 307, {"Location": target}))
    model = make_model(server)
    with pytest.raises(ModelError, match=r"HTTP 307, a redirect to .*chat/completions: use that --base-url"):
        model.query(MESSAGES)
    assert len(server.chat_requests()) == 1


def test_each_request_carries_its_own_body_and_length(server):
    """Requests are copies of one prepared template: no body or length leaks between calls."""
    model = make_model(server)
    model.query([{"role": "user", "content": "a" * 5000}])
    model.query([{"role": "user", "content": "short"}])
    first, second = server.chat_requests()
    assert first.body["messages"][0]["content"] == "a" * 5000
    assert second.body["messages"][0]["content"] == "short"
    assert int(second.headers["Content-Length"]) == len(second.raw)
    assert second.headers["Authorization"] == f"Bearer {KEY}"


def test_an_answer_cut_mid_body_is_retried_not_a_crash(server):
    """The body is part of the attempt: a connection that breaks after the headers is retried
    like any broken connection (it escaped as ChunkedEncodingError, a runner error, once the
    body was read outside the request's error handling)."""
    server.add_faults(("cut",))
    resp = make_model(server).query(MESSAGES)
    assert resp.content
    assert len(server.chat_requests()) == 2
