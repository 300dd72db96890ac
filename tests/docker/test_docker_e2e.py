"""End to end on a real Docker engine.

``generate-multi`` with ``docker_remote`` on 127.0.0.1:2375 (the shipped
``configs/docker_remote.yaml``), ``--eval-server`` pointing at ``agentdata-tui eval-server
--sandbox docker`` running as a subprocess, scripted model replies over loopback HTTP. One
rollout's container is killed from outside mid-command: that rollout ends as SandboxError and
the run completes. Afterwards no container of the run remains, and regrading the run through
the same eval server reproduces its rewards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from dockerutil import DEMO, REPO, containers_with, docker_dataset, wait_for
from servers.model_server import ModelServer, ScriptedResponder

from agentdata_tui.events import run_dir_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

KEY = "sk-e2e-docker-4f1c9a"
TOKEN = "evaltok-e2e-docker-77b2"
# Unique per test session: other sessions may run this very test on the same engine at once.
UID = uuid.uuid4().hex[:6]
SOURCES = {"demo__pager-last-page": f"e2e-pager-{UID}", "demo__units-fahrenheit": f"e2e-units-{UID}"}
PAGER, UNITS, KILLED = *SOURCES.values(), f"e2e-killed-{UID}"


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "agentdata_tui", *argv]


def _dataset(tmp_path: Path) -> Path:
    path = docker_dataset(tmp_path / "dataset.json", list(SOURCES))
    instances = json.loads(path.read_text())
    for inst in instances:
        inst["problem_statement"] = f"[{SOURCES[inst['instance_id']]}] {inst['problem_statement']}"
        inst["instance_id"] = SOURCES[inst["instance_id"]]
    killed = dict(instances[0], instance_id=KILLED, problem_statement=f"[{KILLED}] the container goes away.")
    path.write_text(json.dumps([*instances, killed], indent=1))
    return path


def _scripts() -> ScriptedResponder:
    replies = json.loads((DEMO / "replies.json").read_text())
    scripts: dict[str, list] = {f"[{new}]": replies[old] for old, new in SOURCES.items()}
    scripts[f"[{KILLED}]"] = [
        "THOUGHT: wait.\n\n```bash\nsleep 55 && echo woke\n```",
        "THOUGHT: done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```",
    ]
    return ScriptedResponder(scripts)


def test_generate_multi_on_docker_remote_with_a_docker_eval_server(docker_api, docker_tcp, tmp_path):
    dataset = _dataset(tmp_path)
    out = tmp_path / "out.json"
    run_dir = run_dir_for(out)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "AGENTDATA_EVAL_TOKEN")}
    eval_log = open(tmp_path / "eval-server.err", "w")  # noqa: SIM115 - the server writes to it until the end
    eval_proc = subprocess.Popen(
        _cli(
            "eval-server",
            "--port",
            "0",
            "--sandbox",
            "docker",
            "--docker-server",
            docker_tcp,
            "--dataset",
            str(dataset),
            "--workers",
            "2",
        ),
        stdout=subprocess.PIPE,
        stderr=eval_log,
        text=True,
        env=dict(env, AGENTDATA_EVAL_TOKEN=TOKEN),
    )
    gen = None
    try:
        first = eval_proc.stdout.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert m, first
        eval_url = m.group(1)
        with ModelServer(_scripts()) as model:
            gen = subprocess.Popen(
                _cli(
                    "generate-multi",
                    "--dataset",
                    str(dataset),
                    "--config",
                    str(REPO / "configs" / "docker_remote.yaml"),
                    "--docker-server",
                    docker_tcp,
                    "--eval-server",
                    eval_url,
                    "--eval-token",
                    TOKEN,
                    "--base-url",
                    model.base_url,
                    "--api-key",
                    KEY,
                    "--workers",
                    "3",
                    "--output",
                    str(out),
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )

            # Kill the third rollout's container while its command runs (a condition, not a sleep).
            def sleeping_container():
                for c in containers_with(docker_api, instance_id=KILLED):
                    if c["State"] == "running":
                        procs = docker_api.top(c["Id"]).get("Processes") or []
                        if any("sleep 55" in " ".join(p) for p in procs):
                            return c
                if gen.poll() is not None:
                    raise AssertionError(f"generate-multi ended early: {gen.communicate()}")
                return None

            victim = wait_for(
                sleeping_container, 180, "the rollout's container running `sleep 55`", interval=0.2
            )
            docker_api.kill(victim["Id"])
            stdout, stderr = gen.communicate(timeout=300)
        assert gen.returncode == 0, stderr

        data = json.loads(out.read_text())
        run_id = data["metadata"].get("run_id") or json.loads((run_dir / "run.json").read_text())["run_id"]
        by_id = {e["instance_id"]: e for e in data["examples"]}
        assert set(by_id) == {PAGER, UNITS, KILLED}
        for iid in (PAGER, UNITS):
            ex = by_id[iid]
            assert (ex["exit_status"], ex["reward"], ex["success"]) == ("Submitted", 1.0, True), ex["error"]
            assert ex["evaluation_info"]["evaluated_by"] == "agentdata-tui eval-server (docker)"
            assert "+" in ex["git_diff"] and ex["steps"][0]["returncode"] == 0
        killed = by_id[KILLED]
        assert killed["exit_status"] == "SandboxError" and killed["reward"] == 0.0
        assert re.search(r"killed from outside|not running|is gone", killed["error"]), killed["error"]
        assert data["summary"]["total_examples"] == 3 and data["summary"]["successful"] == 2

        # No container of the run is left: not the rollouts', not the eval server's.
        assert victim["Labels"]["agentdata-tui.run_id"] == run_id
        assert containers_with(docker_api, run_id=run_id) == []
        for iid in (PAGER, UNITS, KILLED):
            assert containers_with(docker_api, instance_id=iid) == []

        # Regrade through the same eval server: unchanged patches, the same rewards.
        regraded = tmp_path / "regraded.json"
        r = subprocess.run(
            _cli(
                "regrade",
                "--input",
                str(out),
                "--output",
                str(regraded),
                "--eval-server",
                eval_url,
                "--workers",
                "2",
            ),
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(env, AGENTDATA_EVAL_TOKEN=TOKEN),
        )
        assert r.returncode == 0, r.stderr
        again = {e["instance_id"]: e for e in json.loads(regraded.read_text())["examples"]}
        for iid in (PAGER, UNITS):
            assert (again[iid]["reward"], again[iid]["success"]) == (
                by_id[iid]["reward"],
                by_id[iid]["success"],
            )
            assert again[iid]["evaluation_info"]["previous"]["reward"] == by_id[iid]["reward"]
        # The SandboxError attempt is not graded (as the runner did not): kept as it was.
        assert (
            again[KILLED]["reward"] == 0.0 and again[KILLED]["evaluation_info"]["status"] == "not_evaluated"
        )
        assert "previous" not in again[KILLED]["evaluation_info"] and "1 kept" in r.stdout

        # Secrets never reach the outputs or the servers' logs.
        for f in [out, regraded, *run_dir.rglob("*")]:
            if f.is_file():
                text = f.read_text(errors="replace")
                assert KEY not in text and TOKEN not in text, f
        assert KEY not in stdout + stderr and TOKEN not in stdout + stderr
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait()
        eval_proc.terminate()
        eval_proc.communicate(timeout=60)
        eval_log.close()
    eval_err = (tmp_path / "eval-server.err").read_text()
    assert eval_proc.returncode == 0, eval_err
    assert TOKEN not in eval_err and "POST /evaluate -> 200" in eval_err
    assert containers_with(docker_api, instance_id=PAGER) == []


def test_stop_at_once_removes_the_runs_containers(docker_api, tmp_path):
    """SIGTERM (graceful), then Ctrl+C (at once) during a command: exit 130, no container left."""
    stuck = f"e2e-stuck-{UID}"
    path = docker_dataset(tmp_path / "dataset.json", ["demo__pager-last-page"])
    (inst,) = json.loads(path.read_text())
    inst.update(instance_id=stuck, problem_statement=f"[{stuck}] wait")
    path.write_text(json.dumps([inst]))
    script = ScriptedResponder({f"[{stuck}]": ["THOUGHT: wait.\n\n```bash\nsleep 57\n```"]})
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    with ModelServer(script) as model:
        gen = subprocess.Popen(
            _cli(
                "generate-multi",
                "--dataset",
                str(path),
                "--environment-class",
                "docker",
                "--base-url",
                model.base_url,
                "--api-key",
                KEY,
                "--output",
                str(tmp_path / "out.json"),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:

            def sleeping() -> bool:
                if gen.poll() is not None:
                    raise AssertionError(f"generate-multi ended early: {gen.communicate()}")
                for c in containers_with(docker_api, instance_id=stuck):
                    procs = docker_api.top(c["Id"]).get("Processes") or [] if c["State"] == "running" else []
                    if any("sleep 57" in " ".join(p) for p in procs):
                        return True
                return False

            wait_for(sleeping, 120, "the rollout's container running `sleep 57`", interval=0.2)
            gen.send_signal(signal.SIGTERM)
            wait_for(
                lambda: "stopping" in (gen.stderr.readline() or "stopping"), 30, "the graceful-stop notice"
            )
            gen.send_signal(signal.SIGINT)
            gen.communicate(timeout=60)
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
    assert gen.returncode == 130
    assert containers_with(docker_api, instance_id=stuck) == []


def test_regrade_in_docker_and_sigterm_removes_its_containers(docker_api, tmp_path):
    """regrade --environment-class docker: SIGTERM mid-evaluation → exit 130, no output, no container."""
    iid = f"e2e-regrade-{UID}"
    path = docker_dataset(tmp_path / "dataset.json", ["demo__pager-last-page"])
    (inst,) = json.loads(path.read_text())
    inst["instance_id"] = iid
    path.write_text(json.dumps([inst]))
    # A non-empty patch: an empty one is no_patch, graded without a container.
    note = "--- /dev/null\n+++ b/NOTES.txt\n@@ -0,0 +1 @@\n+looked at it\n"
    example = {"instance_id": iid, "problem_statement": "p", "messages": [], "git_diff": note, "reward": 1.0}
    (tmp_path / "in.jsonl").write_text(json.dumps(example) + "\n")
    out = tmp_path / "out.json"
    proc = subprocess.Popen(
        _cli(
            "regrade",
            "--input",
            str(tmp_path / "in.jsonl"),
            "--output",
            str(out),
            "--dataset",
            str(path),
            "--environment-class",
            "docker",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def evaluating():
            if proc.poll() is not None:
                raise AssertionError(f"regrade ended early: {proc.communicate()}")
            return containers_with(docker_api, instance_id=iid)

        (c,) = wait_for(evaluating, 120, "the evaluation's container")
        assert c["Labels"]["agentdata-tui.run_id"].startswith("regrade-")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err
    assert not out.exists()
    assert containers_with(docker_api, instance_id=iid) == []
