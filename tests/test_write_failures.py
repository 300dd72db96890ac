"""Issue 8 item 7: a failed write (a full disk, a read-only folder) ends the run in one line.

Real runs (their own processes) write to a small tmpfs; the disk is filled at a chosen moment by
the loopback model server's responder, so the failure lands mid-run or at the final write.
Root ignores ``chmod``, so the read-only folder is the tmpfs remounted read-only. Skipped with the
reason where the machine does not allow mounting one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_runner import scripts_for, write_dataset

from agentdata_tui.reader import open_input

REPO = Path(__file__).resolve().parents[1]


def _mount(path: Path, size: str) -> str | None:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return None if res.returncode == 0 else (res.stderr.decode().strip() or "mount failed")


@pytest.fixture
def tmpfs(tmp_path: Path):
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    why = _mount(mnt, "1m")
    if why is not None:
        pytest.skip(f"cannot mount a tmpfs here: {why}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path, leave: int = 0) -> Path:
    """Fill the filesystem, then give back ``leave`` bytes."""
    filler = mnt / "filler"
    with open(filler, "ab", buffering=0) as fh:  # unbuffered: nothing left to fail at close
        try:
            while fh.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    if leave:
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - leave))
    return filler


class FillAt:
    """Scripted replies; a chosen request fills the disk first, keeping ``leave(mnt)`` bytes free.

    ``when(body)`` picks the request (by its content, so a client's retry cannot move it)."""

    def __init__(self, inner: Any, mnt: Path, when, leave=lambda mnt: 0) -> None:
        self.inner, self.mnt, self.when, self.leave = inner, mnt, when, leave
        self.done = False
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]):
        with self.lock:
            if not self.done and self.when(body):
                self.done = True
                fill(self.mnt, self.leave(self.mnt))
        return self.inner(body)


def nth_request_of(task: str, n: int):
    """The ``n``-th model request (1-based) of ``task``'s rollout."""

    def when(body: dict[str, Any]) -> bool:
        msgs = body.get("messages") or []
        first_user = next((m.get("content") or "" for m in msgs if m.get("role") == "user"), "")
        return f"[{task}]" in str(first_user) and sum(m.get("role") == "assistant" for m in msgs) == n - 1

    return when


def _run(dataset: Path, server: ModelServer, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "agentdata_tui", "generate-multi", "--dataset", str(dataset)]
    cmd += ["--base-url", server.base_url, "--model", "test-model", "--output", str(out), "--workers", "1"]
    return subprocess.run([*cmd, *extra], capture_output=True, text=True, env=env, timeout=300)


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _assert_intact(run_dir: Path) -> int:
    raw = (run_dir / "examples.jsonl").read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "no torn line"
    lines = [json.loads(line) for line in raw.splitlines()]
    return len(lines)


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]


def test_full_disk_mid_run_fails_in_one_line_and_resume_completes(tmpfs: Path, tmp_path: Path) -> None:
    """The issue's repro: an OSError traceback from closing the store, run.json left `running`."""
    ds = write_dataset(tmp_path, 6)
    out = tmpfs / "data.json"
    run_dir = tmpfs / "data.run"
    with ModelServer(
        FillAt(ScriptedResponder(scripts_for(6)), tmpfs, nth_request_of("task-002", 1))
    ) as server:
        res = _run(ds, server, out)
        assert res.returncode == 1, res.stderr
        line = _error_line(res.stderr)
        assert "cannot write" in line and str(run_dir) in line and "No space left on device" in line, line
        run_json = json.loads((run_dir / "run.json").read_text())
        assert run_json["status"] == "failed" and "No space left" in run_json["error"]
        last = _events(run_dir)[-1]
        assert last["type"] == "run_finished" and last["status"] == "failed" and "No space" in last["error"]
        recorded = _assert_intact(run_dir)
        assert 1 <= recorded < 6
        (tmpfs / "filler").unlink()  # room again
        server.responder = ScriptedResponder(scripts_for(6))
        res = _run(ds, server, out, "--resume")
    assert res.returncode == 0, res.stderr
    final = list(open_input(out))
    assert sorted(e.instance_id for e in final) == [f"task-{i:03d}" for i in range(6)]
    assert _assert_intact(run_dir) == 6
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_full_disk_at_the_final_write_is_not_called_finished(tmpfs: Path, tmp_path: Path) -> None:
    """The issue's repro: "every rollout ended in an error: check the servers" and `finished`."""
    ds = write_dataset(tmp_path, 16)
    out = tmpfs / "final.json"
    run_dir = tmpfs / "final.run"

    def leave(mnt: Path) -> int:
        # Room for the last rollout's record and events, not for X.json (all 16 records).
        return (run_dir / "examples.jsonl").stat().st_size // 2 + 16 * 1024

    responder = FillAt(ScriptedResponder(scripts_for(16)), tmpfs, nth_request_of("task-015", 2), leave)
    with ModelServer(responder) as server:
        res = _run(ds, server, out)
    assert res.returncode == 1, res.stderr
    line = _error_line(res.stderr)
    assert f"cannot write {out}: No space left on device" in line, line
    assert "check the servers" not in res.stderr
    assert not out.exists()
    assert _assert_intact(run_dir) == 16, "every rollout was recorded"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert _events(run_dir)[-1]["status"] == "failed"


def test_read_only_folder_fails_in_one_line_and_damages_nothing(tmpfs: Path, tmp_path: Path) -> None:
    ds = write_dataset(tmp_path, 3)
    out = tmpfs / "ro.json"
    run_dir = tmpfs / "ro.run"
    with ModelServer(ScriptedResponder(scripts_for(3))) as server:
        res = _run(ds, server, out, "--max-tasks", "2")
        assert res.returncode == 0, res.stderr
        before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
        assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)]).returncode == 0
        res = _run(ds, server, out, "--resume", "--force")
    assert res.returncode == 1, res.stderr
    line = _error_line(res.stderr)
    assert "cannot write" in line and str(run_dir) in line and "Read-only file system" in line, line
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert len(list(open_input(out))) == 2
