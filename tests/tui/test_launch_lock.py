"""Issue 8 item 2 on the launch screen: Start refuses a run folder whose lock a live process holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from servers.model_server import ModelServer, ScriptedResponder

from tui.helpers import run_async, wait_until
from tui.test_launch import DONE, _form_text, _launch_app

REPO = Path(__file__).resolve().parents[2]


@run_async
async def test_start_refuses_a_run_folder_held_by_a_live_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    run_dir = tmp_path / "out.run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from agentdata_tui.runner.store import RunLock; "
            f"RunLock(Path({str(run_dir)!r})).acquire(); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    started: list[list[str]] = []
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with ModelServer(ScriptedResponder({}, default=[DONE])) as server:
            app = _launch_app(tmp_path, server.base_url, tmp_path / "out.json")
            async with app.run_test(size=(120, 40)) as pilot:
                screen = app.screen
                screen.starter = lambda cmd, run_dir, env: started.append(cmd)
                await pilot.press("ctrl+s")
                await wait_until(
                    pilot, lambda: "in use" in _form_text(screen), timeout=60, what="the refusal"
                )
                assert f"pid {holder.pid}" in _form_text(screen)
                assert app.screen is screen
    finally:
        holder.communicate("", timeout=30)
    assert started == [], "nothing was started"
