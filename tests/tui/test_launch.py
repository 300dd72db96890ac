"""The launch flow for real: the form → a connection test against a loopback model server → Start
(generate-multi as its own process) → the dashboard following it → the browser → an export."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from textual.widgets import Input, Label, Select

from agentdata_tui.tui.app import make_app
from agentdata_tui.tui.launch_settings import initial_values
from agentdata_tui.tui.screens.browser import BrowserScreen
from agentdata_tui.tui.screens.dashboard import DashboardScreen
from agentdata_tui.tui.screens.export import ExportScreen
from tui.helpers import dashboard_caught_up, index_done, run_async, wait_until

SECRET = "sk-test-SECRET-never-written-0123"
FIX = "THOUGHT: fix it.\n\n```bash\nprintf 'def add(a, b):\\n    return a + b\\n' > calc.py\n```"
DONE = "THOUGHT: done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"
LOOK = "THOUGHT: look.\n\n```bash\ncat calc.py\n```"


def make_dataset(tmp_path: Path) -> Path:
    repo = tmp_path / "repos" / "calc"
    repo.mkdir(parents=True)
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n", encoding="utf-8")
    (repo / "test_calc.py").write_text(
        "import unittest\nfrom calc import add\n\nclass T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
        encoding="utf-8",
    )
    tasks = [
        {
            "instance_id": f"calc-{i}",
            "problem_statement": f"add() subtracts (ticket calc-{i})",
            "repo_path": "repos/calc",
            "eval": {"test_command": "python3 -m unittest -q test_calc", "timeout": 60},
        }
        for i in range(3)
    ]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def _form_value(screen, name: str, value: str) -> None:
    screen.query_one(f"#f-{name}", Input).value = value


@pytest.mark.slow
@run_async
async def test_launch_start_dashboard_browse_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    dataset = make_dataset(tmp_path)
    responder = ScriptedResponder({"calc-0": [FIX, DONE], "calc-1": [LOOK, DONE]}, default=[LOOK, FIX, DONE])
    output = tmp_path / "out.json"
    export = tmp_path / "sft.jsonl"
    with ModelServer(responder, models=("test-model", "other-model")) as server:
        values, sources = initial_values(
            {"dataset": str(dataset), "output": str(output)}, {"OPENAI_API_KEY": SECRET}, {}
        )
        values["base_url"] = server.base_url
        app = make_app(
            "launch", launch_values=values, launch_sources=sources, last_path=tmp_path / "xdg" / "last.json"
        )
        process = None
        try:
            async with app.run_test(size=(120, 40)) as pilot:
                screen = app.screen
                assert screen.query_one("#n-api_key", Label).render().plain == "from OPENAI_API_KEY"
                assert screen.query_one("#f-api_key", Input).password
                # inline validation
                _form_value(screen, "workers", "0")
                await pilot.pause()
                assert "✗" in screen.query_one("#n-workers", Label).render().plain
                _form_value(screen, "workers", "2")
                await pilot.pause()
                assert "✗" not in screen.query_one("#n-workers", Label).render().plain
                # the model server test lists the served models and offers them
                _form_value(screen, "model", "")
                await pilot.click("#test-model")
                await wait_until(
                    pilot, lambda: "model(s)" in screen.query_one("#answer-model", Label).render().plain
                )
                assert "test-model" in screen.query_one("#answer-model", Label).render().plain
                assert screen.query_one("#f-model", Input).value == "test-model"
                await pilot.click("#test-eval")
                await wait_until(
                    pilot, lambda: "built-in" in screen.query_one("#answer-eval", Label).render().plain
                )
                assert screen.query_one("#f-environment_class", Select).value == "local"
                # a model's commands run on this machine with the local sandbox: said before Start
                assert "this machine" in screen.query_one("#sandbox-warning", Label).render().plain

                await pilot.click("#start")
                await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
                dash = app.screen
                process = dash.process
                assert process is not None
                assert not any(SECRET in part for part in screen.command)
                await dashboard_caught_up(
                    pilot, finished=True, timeout=120
                )  # a real run, on a busy CI box too
                assert process.wait(timeout=60) == 0
                m = dash.state.metrics()
                assert (m.done, m.total) == (3, 3)
                assert m.succeeded >= 1

                await pilot.press("b")
                await wait_until(pilot, lambda: isinstance(app.screen, BrowserScreen))
                await index_done(pilot)
                browser = app.screen
                assert len(browser.view) == 3
                browser.query_one("#successful").value = True
                await pilot.pause()
                shown = {r.instance_id for r in browser.view}
                assert shown and len(shown) < 3
                await pilot.press("e")
                await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
                app.screen.query_one("#output", Input).value = str(export)
                await pilot.click("#export")
                await app.workers.wait_for_complete()
                await wait_until(pilot, lambda: not isinstance(app.screen, ExportScreen))
        finally:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert {line["metadata"]["instance_id"] for line in lines} == shown
    # the key reached no file: not the run folder, not the last settings, not the exports
    for root, _, files in os.walk(tmp_path):
        for name in files:
            path = Path(root) / name
            if path.suffix in (".py",):
                continue
            assert SECRET.encode() not in path.read_bytes(), path
    last = json.loads((tmp_path / "xdg" / "last.json").read_text())
    assert last["workers"] == 2 and "api_key" not in last


@run_async
async def test_start_refuses_a_bad_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []

    def starter(cmd, run_dir, env) -> subprocess.Popen:  # must not be reached
        started.append(cmd)
        raise AssertionError("started with a bad form")

    values, sources = initial_values({"dataset": str(tmp_path / "missing.json")}, {}, {})
    values["base_url"] = "http://api.example.com/v1"
    app = make_app("launch", launch_values=values, launch_sources=sources, last_path=tmp_path / "last.json")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.starter = starter
        # a real model with the local sandbox: the warning is shown
        assert "this machine" in screen.query_one("#sandbox-warning", Label).render().plain
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "no such file" in screen.query_one("#n-dataset", Label).render().plain
        assert screen.focused is screen.query_one("#f-dataset", Input)
    assert not started and not (tmp_path / "last.json").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@run_async
async def test_server_checks_answer_inline(tmp_path: Path) -> None:
    """The eval test against a real `agentdata-tui eval-server`; docker against a closed port."""
    import re
    import sys

    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "agentdata_tui", "eval-server", "--port", "0", "--token", "tok"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = server.stdout.readline()  # "eval server listening on http://127.0.0.1:PORT ...": it is ready
        match = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert match, first
        port = int(match.group(1))
        values, sources = initial_values({"dataset": str(make_dataset(tmp_path))}, {}, {})
        values.update(eval_server=f"127.0.0.1:{port}", docker_servers=f"127.0.0.1:{_free_port()}")
        app = make_app(
            "launch", launch_values=values, launch_sources=sources, last_path=tmp_path / "last.json"
        )
        os.environ["AGENTDATA_EVAL_TOKEN"] = "tok"
        try:
            async with app.run_test(size=(120, 40)) as pilot:
                screen = app.screen
                screen.query_one("#f-environment_class", Select).value = "docker_remote"
                await pilot.pause()
                assert not screen.query_one("#sandbox-warning", Label).render().plain  # docker: no warning
                screen.run_check("eval")
                screen.run_check("docker")
                answer = screen.query_one("#answer-eval", Label)
                docker = screen.query_one("#answer-docker", Label)
                await wait_until(pilot, lambda: "testing" not in answer.render().plain, timeout=20)
                await wait_until(pilot, lambda: "testing" not in docker.render().plain, timeout=30)
                assert answer.render().plain.startswith("✓") and "healthy" in answer.render().plain
                assert docker.render().plain.startswith("✗") and "does not answer" in docker.render().plain
        finally:
            os.environ.pop("AGENTDATA_EVAL_TOKEN", None)
    finally:
        server.terminate()
        server.wait(timeout=10)
