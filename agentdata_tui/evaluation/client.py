"""Client of an eval server (DESIGN §4): ``POST /evaluate``, ``GET /health``, Bearer token.

Transient failures — connection errors, timeouts, 502/503/504 (a proxy or a busy server;
503 comes with ``Retry-After``) — are retried with exponential backoff and jitter. A 500 is
the evaluation's own failure ("evaluation crashed"): retrying would run it again for nothing,
so it is recorded at once, like any other 4xx/5xx. When the server stays down,
:class:`EvaluationError` is raised: the runner records the example with that error and reward
0, and the run goes on.

The read timeout follows the instance: ``eval.timeout`` bounds each command the evaluation
runs (the tests, each benchmark run), so the answer is due within that many commands' time,
plus the same again for an evaluation queued ahead on a busy server, plus a minute.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any

import requests

from agentdata_tui.errors import UserError
from agentdata_tui.interfaces import EvalResult

RETRY_STATUS = {502, 503, 504}
TIMEOUT_MARGIN_S = 60.0


class EvaluationError(Exception):
    """The eval server could not grade the patch (down, refused, or answered nonsense)."""


def normalize_eval_url(value: str) -> str | None:
    """``local`` → None (built-in evaluator); ``HOST:PORT`` → ``http://HOST:PORT``; a URL as is."""
    value = (value or "").strip()
    if not value or value.lower() == "local":
        return None
    if "://" in value:
        if not value.startswith(("http://", "https://")):
            raise UserError(f"--eval-server: only http:// and https:// URLs are supported, got '{value}'")
        return value.rstrip("/")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--eval-server: expected 'local', a URL or HOST:PORT, got '{value}'")
    return f"http://{host}:{port}"


class EvalServerClient:
    """Implements ``interfaces.Evaluator`` over HTTP."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 3600.0,
        connect_timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        pool_size: int = 4,
    ) -> None:
        self.url = normalize_eval_url(url) or url.rstrip("/")  # HOST:PORT works too
        self.timeout = timeout  # read timeout when the instance has no eval block
        self.margin_s = TIMEOUT_MARGIN_S
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._token = token or None
        self._local = threading.local()
        self._pool_size = max(1, pool_size)

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=self._pool_size)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            if self._token:
                s.headers["Authorization"] = f"Bearer {self._token}"
            self._local.session = s
        return s

    def _sleep_for(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        base = min(self.backoff * (2**attempt), self.max_backoff)
        return base * (0.5 + random.random() / 2)

    def _request(
        self, method: str, path: str, *, json: Any = None, read_timeout: float, retries: int | None = None
    ) -> requests.Response:
        last = ""
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            retry_after = None
            try:
                resp = self._session().request(
                    method, self.url + path, json=json, timeout=(self.connect_timeout, read_timeout)
                )
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {_short(exc)}"
            else:
                if resp.status_code < 400:
                    return resp
                last = f"HTTP {resp.status_code}: {resp.text.strip()[:200]}"
                if resp.status_code not in RETRY_STATUS:
                    raise EvaluationError(f"eval server {self.url} refused {path}: {last}")
                retry_after = resp.headers.get("Retry-After")
            if attempt < retries:
                time.sleep(self._sleep_for(attempt, retry_after))
        raise EvaluationError(f"eval server {self.url} unavailable after {retries + 1} tries: {last}")

    def evaluate(
        self, instance: dict[str, Any], patch: str, *, run_id: str = "", sample_index: int = 0
    ) -> EvalResult:
        body = {
            "instance_id": instance.get("instance_id"),
            "patch": patch,
            "instance": instance,
            "run_id": run_id,
            "sample_index": sample_index,
        }
        resp = self._request("POST", "/evaluate", json=body, read_timeout=self.timeout_for(instance))
        try:
            data = resp.json()
        except ValueError:
            raise EvaluationError(f"eval server {self.url} answered with a body that is not JSON") from None
        return _parse_result(data, self.url)

    def timeout_for(self, instance: dict[str, Any]) -> float:
        """Seconds to wait for the answer on ``instance`` (see the module docstring)."""
        spec = instance.get("eval") if isinstance(instance, dict) else None
        if not isinstance(spec, dict):
            return self.timeout  # the server's own dataset decides: no better guess than the default
        try:
            per_command = float(spec.get("timeout") or 600)
            commands = 1 if spec.get("test_command") else 0
            if spec.get("benchmark_command"):
                commands += 2 * (int(spec.get("warmup", 1)) + int(spec.get("repeats", 5)))
        except (TypeError, ValueError):
            return self.timeout
        one = per_command * max(1, commands)
        return 2 * one + self.margin_s

    def health(self, retries: int = 1) -> tuple[bool, str]:
        """(answered 200, a line saying what answered) — for ``check`` and the launch screen.

        A probe, so it gives up quickly (one retry by default) whatever ``retries`` the client has.
        """
        try:
            resp = self._request("GET", "/health", read_timeout=10, retries=retries)
        except EvaluationError as exc:
            return False, str(exc)
        return True, f"eval server {self.url}: healthy ({resp.text.strip()[:80] or 'HTTP 200'})"


def _parse_result(data: Any, url: str) -> EvalResult:
    if not isinstance(data, dict):
        raise EvaluationError(f"eval server {url} answered {type(data).__name__}, expected an object")
    try:
        reward = float(data["reward"])
    except (KeyError, TypeError, ValueError):
        raise EvaluationError(f"eval server {url}: answer lacks a numeric 'reward'") from None
    if not math.isfinite(reward) or not 0.0 <= reward <= 1.0:
        raise EvaluationError(f"eval server {url}: reward {reward} is outside 0..1")
    speedup = data.get("speedup")
    if speedup is not None:
        try:
            speedup = float(speedup)
        except (TypeError, ValueError):
            raise EvaluationError(f"eval server {url}: 'speedup' is not a number") from None
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    return EvalResult(reward=reward, success=bool(data.get("success", False)), speedup=speedup, info=info)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
