"""The OpenAI-compatible chat-completions client over ``requests`` (DESIGN §4).

Why not the ``openai`` or ``litellm`` packages: one thin, predictable client whose every retry,
header and body field is visible here, whose connection pool is sized to the workers, and
which costs about one ``requests`` call of CPU per model call (the runner's budget per step is
a few milliseconds). The API key lives only in the session's ``Authorization`` header: it is
scrubbed from every message this module produces and never shown by ``repr``.

Failing safe (issue 9): every HTTP attempt has an overall deadline (``model.request_timeout``)
kept by a watchdog that shuts the attempt's socket down, so a server trickling bytes cannot
stretch a call past it; ``interrupt()`` (a graceful stop) ends retry sleeps and in-flight calls
the same way; retries go on until ``model.retry_budget_s`` is spent, so a server restarting
for a few seconds costs no rollout; a 200 whose body is not a chat completion is retried like
any garbage and ends, if it persists, in a one-line ``ModelError``.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import random
import socket
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from agentdata_tui.config import LITELLM_ONLY_KEYS, ModelConfig
from agentdata_tui.errors import UserError
from agentdata_tui.interfaces import (
    ContextLengthExceeded,
    ModelError,
    ModelResponse,
    ModelUnavailable,
    RolloutContext,
)

log = logging.getLogger(__name__)

# model_kwargs that are the client's business, not the server's.
# (``stream``: this client reads whole replies; an SSE stream would look like a malformed body.)
_CLIENT_KEYS = frozenset(
    {
        "api_key",
        "base_url",
        "timeout",
        "request_timeout",
        "extra_headers",
        "extra_body",
        "stream",
        "stream_options",
    }
)
# How servers say "the prompt does not fit": OpenAI's code, vLLM, SGLang, TGI, llama.cpp, ...
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",  # OpenAI, vLLM "maximum context length", SGLang "longer than the model's context length"
    "maximum model length",  # vLLM v1: "... is longer than the maximum model length of N"
    "max_model_len",
    "context size",  # llama.cpp: "exceeds the available context size"
    "context window",
    "prompt is too long",
    "input is too long",
    "too many input tokens",
    "exceeds the maximum allowed length",
    "reduce the length of the messages",
)
_RETRY_STATUSES = frozenset({408, 409, 425, 429})
_MAX_RETRY_AFTER = 300.0
_STOPPED = "model client closed: the run is stopping (call interrupted)"


class _Retryable(Exception):
    """One attempt failed in a way worth retrying; ``wait`` is a server-requested delay."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds or as an HTTP date → seconds to wait (None when absent/bad)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_message(resp: requests.Response) -> tuple[str, str]:
    """The server's error message and code, from an OpenAI-style error body or the raw text."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or resp.reason or "", ""
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        msg = err.get("message") or err.get("detail") or json.dumps(err)[:500]
        return str(msg), str(err.get("code") or err.get("type") or "")
    return str(err)[:500], ""


def _is_context_error(message: str, code: str) -> bool:
    text = f"{code} {message}".lower()
    return any(marker in text for marker in _CONTEXT_MARKERS)


def _keep_headers(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


# -- deadlines and interrupts of in-flight calls ------------------------------------------------

_current = threading.local()  # the _Call the current thread is making, if any


class _Call:
    """One HTTP attempt in flight: its deadline and, once the pool hands it out, its connection."""

    __slots__ = ("deadline", "conn", "reason")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conn: Any = None
        self.reason: str | None = None  # "deadline" | "stopped": why the watchdog ended it


def _tracked(conn: Any) -> Any:
    call = getattr(_current, "call", None)
    if call is not None:
        call.conn = conn
    return conn


class _TrackedHTTPPool(HTTPConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        return _tracked(super()._get_conn(timeout))


class _TrackedHTTPSPool(HTTPSConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        return _tracked(super()._get_conn(timeout))


_TRACKED_POOLS = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


class _Adapter(HTTPAdapter):
    """An adapter whose pools tell the watchdog which connection a call is using."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _TRACKED_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = _TRACKED_POOLS
        return manager


class _Watchdog:
    """Ends HTTP attempts past their deadline, or all of them on a stop, by shutting their socket
    down: the read blocked in the calling thread returns at once. Per-read timeouts alone let a
    server that sends a byte now and then hold a call for ever. One thread per client, asleep
    until the earliest deadline."""

    def __init__(self) -> None:
        self._calls: set[_Call] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf  # when the watchdog looks next (it sleeps until then)

    def begin(self, timeout: float) -> _Call:
        call = _Call(time.monotonic() + timeout)
        with self._cond:
            self._calls.add(call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="model-watchdog", daemon=True)
                self._thread.start()
            # Woken only when this deadline comes before its next look: with a thousand calls in
            # flight, waking it (a pass over every call) at each call's start cost real CPU.
            if call.deadline < self._wake_at:
                self._cond.notify()
        _current.call = call
        return call

    def end(self, call: _Call) -> None:
        _current.call = None
        with self._cond:
            self._calls.discard(call)

    def interrupt_all(self) -> None:
        with self._cond:
            for call in self._calls:
                call.reason = call.reason or "stopped"
                _shut(call)
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                wait: float | None = None
                for call in self._calls:
                    if call.reason is None and call.deadline <= now:
                        call.reason = "deadline"
                    if call.reason is not None:
                        _shut(call)  # again until it ends: it may still have been connecting
                        wait = 0.2 if wait is None else min(wait, 0.2)
                    else:
                        left = call.deadline - now
                        wait = left if wait is None else min(wait, left)
                self._wake_at = math.inf if wait is None else now + wait
                self._cond.wait(wait)


def _shut(call: _Call) -> None:
    sock = getattr(call.conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _session(
    url: str, api_key: str | None, pool_size: int, extra_headers: dict[str, str] | None = None
) -> requests.Session:
    session = requests.Session()
    adapter = _Adapter(pool_connections=2, pool_maxsize=max(1, pool_size), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # Proxies and CA bundles from the environment stay honoured, but a ~/.netrc entry must not
    # replace our Authorization header: a session-level auth (a no-op) turns netrc lookup off.
    session.auth = _keep_headers
    # Read the environment's proxies and CA bundle once, not on every request (~0.8 ms of CPU
    # per call with hundreds of workers): then the session stops looking at the environment.
    env = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(env.get("proxies") or {})
    session.verify = env.get("verify", True)
    if env.get("cert"):
        session.cert = env["cert"]
    session.trust_env = False
    session.headers.update(extra_headers or {})
    if api_key:
        session.headers["Authorization"] = f"Bearer {api_key}"
    return session


class OpenAIModel:
    """Implements ``interfaces.Model`` against ``POST {base_url}/chat/completions``.

    One instance is shared by all the workers of a run: its session pools ``pool_size``
    connections and its semaphore bounds requests in flight to
    ``model.max_concurrent_requests`` (0 = unbounded) whatever the number of workers.
    """

    backoff_base = 1.0  # seconds; the n-th retry waits about base * 2**n, jittered ...
    backoff_max = 10.0  # ... up to this: a server back from a restart is found within seconds
    connect_timeout = 10.0

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model_name: str,
        config: ModelConfig,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        pool_size: int = 4,
        served_name: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model_name  # the user's string, as recorded
        self.served_name = served_name or model_name  # what requests carry (see served_model_name)
        self.config = config
        self._key = api_key or None
        self._url = f"{self.base_url}/chat/completions"
        self._body = self._static_body(config, temperature, max_tokens)
        kw_headers = config.model_kwargs.get("extra_headers") or {}
        self._session = _session(self._url, self._key, pool_size, {**kw_headers, **config.extra_headers})
        self._adapter = self._session.get_adapter(self._url)
        self._prepared = self._session.prepare_request(
            requests.Request("POST", self._url, headers={"Content-Type": "application/json"}, data=b"")
        )
        limit = config.max_concurrent_requests
        self._semaphore = threading.BoundedSemaphore(limit) if limit > 0 else None
        timeout = config.model_kwargs.get("timeout") or config.request_timeout
        self.read_timeout = float(timeout)  # also the overall deadline of one HTTP attempt
        self.retry_budget_s = float(config.retry_budget_s)
        # A count of retries only when the config sets one; otherwise the time budget decides.
        self.max_retries: int | None = (
            config.max_retries if "max_retries" in config.model_fields_set else None
        )
        self._closed = threading.Event()  # close() or interrupt(): no more calls, no more waits
        self._watchdog = _Watchdog()

    def __repr__(self) -> str:
        return f"OpenAIModel(base_url={self.base_url!r}, model={self.name!r}, key={'set' if self._key else 'none'})"

    # -- request body ---------------------------------------------------------------
    def _static_body(
        self, config: ModelConfig, temperature: float | None, max_tokens: int | None
    ) -> dict[str, Any]:
        """Everything but the messages: built once, since it is the same for every call."""
        body: dict[str, Any] = {"model": self.served_name}
        for key, value in config.model_kwargs.items():
            if key in LITELLM_ONLY_KEYS or key in _CLIENT_KEYS:
                continue
            body[key] = value
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
            body.pop("max_completion_tokens", None)
        extra = {**(config.model_kwargs.get("extra_body") or {}), **config.extra_body}
        body.update(extra)
        if config.capture_tokens:  # vLLM's names; a user's own setting wins
            body.setdefault("logprobs", True)
            body.setdefault("return_token_ids", True)
        return body

    def request_body(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> dict[str, Any]:
        body = {**self._body, "messages": [_wire_message(m) for m in messages]}
        if tools:
            body["tools"] = tools
        return body

    # -- the call -------------------------------------------------------------------
    def query(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        context: RolloutContext | None = None,
    ) -> ModelResponse:
        data = json.dumps(self.request_body(messages, tools), ensure_ascii=False).encode("utf-8")
        started = time.monotonic()
        attempt = 0
        last = ""
        while True:
            if self._closed.is_set():
                raise ModelError(_STOPPED)
            attempt += 1
            try:
                with self._slot():
                    start = time.perf_counter()
                    resp = self._post(data)
                    return self._parse(resp, time.perf_counter() - start)
            except _Retryable as exc:
                last = str(exc)
                remaining = self.retry_budget_s - (time.monotonic() - started)
                if remaining <= 0 or (self.max_retries is not None and attempt > self.max_retries):
                    break
                delay = exc.wait if exc.wait is not None else self._backoff(attempt - 1)
                delay = min(delay, remaining)
                log.warning("model server: %s; retry %d in %.1fs", last, attempt, delay)
                if self._closed.wait(delay):
                    raise ModelError(_STOPPED) from None
        spent = time.monotonic() - started
        raise ModelUnavailable(
            _one_line(self._scrub(f"model server failed after {attempt} attempts in {spent:.0f}s: {last}"))
        )

    @contextlib.contextmanager
    def _slot(self):
        """A place among ``max_concurrent_requests``; the wait for it ends on a stop too."""
        if self._semaphore is None:
            yield
            return
        while not self._semaphore.acquire(timeout=0.5):
            if self._closed.is_set():
                raise ModelError(_STOPPED)
        try:
            yield
        finally:
            self._semaphore.release()

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_base * (2**attempt)) * (0.5 + random.random())

    def _post(self, data: bytes) -> requests.Response:
        # Straight to the session's adapter with a copy of a request prepared once: what
        # Session.post adds per call (merging settings, cookies, hooks, redirects) cost more
        # CPU than the HTTP exchange itself, once per step of every rollout. A redirect is
        # not followed (a POST turned into a GET would fail in a stranger way): _parse says so.
        call = self._watchdog.begin(self.read_timeout)
        request = self._prepared.copy()
        request.prepare_body(data, None)
        s = self._session
        try:
            resp = self._adapter.send(
                request,
                timeout=(min(self.connect_timeout, self.read_timeout), self.read_timeout),
                verify=s.verify,
                cert=s.cert,
                proxies=s.proxies,
            )
            # The body is read here, as Session.send would: a connection that breaks mid-body
            # is this attempt's failure (retried), and the deadline covers the whole answer.
            resp.content  # noqa: B018
            return resp
        except requests.RequestException as exc:
            if call.reason == "stopped" or self._closed.is_set():
                raise ModelError(_STOPPED) from None
            if call.reason == "deadline" or isinstance(exc, requests.Timeout):
                raise _Retryable(f"no answer within {self.read_timeout:g}s from {self._url}") from None
            if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
                raise _Retryable(self._scrub(f"cannot connect to {self._url} ({_reason(exc)})")) from None
            raise ModelError(self._scrub(f"request to {self._url} failed: {_reason(exc)}")) from None
        finally:
            self._watchdog.end(call)

    def _parse(self, resp: requests.Response, latency: float) -> ModelResponse:
        status = resp.status_code
        if 300 <= status < 400:
            where = resp.headers.get("Location") or "?"
            raise ModelError(
                self._scrub(
                    f"model server answered HTTP {status}, a redirect to {where}: use that --base-url"
                )
            )
        if status >= 400:
            message, code = _error_message(resp)
            message = self._scrub(message)
            if status == 429 or status >= 500 or status in _RETRY_STATUSES:
                wait = parse_retry_after(resp.headers.get("Retry-After"))
                raise _Retryable(
                    f"HTTP {status}: {message}", None if wait is None else min(wait, _MAX_RETRY_AFTER)
                )
            if _is_context_error(message, code) and status in (400, 413, 422):
                raise ContextLengthExceeded(f"context length exceeded: {message}")
            raise ModelError(f"model server answered HTTP {status}: {message}")
        try:
            payload = resp.json()
        except ValueError:
            raise _Retryable(f"malformed reply (not JSON): {resp.text[:200]!r}") from None
        if isinstance(payload, dict) and payload.get("error") and not payload.get("choices"):
            err = payload["error"]
            message = self._scrub(str(err.get("message", err) if isinstance(err, dict) else err))
            code = str(err.get("code") or "") if isinstance(err, dict) else ""
            if _is_context_error(message, code):
                raise ContextLengthExceeded(f"context length exceeded: {message}")
            raise _Retryable(f"error in reply: {message}")
        try:
            return _completion(payload, latency, capture_tokens=self.config.capture_tokens)
        except _Malformed as exc:
            raise _Retryable(self._scrub(f"malformed reply ({exc}): {resp.text[:200]!r}")) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def interrupt(self) -> None:
        """A graceful stop: retry sleeps and calls in flight end now (``ModelError``), and no new
        call starts. Safe from any thread."""
        self._closed.set()
        self._watchdog.interrupt_all()

    def close(self) -> None:
        """Ends pending retry waits and calls in flight (a stopping run should not wait on them), and the pool."""
        self.interrupt()
        self._session.close()


class _Malformed(Exception):
    """A 200 whose body is not a chat completion (says which part is wrong)."""


def _count(usage: dict[str, Any], key: str) -> int | None:
    value = usage.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Malformed(f"usage.{key} is not a number")
    if value < 0 or value != int(value):
        raise _Malformed(f"usage.{key} is not a whole number of tokens")
    return int(value)


def _completion(payload: Any, latency: float, *, capture_tokens: bool = False) -> ModelResponse:
    """The parts of a chat completion we use, each checked: a server bug must not become a traceback."""
    if not isinstance(payload, dict):
        raise _Malformed(f"the body is a JSON {type(payload).__name__}, not an object")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Malformed("no choices")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise _Malformed("choices[0] is not an object")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _Malformed("choices[0].message is not an object")
    usage = payload.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise _Malformed("usage is not an object")
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise _Malformed("message.content is neither text nor a list of parts")
    calls = message.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise _Malformed("message.tool_calls is not a list")
    for call in calls or ():
        if not isinstance(call, dict) or not isinstance(call.get("function") or {}, dict):
            raise _Malformed("a tool call is not an object with a function object")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    finish = choice.get("finish_reason")
    return ModelResponse(
        content=_text(content),
        reasoning_content=reasoning if isinstance(reasoning, str) and reasoning else None,
        tool_calls=normalise_tool_calls(calls),
        prompt_tokens=_count(usage, "prompt_tokens"),
        completion_tokens=_count(usage, "completion_tokens"),
        finish_reason=finish if isinstance(finish, str) else None,
        latency_s=round(latency, 4),
        tokens=captured_tokens(payload, choice) if capture_tokens else None,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


_WIRE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the API takes it. Recorded extras stay home: ``reasoning_content`` of past
    turns is refused by some servers (DeepSeek answers 400) and ignored by chat templates.
    A tool-call reply without text goes back without ``content``, as mini-swe-agent (litellm)
    sends the null content servers return for it (the record keeps ``""``)."""
    drop_content = (
        message.get("role") == "assistant" and bool(message.get("tool_calls")) and not message.get("content")
    )
    if not drop_content and all(k in _WIRE_KEYS for k in message):
        return message
    return {k: message[k] for k in _WIRE_KEYS if k in message and not (drop_content and k == "content")}


def _text(content: Any) -> str:
    """Message content as text: servers may send null, a string, or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def normalise_tool_calls(calls: Any) -> list[dict[str, Any]] | None:
    """Tool calls in OpenAI's exact shape (id, type, function.name, function.arguments as a JSON
    string), so the recorded conversation can be sent back to any server and trained on.
    Some servers send arguments as an object or omit ids and types."""
    if not calls or not isinstance(calls, list):
        return None
    out: list[dict[str, Any]] = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        fn = call.get("function") or {}
        args = fn.get("arguments")
        if not isinstance(args, str):
            args = json.dumps(args if args is not None else {}, ensure_ascii=False)
        out.append(
            {
                "id": str(call.get("id") or f"call_{uuid.uuid4().hex[:16]}"),
                "type": call.get("type") or "function",
                "function": {"name": fn.get("name") or "", "arguments": args},
            }
        )
    return out or None


def _int_list(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return value
    return None


def captured_tokens(payload: dict[str, Any], choice: dict[str, Any]) -> dict[str, Any]:
    """Token ids and logprobs as vLLM returns them with ``return_token_ids`` / ``logprobs``:
    ``prompt_token_ids`` (top level, or on the choice), ``choices[0].token_ids`` and
    ``choices[0].logprobs.content[].logprob``. What is missing or malformed is None."""
    prompt = _int_list(payload.get("prompt_token_ids"))
    if prompt is None:
        prompt = _int_list(choice.get("prompt_token_ids"))
    logprobs = None
    content = (
        (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
    )
    if isinstance(content, list):
        values = [e.get("logprob") if isinstance(e, dict) else None for e in content]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            logprobs = [float(v) for v in values]
    return {"prompt_token_ids": prompt, "token_ids": _int_list(choice.get("token_ids")), "logprobs": logprobs}


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, short (no URL-with-credentials dump)."""
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(inner) or type(inner).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text[:200]


def list_models(base_url: str, api_key: str | None, timeout: float = 10) -> list[str]:
    """``GET {base_url}/models`` → model ids; ModelError with a one-line reason otherwise."""
    url = f"{base_url.rstrip('/')}/models"

    def scrub(text: str) -> str:
        return text.replace(api_key, "***") if api_key else text

    with _session(url, api_key, 1) as session:
        try:
            resp = session.get(url, timeout=(min(timeout, 10.0), timeout))
        except requests.Timeout:
            raise ModelError(f"no answer from {url} within {timeout:g}s") from None
        except requests.RequestException as exc:
            raise ModelError(scrub(f"cannot reach the model server at {url} ({_reason(exc)})")) from None
    if resp.status_code >= 400:
        message, _ = _error_message(resp)
        raise ModelError(scrub(f"{url} answered HTTP {resp.status_code}: {message}"))
    try:
        data = resp.json()
        items = data["data"] if isinstance(data, dict) else data
        return [str(item["id"]) for item in items]
    except (ValueError, KeyError, TypeError):
        raise ModelError(f"{url} did not answer with an OpenAI model list: {resp.text[:200]!r}") from None


def resolve_model_name(base_url: str, api_key: str | None, explicit: str | None, config: ModelConfig) -> str:
    """``--model``, else the config's ``model_name``, else the one model the server lists."""
    if explicit:
        return explicit
    if config.model_name:
        return config.model_name
    try:
        models = list_models(base_url, api_key)
    except ModelError as exc:
        raise UserError(
            f"no --model given and no model_name in the config, and listing models failed: {exc}"
        ) from None
    if len(models) == 1:
        return models[0]
    if not models:
        raise UserError(f"the model server at {base_url} lists no models; pass --model NAME")
    shown = ", ".join(models[:20]) + (f", ... ({len(models)} in all)" if len(models) > 20 else "")
    raise UserError(f"the model server at {base_url} lists several models ({shown}); pick one with --model")


# litellm's provider prefixes for OpenAI-compatible servers and the providers mini-swe-agent
# users name: ``hosted_vllm/Qwen/Qwen3-8B`` is served as ``Qwen/Qwen3-8B``.
LITELLM_PROVIDERS = frozenset(
    {
        "openai",
        "hosted_vllm",
        "vllm",
        "litellm_proxy",
        "custom_openai",
        "text-completion-openai",
        "openai_like",
        "lm_studio",
        "ollama",
        "ollama_chat",
        "llamafile",
        "xinference",
        "openrouter",
        "together_ai",
        "deepinfra",
        "fireworks_ai",
        "groq",
        "deepseek",
        "mistral",
        "anthropic",
        "azure",
        "gemini",
        "xai",
        "cerebras",
        "sambanova",
        "nvidia_nim",
        "huggingface",
        "perplexity",
        "anyscale",
        "novita",
        "nebius",
        "dashscope",
        "moonshot",
    }
)


def strip_provider(name: str) -> str:
    """``name`` without a leading litellm provider segment (``openai/``, ``hosted_vllm/``, ...)."""
    head, sep, rest = name.partition("/")
    return rest if sep and rest and head in LITELLM_PROVIDERS else name


def served_model_name(name: str, listed: list[str] | None) -> str:
    """The model name requests carry: ``name`` as given when the server lists it (or when no
    list could be had and it has no provider prefix), else with the litellm provider prefix
    stripped, as litellm sends it."""
    if listed is not None and name in listed:
        return name
    return strip_provider(name)


def public_url(url: str) -> str:
    """A URL without user:password@ (never written to metadata)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url
