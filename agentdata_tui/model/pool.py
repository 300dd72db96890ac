"""Several model endpoints behind one ``Model`` (issue 13 §2): ``--base-url A,B,C`` or ``model.endpoints``.

- **Sticky**: a rollout keeps the endpoint it started on, so that server's prefix cache keeps
  its conversation; it moves only when that endpoint fails.
- **Least loaded**: a new rollout goes to the healthy endpoint with the fewest rollouts on it
  (ties: fewest requests in flight, then the order given).
- **Failing endpoints are taken out**: a request that fails in a way worth retrying
  (connection refused, timeout, 5xx, 429, a malformed reply) marks its endpoint down and the
  request is sent at once to another one; a prober thread asks a down endpoint
  ``GET /models`` (backing off 1 s → 30 s) and puts it back when it answers.
- **Per-endpoint figures** (:meth:`EndpointPool.stats`): requests, errors, mean and last
  latency, rollouts on it, rollouts moved away, health — for ``run.json`` and the dashboard.

Each endpoint is an :class:`~agentdata_tui.model.client.OpenAIModel` with no retries of its
own: the pool retries across endpoints, so one dead server costs a rollout a reconnect, not
minutes of backoff. While every endpoint is down, a request waits for one to come back (backing
off) until ``model.retry_budget_s`` is spent (or ``model.max_retries`` such rounds, when the
config sets it), as the single-endpoint client does.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from agentdata_tui.config import ModelConfig
from agentdata_tui.interfaces import ModelError, ModelResponse, ModelUnavailable, RolloutContext

log = logging.getLogger(__name__)

PROBE_MIN_S = 1.0
PROBE_MAX_S = 30.0


def split_endpoints(value: str | list[str] | None) -> list[str]:
    """``"http://a/v1, http://b/v1"`` (or a list) → clean base URLs, order kept, duplicates dropped."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    out: list[str] = []
    for item in items:
        url = item.strip().rstrip("/")
        if url and url not in out:
            out.append(url)
    return out


def rollout_key(context: RolloutContext | None) -> tuple[Any, ...]:
    if context is None:
        return ("",)
    return (context.run_id, context.instance_id, context.sample_index, context.attempt)


@dataclass
class Endpoint:
    index: int
    base_url: str
    public_url: str
    client: Any  # OpenAIModel (or anything with query/close)
    healthy: bool = True
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    rollouts: int = 0  # rollouts currently assigned
    rollouts_total: int = 0
    moved_away: int = 0
    latency_sum: float = 0.0
    last_latency: float | None = None
    last_error: str | None = None
    down_since: float | None = None
    next_probe: float = 0.0
    probe_wait: float = PROBE_MIN_S
    downs: int = 0
    history: list[tuple[float, bool]] = field(default_factory=list)  # (time, healthy) transitions

    def stats(self) -> dict[str, Any]:
        ok = self.requests - self.errors
        return {
            "url": self.public_url,
            "healthy": self.healthy,
            "requests": self.requests,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "rollouts": self.rollouts,
            "rollouts_total": self.rollouts_total,
            "moved_away": self.moved_away,
            "mean_latency_s": round(self.latency_sum / ok, 4) if ok > 0 else None,
            "last_latency_s": self.last_latency,
            "times_down": self.downs,
            "last_error": self.last_error,
        }


class EndpointPool:
    """Implements ``interfaces.Model`` over several OpenAI-compatible endpoints of one model."""

    def __init__(
        self,
        base_urls: list[str],
        api_key: str | None,
        model_name: str,
        config: ModelConfig,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        pool_size: int = 4,
        probe_min_s: float = PROBE_MIN_S,
        probe_max_s: float = PROBE_MAX_S,
        client_factory=None,
        prober=None,
        served_name: str | None = None,
    ) -> None:
        from agentdata_tui.model.client import OpenAIModel, list_models, public_url

        if not base_urls:
            raise ValueError("an endpoint pool needs at least one base URL")
        self.name = model_name
        self.config = config
        self.retry_budget_s = float(config.retry_budget_s)
        self.max_rounds = config.max_retries if "max_retries" in config.model_fields_set else None
        self.probe_min_s = probe_min_s
        self.probe_max_s = probe_max_s
        self._key = api_key
        single = config.model_copy(update={"max_retries": 0})
        per = max(1, pool_size)

        def make(url: str):
            return OpenAIModel(
                url,
                api_key,
                model_name,
                single,
                temperature=temperature,
                max_tokens=max_tokens,
                pool_size=per,
                served_name=served_name,
            )

        factory = client_factory or make
        self._probe = prober or (lambda url: list_models(url, api_key, timeout=5))
        self.endpoints = [
            Endpoint(i, url, public_url(url), factory(url))
            for i, url in enumerate(split_endpoints(base_urls))
        ]
        self.base_url = self.endpoints[0].base_url  # for code that shows "the" server
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._assigned: dict[tuple[Any, ...], int] = {}
        self._trail: dict[tuple[Any, ...], list[int]] = {}
        self._closed = threading.Event()
        self._prober = threading.Thread(target=self._probe_loop, name="endpoint-prober", daemon=True)
        self._prober.start()

    def __repr__(self) -> str:
        urls = ", ".join(e.public_url for e in self.endpoints)
        return f"EndpointPool([{urls}], model={self.name!r}, key={'set' if self._key else 'none'})"

    # -- routing ------------------------------------------------------------------------
    def _pick(self, key: tuple[Any, ...]) -> Endpoint | None:
        """The rollout's endpoint if healthy, else the least-loaded healthy one (None: all down)."""
        cur = self._assigned.get(key)
        if cur is not None and self.endpoints[cur].healthy:
            return self.endpoints[cur]
        healthy = [e for e in self.endpoints if e.healthy]
        if not healthy:
            return None
        best = min(healthy, key=lambda e: (e.rollouts, e.in_flight, e.index))
        if cur is not None:
            old = self.endpoints[cur]
            old.rollouts -= 1
            old.moved_away += 1
            log.info("rollout %s moved from %s to %s", key[1:], old.public_url, best.public_url)
        best.rollouts += 1
        best.rollouts_total += 1
        self._assigned[key] = best.index
        self._trail.setdefault(key, []).append(best.index)
        return best

    def _mark_down(self, ep: Endpoint, reason: str) -> None:
        if ep.healthy:
            ep.healthy = False
            ep.downs += 1
            ep.down_since = time.monotonic()
            ep.probe_wait = self.probe_min_s
            ep.next_probe = time.monotonic() + ep.probe_wait
            ep.history.append((time.time(), False))
            log.warning("model endpoint %s taken out: %s", ep.public_url, reason)
        ep.last_error = reason[:300]
        self._changed.notify_all()

    def _mark_up(self, ep: Endpoint) -> None:
        if not ep.healthy:
            ep.healthy = True
            ep.down_since = None
            ep.history.append((time.time(), True))
            log.warning("model endpoint %s answers again: back in", ep.public_url)
        self._changed.notify_all()

    # -- Model --------------------------------------------------------------------------
    def query(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        context: RolloutContext | None = None,
    ) -> ModelResponse:
        key = rollout_key(context)
        rounds = 0
        started = time.monotonic()
        last = ""
        while True:
            if self._closed.is_set():
                raise ModelError("model client closed")
            with self._lock:
                ep = self._pick(key)
                if ep is None:
                    rounds += 1
                    left = self.retry_budget_s - (time.monotonic() - started)
                    if left <= 0 or (self.max_rounds is not None and rounds > self.max_rounds):
                        break
                    # Every endpoint is down: wait for one to come back (or a backoff round).
                    self._changed.wait(min(left, self.probe_max_s, self.probe_min_s * 2**rounds))
                    continue
                ep.in_flight += 1
                ep.requests += 1
            t0 = time.perf_counter()
            try:
                resp = ep.client.query(messages, tools=tools, context=context)
            except ModelUnavailable as exc:
                last = f"{ep.public_url}: {exc}"
                with self._lock:
                    ep.in_flight -= 1
                    ep.errors += 1
                    self._mark_down(ep, str(exc))
                continue
            except ModelError as exc:  # the server refused this request (4xx): not the endpoint's fault
                with self._lock:
                    ep.in_flight -= 1
                    ep.errors += 1
                    ep.last_error = str(exc)[:300]
                raise
            except BaseException:
                with self._lock:
                    ep.in_flight -= 1
                raise
            with self._lock:
                ep.in_flight -= 1
                dt = time.perf_counter() - t0
                ep.latency_sum += dt
                ep.last_latency = round(dt, 4)
            return resp
        n = len(self.endpoints)
        raise ModelError(
            f"all {n} model endpoints failed (down for {time.monotonic() - started:.0f}s, {rounds} rounds); last: {last}"
        )

    def end_rollout(self, context: RolloutContext | None) -> dict[str, Any]:
        """The rollout is over: free its place. Returns which endpoints it used (for its metadata)."""
        key = rollout_key(context)
        with self._lock:
            cur = self._assigned.pop(key, None)
            if cur is not None:
                self.endpoints[cur].rollouts -= 1
            trail = self._trail.pop(key, [])
        urls = [self.endpoints[i].public_url for i in trail]
        return {"endpoint": urls[-1] if urls else None, "endpoints_used": urls}

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e.stats() for e in self.endpoints]

    def healthy_count(self) -> int:
        with self._lock:
            return sum(e.healthy for e in self.endpoints)

    # -- probing --------------------------------------------------------------------------
    def _probe_loop(self) -> None:
        while not self._closed.is_set():
            now = time.monotonic()
            with self._lock:
                due = [e for e in self.endpoints if not e.healthy and e.next_probe <= now]
                waits = [e.next_probe - now for e in self.endpoints if not e.healthy and e.next_probe > now]
            for ep in due:
                try:
                    self._probe(ep.base_url)
                except Exception as exc:
                    with self._lock:
                        ep.last_error = str(exc)[:300]
                        ep.probe_wait = min(self.probe_max_s, ep.probe_wait * 2)
                        ep.next_probe = time.monotonic() + ep.probe_wait * (0.8 + 0.4 * random.random())
                else:
                    with self._lock:
                        self._mark_up(ep)
            self._closed.wait(max(0.05, min([*waits, self.probe_min_s / 2])))

    def interrupt(self) -> None:
        """A graceful stop: waits and calls in flight on every endpoint end now (see OpenAIModel)."""
        self._closed.set()
        with self._lock:
            self._changed.notify_all()
        for ep in self.endpoints:
            stop = getattr(ep.client, "interrupt", None)
            if callable(stop):
                stop()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._changed.notify_all()
        for ep in self.endpoints:
            ep.client.close()


def build_model(
    base_urls: list[str],
    api_key: str | None,
    model_name: str,
    config: ModelConfig,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    pool_size: int = 4,
    served_name: str | None = None,
):
    """One URL: the plain client (its own retries); several: an :class:`EndpointPool` over them.
    ``served_name``: the model name requests carry when it differs from the user's (see
    ``client.served_model_name``)."""
    from agentdata_tui.model.client import OpenAIModel

    urls = split_endpoints(base_urls)
    if len(urls) == 1:
        return OpenAIModel(
            urls[0],
            api_key,
            model_name,
            config,
            temperature=temperature,
            max_tokens=max_tokens,
            pool_size=pool_size,
            served_name=served_name,
        )
    return EndpointPool(
        urls,
        api_key,
        model_name,
        config,
        temperature=temperature,
        max_tokens=max_tokens,
        pool_size=pool_size,
        served_name=served_name,
    )
