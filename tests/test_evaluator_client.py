"""The eval-server client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentdata_tui.errors import UserError
from agentdata_tui.evaluation.client import EvalServerClient, EvaluationError, normalize_eval_url


class FakeEvalServer:
    """Answers POST /evaluate and GET /health; ``plan`` is a list of (status, body) served in order."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.plan: list[tuple[int, str]] = []
        self.default = (200, json.dumps({"reward": 0.75, "success": True, "speedup": 1.8, "info": {"k": 1}}))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # keep test output quiet
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body.decode()}
                )
                status, text = outer.plan.pop(0) if outer.plan else outer.default
                if status == 0:  # (0, "SECONDS"): answer normally, that late
                    time.sleep(float(text))
                    status, text = outer.default
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeEvalServer]:
    s = FakeEvalServer()
    yield s
    s.close()


def _client(url: str, token: str | None = "tok-123", retries: int = 3) -> EvalServerClient:
    return EvalServerClient(url, token, retries=retries, backoff=0.01, max_backoff=0.05, timeout=5)


def test_evaluate_sends_protocol_and_token(server: FakeEvalServer) -> None:
    inst = {"instance_id": "i1", "problem_statement": "p", "eval": {"test_command": "true"}}
    res = _client(server.url).evaluate(inst, "PATCH", run_id="run-9", sample_index=2)
    assert (res.reward, res.success, res.speedup, res.info) == (0.75, True, 1.8, {"k": 1})
    req = server.requests[0]
    assert req["path"] == "/evaluate" and req["auth"] == "Bearer tok-123"
    body = json.loads(req["body"])
    assert body == {
        "instance_id": "i1",
        "patch": "PATCH",
        "instance": inst,
        "run_id": "run-9",
        "sample_index": 2,
    }


def test_no_token_no_header(server: FakeEvalServer) -> None:
    _client(server.url, token=None).evaluate({"instance_id": "i"}, "")
    assert server.requests[0]["auth"] is None


def test_retries_502_503_504_only(server: FakeEvalServer) -> None:
    server.plan = [(502, "bad gateway"), (503, "busy"), (504, "gateway timeout")]
    res = _client(server.url).evaluate({"instance_id": "i"}, "p")
    assert res.reward == 0.75
    assert len(server.requests) == 4


@pytest.mark.parametrize("status", [500, 429, 408])
def test_a_500_is_the_evaluations_own_failure_and_not_retried(server: FakeEvalServer, status: int) -> None:
    """Reproduced on main: "evaluation crashed" (500) was run again and again, 6 times."""
    server.plan = [(status, '{"error": "evaluation crashed: RuntimeError: boom"}')]
    with pytest.raises(EvaluationError, match=str(status)):
        _client(server.url).evaluate({"instance_id": "i"}, "p")
    assert len(server.requests) == 1


def test_the_read_timeout_follows_the_instances_eval_timeout(server: FakeEvalServer) -> None:
    client = EvalServerClient(server.url, timeout=3600)
    assert client.timeout_for({"instance_id": "i"}) == 3600  # the server's dataset decides
    tests_only = {"eval": {"test_command": "t", "timeout": 30}}
    assert client.timeout_for(tests_only) == 2 * 30 + 60
    bench = {
        "eval": {"test_command": "t", "benchmark_command": "b", "warmup": 1, "repeats": 5, "timeout": 10}
    }
    assert client.timeout_for(bench) == 2 * 10 * (1 + 12) + 60
    # For real: an answer later than that is a timeout, retried, then an EvaluationError.
    client = _client(server.url, retries=1)
    client.margin_s = 0.2
    server.plan = [(0, "3"), (0, "3")]
    inst = {"instance_id": "i", "eval": {"test_command": "t", "timeout": 0.2}}
    with pytest.raises(EvaluationError, match="unavailable after 2 tries: .*Timeout"):
        client.evaluate(inst, "p")
    assert len(server.requests) == 2


def test_gives_up_after_retries(server: FakeEvalServer) -> None:
    server.plan = [(503, "busy")] * 10
    with pytest.raises(EvaluationError, match="unavailable after 3 tries"):
        _client(server.url, retries=2).evaluate({"instance_id": "i"}, "p")
    assert len(server.requests) == 3


def test_client_error_not_retried(server: FakeEvalServer) -> None:
    server.plan = [(401, "bad token")]
    with pytest.raises(EvaluationError, match="401"):
        _client(server.url).evaluate({"instance_id": "i"}, "p")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps([1, 2]), json.dumps({"success": True}), json.dumps({"reward": 3.0})],
)
def test_malformed_answers(server: FakeEvalServer, body: str) -> None:
    server.plan = [(200, body)]
    with pytest.raises(EvaluationError):
        _client(server.url).evaluate({"instance_id": "i"}, "p")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(EvaluationError, match="unavailable"):
        _client(url, retries=1).evaluate({"instance_id": "i"}, "p")
    ok, msg = _client(url, retries=0).health()
    assert not ok and url in msg


def test_health(server: FakeEvalServer) -> None:
    server.plan = [(200, "ok")]
    ok, msg = _client(server.url).health()
    assert ok and "healthy" in msg
    assert server.requests[0]["path"] == "/health" and server.requests[0]["auth"] == "Bearer tok-123"


def test_normalize_eval_url() -> None:
    assert normalize_eval_url("local") is None
    assert normalize_eval_url("") is None
    assert normalize_eval_url("10.0.0.5:9528") == "http://10.0.0.5:9528"
    assert normalize_eval_url("http://h:1/") == "http://h:1"
    for bad in ("nonsense", "ftp://h:1", "host:port"):
        with pytest.raises(UserError):
            normalize_eval_url(bad)


def test_health_is_a_quick_probe_and_host_port_is_accepted(server: FakeEvalServer) -> None:
    hostport = server.url.replace("http://", "")
    server.plan = [(503, "busy"), (503, "busy"), (503, "busy")]
    client = EvalServerClient(hostport, None, retries=10, backoff=0.01)
    assert client.url == server.url
    ok, msg = client.health()
    assert not ok and "2 tries" in msg
    assert len(server.requests) == 2
