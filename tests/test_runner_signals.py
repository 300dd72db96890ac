"""Signals on a real runner process: a second Ctrl+C stops at once; an ignored SIGHUP stays ignored."""

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
from test_runner import scripts_for, write_dataset


def _start(dataset: Path, server: ModelServer, out: Path, **popen_kw) -> subprocess.Popen:
    cmd = [
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
        "4",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kw)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def _steps_seen(run_dir: Path) -> bool:
    p = run_dir / "events.jsonl"
    return p.exists() and '"type": "step"' in p.read_text()


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path, 4)
    out = tmp_path / "int.json"
    run_dir = out.with_suffix(".run")
    # Slow replies: a graceful stop would wait for the in-flight ones; the second Ctrl+C must not.
    with ModelServer(ScriptedResponder(scripts_for(4, steps=5)), latency=4.0) as server:
        proc = _start(dataset, server, out)
        try:
            _wait_for(lambda: _steps_seen(run_dir), proc)
            proc.send_signal(signal.SIGINT)
            seen = []
            while not any("Ctrl+C again" in line for line in seen):  # the first one was handled
                line = proc.stderr.readline()
                assert line, "".join(seen)
                seen.append(line)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, stderr
    assert elapsed < 3.0, "the second Ctrl+C does not wait for the model"
    assert "stopping at once" in stderr
    assert json.loads((run_dir / "run.json").read_text())["status"] == "aborted"
    assert not out.exists()


@pytest.mark.slow
def test_ignored_sighup_stays_ignored(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path, 2)
    out = tmp_path / "hup.json"
    run_dir = out.with_suffix(".run")

    def ignore_hup() -> None:  # what nohup does before exec
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    with ModelServer(ScriptedResponder(scripts_for(2, steps=3)), latency=0.3) as server:
        proc = _start(dataset, server, out, preexec_fn=ignore_hup)
        try:
            _wait_for(lambda: _steps_seen(run_dir), proc)
            os.kill(proc.pid, signal.SIGHUP)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    assert "SIGHUP" not in stderr
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
