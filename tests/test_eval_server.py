"""The eval server over real HTTP (local sandbox, no Docker): protocol, auth, errors, bounds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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


def test_concurrent_evaluations_are_bounded_by_workers(tmp_path):
    """Five requests at once, two workers: never more than two evaluations overlap."""
    log = tmp_path / "spans.log"
    cmd = (
        "python3 -c \"import time,sys; p=sys.argv[1]; open(p,'a').write(f'S {time.time()}\\n'); "
        "time.sleep(0.4); open(p,'a').write(f'E {time.time()}\\n')\" " + str(log)
    )
    inst = {"instance_id": "slow", "problem_statement": "x", "eval": {"test_command": cmd, "timeout": 30}}
    service = EvalService(sandbox="local", workers=2, env_config=EnvironmentConfig())
    httpd = EvalHTTPServer(("127.0.0.1", 0), service).start_background()
    try:
        client = EvalServerClient(httpd.url, retries=0)
        with ThreadPoolExecutor(5) as pool:
            results = list(pool.map(lambda i: client.evaluate(inst, NOTE, sample_index=i), range(5)))
        assert all(r.reward == 1.0 for r in results)
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
