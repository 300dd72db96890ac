"""The eval server (DESIGN §4): the built-in evaluator behind ``POST /evaluate`` and ``GET /health``.

Why it looks like this:
- stdlib ``ThreadingHTTPServer``: one thread per connection, the evaluations themselves
  bounded by ``workers``; at most ``queue`` more wait their turn, and beyond that a request is
  answered 503 with ``Retry-After`` before its body is read (clients retry 503), so neither
  memory nor the wait grows with the number of clients;
- the token is checked on the headers alone: a request without it is answered 401 and the
  connection closed without reading its body (an unauthenticated client cannot make the server
  read, or hold, 64 MB);
- with a dataset, the instance (and so every command that runs) comes from the server's own
  file by ``instance_id``: a client cannot run commands of its choosing. Without one, the
  request's ``instance`` is graded as sent — only for trusted clients;
- a malformed request is the client's fault (400 naming what is wrong), a missing or wrong
  token 401, an unknown instance 404; an evaluation that crashes is 500 with a message and the
  server keeps serving;
- the token is compared in constant time and never logged; the access log names the path,
  the status, the instance and the time taken, nothing else.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Dataset, Instance
from agentdata_tui.evaluation.builtin import BuiltinEvaluator
from agentdata_tui.interfaces import Sandbox, SandboxError
from agentdata_tui.sandbox import SandboxContext, make_sandbox

log = logging.getLogger("agentdata_tui.eval_server")

MAX_BODY = 64 * 1024 * 1024  # a patch is at most ~1 MB; anything far bigger is a mistake


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class EvalService:
    """What the HTTP layer calls: validation, instance lookup, bounded grading."""

    sandbox: str = "local"  # local | docker
    env_config: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    dataset: Dataset | None = None
    docker_servers: list[str] = field(default_factory=list)
    workers: int = 4
    repo_root: Path = field(default_factory=Path.cwd)  # relative repo_path without a dataset
    queue: int | None = None  # requests waiting for a worker beyond the running ones (None: = workers)
    retry_after_s: int = 5

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.workers)
        if self.queue is None:
            self.queue = self.workers
        self._admitted = 0  # requests between admission and their answer (running + waiting)
        self.rejected = 0
        self._by_id = self.dataset.by_id() if self.dataset else {}
        self._lock = threading.Lock()
        self.busy = 0
        self.served = 0
        self._seq = 0

    # -- the sandbox of one evaluation ------------------------------------------------------
    def _sandbox_factory(self, run_id: str):
        def make(inst: Instance) -> Sandbox:
            with self._lock:
                self._seq += 1
                seq = self._seq
            if self.sandbox == "docker":
                kind = "docker_remote" if self.docker_servers else "docker"
                repo_dir = None
            else:
                kind = "local"
                repo_dir = self._repo_dir(inst)
            ctx = SandboxContext(
                run_id=run_id or "eval-server",
                rollout_id=f"eval-{seq:06d}",
                repo_dir=repo_dir,
                docker_servers=list(self.docker_servers),
                environment_class=kind,
            )
            return make_sandbox(inst, self.env_config, ctx)

        return make

    def _repo_dir(self, inst: Instance) -> Path | None:
        if self.dataset is not None:
            return self.dataset.repo_dir(inst)
        if not inst.repo_path:
            return None
        p = Path(inst.repo_path)
        return p if p.is_absolute() else (self.repo_root / p).resolve()

    # -- requests -----------------------------------------------------------------------------
    def parse(self, body: Any) -> tuple[Instance, str, str, int]:
        """(instance, patch, run_id, sample_index) of a request body, or BadRequest."""
        if not isinstance(body, dict):
            raise BadRequest(400, "the body must be a JSON object")
        instance_id = body.get("instance_id")
        if not isinstance(instance_id, str) or not instance_id:
            raw = body.get("instance")
            instance_id = raw.get("instance_id") if isinstance(raw, dict) else None
            if not isinstance(instance_id, str) or not instance_id:
                raise BadRequest(400, "missing field 'instance_id' (a non-empty string)")
        if "patch" not in body:
            raise BadRequest(400, "missing field 'patch' (a string; empty for no change)")
        patch = body["patch"]
        if not isinstance(patch, str):
            raise BadRequest(400, "field 'patch' must be a string")
        run_id = body.get("run_id") or ""
        if not isinstance(run_id, str):
            raise BadRequest(400, "field 'run_id' must be a string")
        sample_index = body.get("sample_index", 0)
        if sample_index is None:
            sample_index = 0
        if isinstance(sample_index, bool) or not isinstance(sample_index, int):
            raise BadRequest(400, "field 'sample_index' must be an integer")
        if self.dataset is not None:
            inst = self._by_id.get(instance_id)
            if inst is None:
                raise BadRequest(404, f"instance_id '{instance_id}' is not in the server's dataset")
            return inst, patch, run_id, sample_index
        raw = body.get("instance")
        if not isinstance(raw, dict):
            raise BadRequest(400, "missing field 'instance' (an object; this server has no --dataset)")
        raw = {"instance_id": instance_id, "problem_statement": "", **raw}
        try:
            inst = Instance.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise BadRequest(400, f"field 'instance.{loc}': {err['msg']}") from None
        if self.sandbox == "docker" and not (inst.image or self.env_config.image):
            raise BadRequest(400, "field 'instance.image' is missing (and the server's config sets no image)")
        return inst, patch, run_id, sample_index

    def evaluate(self, inst: Instance, patch: str, run_id: str, sample_index: int) -> dict[str, Any]:
        with self._slots:
            with self._lock:
                self.busy += 1
            t0 = time.monotonic()
            try:
                res = BuiltinEvaluator(self._sandbox_factory(run_id)).evaluate(
                    inst, patch, run_id=run_id, sample_index=sample_index
                )
            finally:
                with self._lock:
                    self.busy -= 1
                    self.served += 1
        info = dict(res.info)
        info.setdefault("evaluated_by", f"agentdata-tui eval-server ({self.sandbox})")
        info.setdefault("eval_time_s", round(time.monotonic() - t0, 3))
        return {"reward": res.reward, "success": res.success, "speedup": res.speedup, "info": info}

    # -- admission: a bounded number of requests in the house -----------------------------------
    def admit(self) -> bool:
        """Take a place (running or queued) for one request; False when all are taken."""
        with self._lock:
            if self._admitted >= self.workers + (self.queue or 0):
                self.rejected += 1
                return False
            self._admitted += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "sandbox": self.sandbox,
            "workers": self.workers,
            "queue": self.queue,
            "busy": self.busy,
            "waiting": max(0, self._admitted - self.busy),
            "rejected": self.rejected,
            "served": self.served,
            "dataset_instances": len(self._by_id) if self.dataset is not None else None,
        }


class _Handler(BaseHTTPRequestHandler):
    server: EvalHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 120  # seconds a client may stay silent mid-request or idle between requests

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib log names raw request lines
        return

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        token = self.server.token
        if not token:
            return True
        got = self.headers.get("Authorization", "")
        scheme, _, value = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def _access(self, status: int, t0: float, what: str = "") -> None:
        log.info(
            "%s %s -> %d %s(%.2fs)",
            self.command,
            self.path,
            status,
            f"{what} " if what else "",
            time.monotonic() - t0,
        )

    def do_GET(self) -> None:
        t0 = time.monotonic()
        path = self.path.split("?", 1)[0].rstrip("/")
        if not self._authorized():
            self._unauthorized()
            return self._access(401, t0)
        if path == "/health":
            self._send(200, self.server.service.health())
            return self._access(200, t0)
        self._send(404, {"error": f"no such endpoint: GET {path} (try POST /evaluate, GET /health)"})
        self._access(404, t0)

    def _unauthorized(self) -> None:
        """401 from the headers alone: the body is never read, the connection closed after."""
        self._refuse(
            401,
            {"error": "missing or wrong token (send 'Authorization: Bearer TOKEN')"},
            {"WWW-Authenticate": "Bearer"},
        )

    def _refuse(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        """Answer without reading a body that may be on its way, then close the connection."""
        self.close_connection = True
        self._send(status, payload, {**headers, "Connection": "close"})
        with contextlib.suppress(OSError):
            self.wfile.flush()
            # Our answer goes out before the close: half-close, so the client reads it even if
            # it is still sending (unread data at close() would turn into a reset).
            self.connection.shutdown(socket.SHUT_WR)

    def _drain(self) -> None:
        """Read the body we are not going to use, so the connection stays usable."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        if 0 < n <= MAX_BODY:
            self.rfile.read(n)
        elif n:
            self.close_connection = True

    def do_POST(self) -> None:
        t0 = time.monotonic()
        path = self.path.split("?", 1)[0].rstrip("/")
        if not self._authorized():
            self._unauthorized()
            return self._access(401, t0)
        if path != "/evaluate":
            self._drain()
            self._send(404, {"error": f"no such endpoint: POST {path} (try POST /evaluate)"})
            return self._access(404, t0)
        service = self.server.service
        if not service.admit():
            self._refuse(
                503,
                {
                    "error": f"busy: {service.workers} evaluations running and {service.queue} waiting; retry later"
                },
                {"Retry-After": str(service.retry_after_s)},
            )
            return self._access(503, t0)
        try:
            self._evaluate(service, t0)
        finally:
            service.release()

    def _evaluate(self, service: EvalService, t0: float) -> None:
        try:
            body = self._read_json()
            inst, patch, run_id, sample_index = service.parse(body)
        except BadRequest as exc:
            self._send(exc.status, {"error": str(exc)})
            return self._access(exc.status, t0, str(exc)[:80])
        try:
            result = service.evaluate(inst, patch, run_id, sample_index)
        except SandboxError as exc:
            self._send(500, {"error": f"evaluation sandbox failed: {exc}"})
            return self._access(500, t0, inst.instance_id)
        except Exception as exc:
            log.error("evaluation of %s crashed:\n%s", inst.instance_id, traceback.format_exc())
            self._send(500, {"error": f"evaluation crashed: {type(exc).__name__}: {exc}"})
            return self._access(500, t0, inst.instance_id)
        self._send(200, result)
        self._access(200, t0, f"{inst.instance_id} reward={result['reward']:.3f}")

    def _read_json(self) -> Any:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise BadRequest(411, "send the body with a Content-Length (chunked bodies are not accepted)")
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self.close_connection = True
            raise BadRequest(411, "missing or bad Content-Length") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise BadRequest(413, f"body of {length} bytes is larger than {MAX_BODY}")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BadRequest(400, f"the body is not valid JSON: {exc}") from None


class EvalHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: EvalService, token: str | None = None) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.token = token or None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start_background(self) -> EvalHTTPServer:
        """Serve from a daemon thread (tests, embedding); ``stop()`` ends it."""
        self._thread = threading.Thread(target=self.serve_forever, name="eval-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
