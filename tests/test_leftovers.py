"""Issue 8 item 10: no leftovers — patch files, and evaluation sandboxes after a second Ctrl+C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from servers.model_server import ModelServer, ScriptedResponder
from test_runner import scripts_for

from agentdata_tui.config import load_config
from agentdata_tui.dataset import load_dataset
from agentdata_tui.procs import pid_alive
from agentdata_tui.runner.components import evaluator_for, sandbox_maker
from agentdata_tui.sandbox.local import remove_templates, sweep_patch_files

REPO = Path(__file__).resolve().parents[1]
PATCH = (
    "diff --git a/out.txt b/out.txt\nnew file mode 100644\n--- /dev/null\n+++ b/out.txt\n@@ -0,0 +1 @@\n+hi\n"
)


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("agentdata-"))


def test_an_evaluation_leaves_no_patch_file(tmp_path: Path, monkeypatch) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    (tmp_path / "ds.json").write_text(
        json.dumps(
            [{"instance_id": "t", "problem_statement": "p", "eval": {"test_command": "grep -q hi out.txt"}}]
        )
    )
    ds = load_dataset(tmp_path / "ds.json")
    ev = evaluator_for("local", sandbox_maker(ds, load_config()))
    res = ev.evaluate(ds.instances[0].to_dict(), PATCH)
    assert res.info["status"] == "correct"
    assert [n for n in _leftovers(private) if "-template-" not in n] == []
    remove_templates()  # the copies sandboxes start from: a run removes them at its end; here no run ends
    assert _leftovers(private) == []


def test_cleanup_sweeps_old_patch_files_only(tmp_path: Path) -> None:
    old, fresh = tmp_path / "agentdata-old.patch", tmp_path / "agentdata-new.patch"
    for p in (old, fresh, tmp_path / "agentdata-old.patch.b64", tmp_path / "unrelated.patch"):
        p.write_text("x")
    for p in (old, tmp_path / "agentdata-old.patch.b64", tmp_path / "unrelated.patch"):
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    assert sweep_patch_files(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agentdata-new.patch", "unrelated.patch"]


def test_second_ctrl_c_during_evaluation_leaves_no_sandbox_or_process(tmp_path: Path, unisolated) -> None:
    """The issue's repro: a double Ctrl+C during evaluation left evaluation sandboxes running.

    Unisolated: the evaluation's command reports its host pid through a host file (under
    bubblewrap it could not, and its pid would be its namespace's)."""
    private = tmp_path / "tmp"
    private.mkdir()
    marker = tmp_path / "eval.pid"
    ds = tmp_path / "dataset.json"
    ds.write_text(
        json.dumps(
            [
                {
                    "instance_id": "task-000",
                    "problem_statement": "Write data-task-000 into out.txt. [task-000]",
                    "eval": {"test_command": f"echo $$ > {marker}; sleep 300", "timeout": 600},
                }
            ]
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(TMPDIR=str(private), PYTHONPATH=str(REPO))
    with ModelServer(ScriptedResponder(scripts_for(1))) as server:
        cmd = [sys.executable, "-m", "agentdata_tui", "generate-multi", "--dataset", str(ds)]
        cmd += ["--base-url", server.base_url, "--model", "test-model", "--output", str(tmp_path / "o.json")]
        cmd += ["--allow-unisolated-local"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not (marker.exists() and marker.read_text().strip()):  # the evaluation is running
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.02)
            eval_pid = int(marker.read_text())
            assert pid_alive(eval_pid)
            proc.send_signal(signal.SIGINT)
            seen = []
            while not any("Ctrl+C again" in line for line in seen):  # the first one was handled
                line = proc.stderr.readline()
                assert line, "".join(seen)
                seen.append(line)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
            err = "".join(seen) + err
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert "stopping at once" in err
    assert not pid_alive(eval_pid), "the evaluation's command was killed"
    assert _leftovers(private) == [], "no sandbox folder, no patch file left"
