"""A loopback OpenAI-compatible model server: scripted replies, fixed latency, injected faults.

Tests and benchmarks talk real HTTP to it (``GET /v1/models``, ``POST /v1/chat/completions``)
so the client's retries, timeouts, headers and connection pool are exercised for real.

- ``responder(body) -> str | Reply`` decides each chat reply; :class:`ScriptedResponder` plays
  per-instance scripts and is stateless (the reply is picked from the request alone), so a run
  that is killed and resumed gets the same replies.
- ``server.faults`` is a queue of actions, one consumed per request (any path), before the
  normal answer: ``("status", 429, {"Retry-After": "0"})``, ``("status", 500)``,
  ``("hang", seconds)`` (no answer, connection closed after), ``("malformed",)`` (200 with a
  body that is not JSON), ``("no_choices",)``, ``("context_length",)`` (OpenAI's 400
  ``context_length_exceeded``), ``("error", status, message)`` (an OpenAI error body),
  ``("drop",)`` (connection closed without an answer), ``("trickle", seconds)`` (a normal
  answer sent one byte every ``seconds``, headers included), ``("body", status, payload)``
  (that JSON payload as the answer, e.g. a malformed 200), ``("cut",)`` (a normal answer's
  headers and half its body, then the connection closed).
- ``port`` fixes the port, so a test can stop the server and start another on the same
  address (a restart); ``stop()`` also ends kept-alive connections, as a dying server does.
- ``latency`` sleeps in the handler; threads are daemons and the listen backlog is large, so
  hundreds of clients can wait at once (the rollout benchmark runs 256).
- Benchmarks that measure the client process's own CPU run the server in another process:
  :class:`ModelServerProcess` (or ``python tests/servers/model_server.py --latency 1``, which
  prints its base URL and serves until stdin closes or SIGTERM).

Tests import it as ``from servers.model_server import ModelServer`` (pytest puts ``tests/``
on ``sys.path``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "THOUGHT: done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"
_BASH_BLOCK = re.compile(r"```bash\s*\n(.*?)\n```", re.DOTALL)


@dataclass
class Reply:
    """One chat completion the server answers with."""

    content: str | None = ""
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_field: str = "reasoning_content"  # some servers name it "reasoning"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes = b""
    client_port: int = 0  # one port per TCP connection: shows whether the client reuses them


Responder = Callable[[dict[str, Any]], "str | Reply"]


def _first_user_text(messages: list[dict[str, Any]]) -> str:
    for m in messages:
        if m.get("role") == "user":
            content = m.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def command_of(text: str) -> tuple[str, str]:
    """Split a scripted reply into (thought, command): the ```bash block, else the whole text."""
    m = _BASH_BLOCK.search(text)
    if not m:
        return "", text
    return text[: m.start()].strip(), m.group(1)


class ScriptedResponder:
    """Plays scripts keyed by a substring of the first user message (e.g. the instance_id).

    The reply index is the number of assistant messages already in the request; past the end
    of a script its last reply repeats. With several matching keys the longest wins (so
    ``task-1`` does not capture ``task-10``). Entries are strings or dicts of :class:`Reply`
    fields. With ``tool_call=True`` a string's ```bash block (or the whole string) becomes a
    ``bash`` tool call and the text before the block its content.
    """

    def __init__(
        self,
        scripts: dict[str, list[str | dict[str, Any]]],
        default: list[str | dict[str, Any]] | None = None,
        tool_call: bool = False,
    ) -> None:
        self.scripts = scripts
        self.default = default or [DEFAULT_REPLY]
        self.tool_call = tool_call

    def script_for(self, messages: list[dict[str, Any]]) -> list[str | dict[str, Any]]:
        text = _first_user_text(messages)
        keys = [k for k in self.scripts if k in text]
        if not keys:
            return self.default
        return self.scripts[max(keys, key=len)] or self.default

    def __call__(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages") or []
        script = self.script_for(messages)
        n = sum(1 for m in messages if m.get("role") == "assistant")
        entry = script[min(n, len(script) - 1)]
        reply = Reply(**entry) if isinstance(entry, dict) else Reply(content=entry)
        if self.tool_call and reply.tool_calls is None and isinstance(entry, str):
            thought, command = command_of(entry)
            reply.content = thought
            reply.tool_calls = [
                {
                    "id": f"call_{n + 1}",
                    "type": "function",
                    "function": {"name": "bash", "arguments": json.dumps({"command": command})},
                }
            ]
            reply.finish_reason = "tool_calls"
        return reply


def _default_responder(body: dict[str, Any]) -> Reply:
    return Reply(content=DEFAULT_REPLY)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    owner: ModelServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server: the client's pool is exercised
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to every answer, which would pass for model latency in the benchmarks.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None

    def setup(self) -> None:
        super().setup()
        with self.server.owner._lock:
            self.server.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.owner._lock:
            self.server.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        owner._record(
            RecordedRequest(method, self.path, dict(self.headers.items()), body, raw, self.client_address[1])
        )
        with owner._lock:
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        try:
            self._answer(owner, method, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a broken responder: say so (HTTP 500 + server.errors), don't just hang up
            owner.errors.append(exc)
            with contextlib.suppress(OSError):
                self._send_json(500, {"error": {"message": f"test server failed: {exc!r}", "type": "server"}})
        finally:
            with owner._lock:
                owner.in_flight -= 1

    def _answer(self, owner: ModelServer, method: str, body: dict[str, Any] | None) -> None:
        fault = owner._next_fault()
        if fault is not None and self._fault(owner, fault, body):
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path.endswith("/models"):
            self._send_json(
                200, {"object": "list", "data": [{"id": m, "object": "model"} for m in owner.models]}
            )
            return
        if method == "POST" and path.endswith("/chat/completions"):
            if not isinstance(body, dict):
                self._send_json(400, {"error": {"message": "body is not a JSON object", "type": "invalid"}})
                return
            if owner.latency:
                owner._stopping.wait(owner.latency)
            self._send_json(200, owner._completion(body))
            return
        self._send_json(404, {"error": {"message": f"no route {method} {self.path}"}})

    def _fault(self, owner: ModelServer, fault: tuple[Any, ...], body: dict[str, Any] | None) -> bool:
        """Play one injected fault; False means: answer normally after it."""
        kind = fault[0]
        if kind == "status":
            status = int(fault[1])
            headers = fault[2] if len(fault) > 2 else {}
            self._send_json(
                status, {"error": {"message": f"injected status {status}", "type": "fault"}}, headers
            )
        elif kind == "error":
            self._send_json(int(fault[1]), {"error": {"message": fault[2], "type": "invalid_request_error"}})
        elif kind == "hang":
            owner._stopping.wait(float(fault[1]))
            self.close_connection = True
        elif kind == "drop":
            self.close_connection = True
        elif kind == "malformed":
            self._send_json(200, b"<html>502 bad gateway</html>")
        elif kind == "no_choices":
            self._send_json(200, {"id": "x", "object": "chat.completion", "choices": []})
        elif kind == "context_length":
            self._send_json(
                400,
                {
                    "error": {
                        "message": "This model's maximum context length is 8192 tokens. However, your "
                        "messages resulted in 9001 tokens. Please reduce the length of the messages.",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                },
            )
        elif kind == "body":
            self._send_json(int(fault[1]), json.dumps(fault[2]).encode())
        elif kind == "trickle":
            payload = json.dumps(owner._completion(body if isinstance(body, dict) else {})).encode()
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode()
            for i in range(len(head) + len(payload)):
                if owner._stopping.wait(float(fault[1])):
                    break
                byte = (head + payload)[i : i + 1]
                self.wfile.write(byte)
                self.wfile.flush()
            self.close_connection = True
        elif kind == "cut":  # the headers and half the body of a normal answer, then closed
            payload = json.dumps(owner._completion(body if isinstance(body, dict) else {})).encode()
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode()
            self.wfile.write(head + payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif kind == "delay":  # slow, then a normal answer
            owner._stopping.wait(float(fault[1]))
            return False
        else:
            raise ValueError(f"unknown fault {fault!r}")
        return True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class ModelServer:
    """A real HTTP server on 127.0.0.1 (port 0); use as a context manager or start()/stop()."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        models: tuple[str, ...] = ("test-model",),
        latency: float = 0.0,
        record: bool = True,
        port: int = 0,
    ) -> None:
        """``record=False`` keeps only a count of requests (long benchmarks); ``port`` 0 = any free one."""
        self._connections: set[Any] = set()
        self.responder = responder
        self.record = record
        self.request_count = 0
        self.models = tuple(models)
        self.latency = latency
        self.port = port
        self.faults: collections.deque[tuple[Any, ...]] = collections.deque()
        self.requests: list[RecordedRequest] = []
        self.errors: list[BaseException] = []  # exceptions raised by the responder
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        # ``tokens(body, reply, payload)`` adds token ids / logprobs to a reply the way vLLM does
        # (only when the request asks, ``return_token_ids``); None: a server without them
        self.tokens: Callable[[dict[str, Any], Reply, dict[str, Any]], None] | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> ModelServer:
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", self.port), _Handler)
        self._httpd.owner = self
        port = self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="model-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # kept-alive connections die with the server
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests ---------------------------------------------------------
    def add_faults(self, *faults: tuple[Any, ...]) -> None:
        with self._lock:
            self.faults.extend(faults)

    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Block until ``n`` requests (any path) have arrived; False on timeout."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.request_count >= n, timeout)

    def _record(self, req: RecordedRequest) -> None:
        with self._arrived:
            self.request_count += 1
            if self.record:
                self.requests.append(req)
            self._arrived.notify_all()

    def _next_fault(self) -> tuple[Any, ...] | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = (self.responder or _default_responder)(body)
        if isinstance(reply, str):
            reply = Reply(content=reply)
        messages = body.get("messages") or []
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages if isinstance(m, dict))
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning_content is not None:
            message[reply.reasoning_field] = reply.reasoning_content
        if reply.tool_calls is not None:
            message["tool_calls"] = reply.tool_calls
        payload = {
            "id": f"chatcmpl-{self.request_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": {
                "prompt_tokens": reply.prompt_tokens
                if reply.prompt_tokens is not None
                else prompt_chars // 4 + 1,
                "completion_tokens": reply.completion_tokens
                if reply.completion_tokens is not None
                else len(reply.content or "") // 4 + 1,
            },
        }
        if self.tokens is not None and body.get("return_token_ids"):
            self.tokens(body, reply, payload)
        return payload


class ModelServerProcess:
    """The same server in a child process, so its CPU is not the caller's (benchmarks).

    ``scripts``/``default``/``tool_call`` configure a :class:`ScriptedResponder` there.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        scripts: dict[str, list[Any]] | None = None,
        default: list[Any] | None = None,
        tool_call: bool = False,
        models: tuple[str, ...] = ("test-model",),
        port: int = 0,
    ) -> None:
        """``port`` 0 = any free one; give the old port to restart a killed server where it was."""
        self.config = {
            "port": port,
            "latency": latency,
            "scripts": scripts or {},
            "default": default,
            "tool_call": tool_call,
            "models": list(models),
        }
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> ModelServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--config-json", json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"model server process did not start (said {line!r})")
        self.base_url = line
        self.config["port"] = int(line.rsplit(":", 1)[1].split("/", 1)[0])
        return self

    @property
    def port(self) -> int:
        return int(self.config["port"])

    def kill(self) -> None:
        """SIGKILL, as a crashed server: connections reset, nothing answers on the port."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> ModelServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Loopback OpenAI-compatible test model server.")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each chat answer")
    parser.add_argument("--scripts", help="JSON file: {key: [reply, ...]} for a ScriptedResponder")
    parser.add_argument("--tool-call", action="store_true", help="answer with bash tool calls")
    parser.add_argument("--config-json", help="all settings as one JSON object (ModelServerProcess)")
    args = parser.parse_args(argv)
    cfg: dict[str, Any] = {
        "latency": args.latency,
        "scripts": {},
        "default": None,
        "tool_call": args.tool_call,
    }
    if args.scripts:
        with open(args.scripts, encoding="utf-8") as fh:
            cfg["scripts"] = json.load(fh)
    if args.config_json:
        cfg.update(json.loads(args.config_json))
    responder = ScriptedResponder(cfg["scripts"], default=cfg.get("default"), tool_call=cfg["tool_call"])
    server = ModelServer(
        responder,
        latency=cfg["latency"],
        models=tuple(cfg.get("models") or ("test-model",)),
        record=False,
        port=int(cfg.get("port") or 0),
    ).start()
    print(server.base_url, flush=True)
    with contextlib.suppress(ValueError, OSError, KeyboardInterrupt):
        sys.stdin.read()  # SIGTERM simply ends the process: nothing to save
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
