"""Runs as real subprocesses: SIGKILL midway then --resume, graceful SIGTERM, no key in any file.

The must-show of the issue: a 20-instance run with 8 workers against the loopback server,
killed with SIGKILL midway and resumed, ends with exactly one example per (instance, sample).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_runner import jsonl, scripts_for, write_dataset

from agentdata_tui.reader import open_input

KEY = "sk-RESUME-secret-4f9a1c77"
TOKEN = "evaltok-SECRET-9d1e"


def _cmd(dataset: Path, server: ModelServer, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agentdata_tui",
        "generate-multi",
        "--dataset",
        str(dataset),
        "--base-url",
        server.base_url,
        "--output",
        str(out),
        "--workers",
        "8",
        *extra,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OPENAI_API_KEY"] = KEY
    env["AGENTDATA_EVAL_TOKEN"] = TOKEN
    env.pop("OPENAI_BASE_URL", None)
    return env


def _wait_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    """Wait (bounded) until ``path`` holds at least ``n`` complete lines; the run must still be going."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            count = path.read_bytes().count(b"\n")
            if count >= n:
                return count
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} lines in {timeout}s")


def _assert_no_secret(*paths: Path) -> None:
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            assert KEY.encode() not in data, f"API key leaked into {f}"
            assert TOKEN.encode() not in data, f"eval token leaked into {f}"


@pytest.mark.slow
def test_sigkill_midway_then_resume_gives_one_example_per_pair(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path, 20)
    out = tmp_path / "run" / "data.json"
    examples = out.with_suffix(".run") / "examples.jsonl"
    log = tmp_path / "run.log"
    with ModelServer(ScriptedResponder(scripts_for(20, steps=3)), latency=0.15) as server:
        proc = subprocess.Popen(
            _cmd(dataset, server, out, "--log-file", str(log)),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_lines(examples, 5, proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        assert not out.exists(), "a killed run never wrote the final file"
        # A kill can land mid-write: only complete lines count (the resume drops a torn one).
        before = examples.read_bytes().count(b"\n")
        assert 5 <= before < 20
        # Simulate the torn write a kill can leave behind.
        with open(examples, "ab") as fh:
            fh.write(b'{"instance_id": "task-0')
        res = subprocess.run(
            _cmd(dataset, server, out, "--resume", "--log-file", str(log)),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        auth = {r.headers.get("Authorization") for r in server.chat_requests()}
        assert auth == {f"Bearer {KEY}"}, "the key is sent to the model server, and only there"
    final = list(open_input(out))
    pairs = [(e.instance_id, e.sample_index) for e in final]
    assert sorted(pairs) == [(f"task-{i:03d}", 0) for i in range(20)]
    assert all(e.success for e in final)
    recorded = [(d["instance_id"], d["sample_index"]) for d in jsonl(examples)]
    assert len(recorded) == len(set(recorded)) == 20, "no pair ran twice: only the unrecorded ones re-ran"
    assert "\x1b[" not in res.stdout, "plain progress when stdout is not a terminal"
    assert "[20/20]" in res.stdout or "20/20" in res.stdout
    assert "torn" in res.stderr
    _assert_no_secret(out, out.with_suffix(".run"), log)
    # The killed run may die between recording an example and logging it: count only what
    # the resumed run must have logged, the rollouts it ran itself.
    assert log.read_text().count("finished task-") >= 20 - before


@pytest.mark.slow
def test_sigterm_stops_gracefully_and_resume_reruns_cancelled(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path, 20)
    out = tmp_path / "term.json"
    run_dir = out.with_suffix(".run")
    with ModelServer(ScriptedResponder(scripts_for(20, steps=4)), latency=0.15) as server:
        proc = subprocess.Popen(
            _cmd(dataset, server, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_lines(run_dir / "examples.jsonl", 3, proc)
            pid = json.loads((run_dir / "run.json").read_text())["pid"]
            assert pid == proc.pid, "run.json names the runner's pid (the dashboard stops a run by it)"
            os.kill(pid, signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, stderr
        assert "SIGTERM" in stderr and "--resume" in stdout
        partial = list(open_input(out))
        assert 3 <= len(partial) < 20
        assert json.loads((run_dir / "run.json").read_text())["status"] == "stopped"
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        assert events[-1]["type"] == "run_finished" and events[-1]["stopped"] is True
        cancelled = [e for e in events if e["type"] == "rollout_finished" and e.get("cancelled")]
        assert cancelled, "running rollouts were cancelled at a step boundary"
        res = subprocess.run(
            _cmd(dataset, server, out, "--resume"), env=_env(), capture_output=True, text=True, timeout=300
        )
        assert res.returncode == 0, res.stderr
    final = list(open_input(out))
    assert sorted(e.instance_id for e in final) == [f"task-{i:03d}" for i in range(20)]
    assert len(jsonl(run_dir / "examples.jsonl")) == 20
    _assert_no_secret(out, run_dir)
