"""The eval server over real HTTP (local sandbox, no Docker): protocol, auth, errors, bounds."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from demo_patches import DEMO, PAGER, PAGER_FIX

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import load_dataset
from agentdata_tui.evaluation import EvalServerClient
from agentdata_tui.evaluation.client import EvaluationError
from agentdata_tui.evaluation.server import EvalHTTPServer, EvalService

NOTE = "--- /dev/null\n+++ b/NOTES.txt\n@@ -0,0 +1 @@\n+looked at it\n"  # a harmless non-empty patch


@pytest.fixture
def demo_server():
    service = EvalService(sandbox="local", dataset=load_dataset(DEMO / "dataset.json"), workers=2)
    httpd = EvalHTTPServer(("127.0.0.1", 0), service, token="tok-123").start_background()
    yield httpd
    httpd.stop()


def test_grades_by_the_servers_dataset_and_ignores_sent_commands(demo_server, tmp_path):
    client = EvalServerClient(demo_server.url, "tok-123", retries=0)
    good = client.evaluate({"instance_id": PAGER}, PAGER_FIX, run_id="r", sample_index=2)
    assert (good.reward, good.success, good.speedup) == (1.0, True, None)
    assert good.info["status"] == "correct" and "evaluated_by" in good.info
    assert client.evaluate({"instance_id": PAGER}, "").info["status"] == "no_patch"
    # Reproduced on main: replacing tests.py ("Ran 0 tests ... OK") scored 1.0 against --dataset.
    first = (DEMO / "repos/pager/tests.py").read_text().splitlines()[0]
    gamed = client.evaluate(
        {"instance_id": PAGER}, f"--- a/tests.py\n+++ b/tests.py\n@@ -1 +1 @@\n-{first}\n+print('ok')\n"
    )
    assert (gamed.reward, gamed.success) == (0.0, False)
    assert gamed.info["status"] == "no_patch" and gamed.info["protected_changed"] == ["tests.py"]

    # A client sending its own commands: they never run, the dataset's tests decide.
    marker = tmp_path / "pwned"
    evil = {
        "instance_id": PAGER,
        "repo_path": str(tmp_path),
        "eval": {"test_command": f"touch {marker}", "timeout": 5},
    }
    res = client.evaluate(evil, NOTE)  # not empty, so that the tests run
    assert res.info["status"] == "tests_failed" and not marker.exists()

    ok, line = client.health()
    assert ok and "healthy" in line


def test_401_without_or_with_a_wrong_token(demo_server):
    body = {"instance_id": PAGER, "patch": ""}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "tok-123"}):
        r = requests.post(demo_server.url + "/evaluate", json=body, headers=headers, timeout=10)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"] == "Bearer" and "token" in r.json()["error"]
        assert "tok-123" not in r.text
    assert requests.get(demo_server.url + "/health", timeout=10).status_code == 401
    r = requests.get(demo_server.url + "/health", headers={"Authorization": "Bearer tok-123"}, timeout=10)
    assert r.status_code == 200 and r.json()["dataset_instances"] == 5
    with pytest.raises(EvaluationError, match="401"):
        EvalServerClient(demo_server.url, "wrong", retries=0).evaluate({"instance_id": PAGER}, "")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"patch": ""}).encode(), 400, "missing field 'instance_id'"),
        (json.dumps({"instance_id": PAGER}).encode(), 400, "missing field 'patch'"),
        (json.dumps({"instance_id": PAGER, "patch": 3}).encode(), 400, "'patch' must be a string"),
        (json.dumps({"instance_id": PAGER, "patch": "", "sample_index": "x"}).encode(), 400, "sample_index"),
        (json.dumps({"instance_id": "nope", "patch": ""}).encode(), 404, "not in the server's dataset"),
    ],
)
def test_bad_requests_get_a_message(demo_server, body, status, message):
    r = requests.post(
        demo_server.url + "/evaluate",
        data=body,
        headers={"Authorization": "Bearer tok-123", "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == status
    assert message in r.json()["error"]


def test_without_dataset_the_request_instance_is_used_and_crashes_are_500(tmp_path):
    service = EvalService(sandbox="local", workers=2, repo_root=DEMO)
    httpd = EvalHTTPServer(("127.0.0.1", 0), service).start_background()
    try:
        url = httpd.url + "/evaluate"
        inst = json.loads((DEMO / "dataset.json").read_text())[0]
        r = requests.post(url, json={"instance_id": PAGER, "patch": PAGER_FIX, "instance": inst}, timeout=60)
        assert r.status_code == 200 and r.json()["reward"] == 1.0
        r = requests.post(url, json={"instance_id": PAGER, "patch": ""}, timeout=10)
        assert r.status_code == 400 and "missing field 'instance'" in r.json()["error"]
        r = requests.post(url, json={"instance_id": PAGER, "patch": "", "instance": {"eval": 5}}, timeout=10)
        assert r.status_code == 400 and "instance.eval" in r.json()["error"]
        # The evaluation's sandbox cannot start: 500 with a message...
        broken = dict(inst, repo_path=str(tmp_path / "missing"))
        r = requests.post(url, json={"instance_id": PAGER, "patch": NOTE, "instance": broken}, timeout=30)
        assert r.status_code == 500 and "not a folder" in r.json()["error"]
        # ... and the server keeps serving.
        r = requests.post(url, json={"instance_id": PAGER, "patch": PAGER_FIX, "instance": inst}, timeout=60)
        assert r.status_code == 200 and r.json()["success"] is True
        assert requests.get(httpd.url + "/health", timeout=10).json()["served"] == 3
    finally:
        httpd.stop()


def test_concurrent_evaluations_are_bounded_by_workers(tmp_path, unisolated):
    """Five requests at once, two workers: never more than two evaluations overlap."""
    log = tmp_path / "spans.log"
    cmd = (
        "python3 -c \"import time,sys; p=sys.argv[1]; open(p,'a').write(f'S {time.time()}\\n'); "
        "time.sleep(0.4); open(p,'a').write(f'E {time.time()}\\n')\" " + str(log)
    )
    inst = {"instance_id": "slow", "problem_statement": "x", "eval": {"test_command": cmd, "timeout": 30}}
    # Two running, one waiting: the other two get 503 + Retry-After and the client comes back.
    service = EvalService(
        sandbox="local", workers=2, queue=1, retry_after_s=1, env_config=EnvironmentConfig()
    )
    httpd = EvalHTTPServer(("127.0.0.1", 0), service).start_background()
    try:
        client = EvalServerClient(httpd.url, retries=8)
        with ThreadPoolExecutor(5) as pool:
            results = list(pool.map(lambda i: client.evaluate(inst, NOTE, sample_index=i), range(5)))
        assert all(r.reward == 1.0 for r in results)
        assert service.rejected >= 2 and service.served == 5
    finally:
        httpd.stop()
    events = sorted((float(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines()))
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "S" else -1
        peak = max(peak, running)
    assert len(events) == 10 and peak == 2


def test_cli_eval_server_subprocess(tmp_path):
    """``agentdata-tui eval-server`` as a process: URL on stdout, token from the environment, never logged."""
    env = dict(os.environ, AGENTDATA_EVAL_TOKEN="env-secret-42")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentdata_tui",
            "eval-server",
            "--port",
            "0",
            "--dataset",
            str(DEMO / "dataset.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert m, line
        url = m.group(1)
        assert (
            requests.post(url + "/evaluate", json={"instance_id": PAGER, "patch": ""}, timeout=10).status_code
            == 401
        )
        good = EvalServerClient(url, "env-secret-42", retries=0).evaluate({"instance_id": PAGER}, PAGER_FIX)
        assert good.reward == 1.0
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "env-secret-42" not in line + out + err
    assert "POST /evaluate -> 401" in err and "POST /evaluate -> 200" in err


def test_cli_eval_server_bad_flags_are_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "agentdata_tui", "eval-server", "--dataset", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "nope.json" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_docker_server_without_dataset_needs_an_image_in_the_request():
    """Checked before any container is made: a 400 naming the field, not a 500 from Docker."""
    from agentdata_tui.evaluation.server import BadRequest

    service = EvalService(sandbox="docker", workers=1)
    body = {"instance_id": "x", "patch": "", "instance": {"eval": {"test_command": "true"}}}
    with pytest.raises(BadRequest, match="instance.image") as err:
        service.parse(body)
    assert err.value.status == 400
    inst, *_ = service.parse({**body, "instance": {**body["instance"], "image": "img:1"}})
    assert inst.image == "img:1"


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(re.search(r"VmRSS:\s+(\d+)", fh.read()).group(1))


@pytest.fixture
def server_process():
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentdata_tui", "eval-server", "--port", "0", "--token", "tok-9",
         "--workers", "2", "--dataset", str(DEMO / "dataset.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    assert m, line
    yield proc, int(m.group(1))
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_401_comes_before_the_body_is_read(server_process):
    """Reproduced on main: 8 x 50 MB unauthenticated bodies raised the server from 43 to 283 MB."""
    import socket

    proc, port = server_process
    rss0 = _rss_kb(proc.pid)
    answers, sent = [], []
    for _ in range(8):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(
                b"POST /evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 52428800\r\n\r\n"
            )
            # Send as much of the 50 MB as the server takes in. What it does not read stays in the
            # two sockets' kernel buffers (a few MB) and then the send blocks: bytes sent bound the
            # bytes the server read.
            s.settimeout(2)
            n, chunk = 0, b"x" * 65536
            with contextlib.suppress(OSError):
                while n < 52428800:
                    n += s.send(chunk)
            sent.append(n)
            data = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    data += chunk
            answers.append(data.split(b"\r\n", 1)[0])
    rss1 = _rss_kb(proc.pid)
    print(f"401 x8: the client got {max(sent)} of 52428800 body bytes in, RSS {rss0} -> {rss1} kB")
    assert answers.count(b"HTTP/1.1 401 Unauthorized") >= 1 and set(answers) <= {
        b"HTTP/1.1 401 Unauthorized",
        b"",
    }
    assert max(sent) < 20 * 1024 * 1024, sent  # the server never read the bodies
    assert rss1 - rss0 < 20 * 1024, (rss0, rss1)  # kB: flat, not +240 MB


@pytest.mark.slow
def test_50_concurrent_requests_get_503_with_retry_after_beyond_the_queue(server_process):
    proc, port = server_process
    url = f"http://127.0.0.1:{port}/evaluate"
    body = {"instance_id": PAGER, "patch": PAGER_FIX}
    barrier = threading.Barrier(50)

    def post(_):
        barrier.wait()
        return requests.post(url, json=body, headers={"Authorization": "Bearer tok-9"}, timeout=120)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(post, range(50)))
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 503}, statuses
    busy = [r for r in answers if r.status_code == 503]
    # 2 workers + 2 waiting admitted at a time: most of the 50 are told to come back.
    assert len(busy) >= 30 and statuses.count(200) >= 4
    assert all(r.headers["Retry-After"].isdigit() and "busy" in r.json()["error"] for r in busy)
    assert all(r.json()["reward"] == 1.0 for r in answers if r.status_code == 200)
    rss = _rss_kb(proc.pid)
    print(f"50 concurrent: {len(busy)} x 503, RSS {rss} kB")
    health = requests.get(
        f"http://127.0.0.1:{port}/health", headers={"Authorization": "Bearer tok-9"}, timeout=10
    )
    assert health.json()["rejected"] == len(busy) and health.json()["busy"] == 0


def test_local_sandbox_on_a_reachable_address_is_refused_unless_explicit():
    """Reproduced on main: with --sandbox local a patch's os.system(...) ran as root on the eval host."""
    for host in ("0.0.0.0", "10.1.2.3"):
        r = subprocess.run(
            [sys.executable, "-m", "agentdata_tui", "eval-server", "--host", host, "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert "--sandbox docker" in r.stderr and "--allow-remote-local-sandbox" in r.stderr
    # The flag is the explicit opt-in: the check passes and only the bind itself fails here.
    r = subprocess.run(
        [sys.executable, "-m", "agentdata_tui", "eval-server", "--host", "10.1.2.3", "--port", "0",
         "--allow-remote-local-sandbox"],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "cannot listen on 10.1.2.3" in r.stderr
