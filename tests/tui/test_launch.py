"""The launch flow for real: the form → a connection test against a loopback model server → Start
(generate-multi as its own process) → the dashboard following it → the browser → an export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from textual.widgets import Input, Label, Select

from agentdata_tui.tui.app import make_app
from agentdata_tui.tui.launch_settings import initial_values
from agentdata_tui.tui.screens.browser import BrowserScreen
from agentdata_tui.tui.screens.dashboard import DashboardScreen
from agentdata_tui.tui.screens.export import ExportScreen
from agentdata_tui.tui.screens.modals import ConfirmScreen
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
        values["eval_token"] = "tok"  # the form's token field (masked)
        app = make_app(
            "launch", launch_values=values, launch_sources=sources, last_path=tmp_path / "last.json"
        )
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
            pass
    finally:
        server.terminate()
        server.wait(timeout=10)


# -- the flows of issue 12 --------------------------------------------------------------------


def _launch_app(tmp_path: Path, base_url: str, output: Path, **extra):
    values, sources = initial_values(
        {
            "dataset": str(
                make_dataset(tmp_path) if not (tmp_path / "tasks.json").exists() else tmp_path / "tasks.json"
            ),
            "output": str(output),
        },
        {"OPENAI_API_KEY": SECRET},
        {},
    )
    values.update(base_url=base_url, workers=2, **extra)
    return make_app(
        "launch", launch_values=values, launch_sources=sources, last_path=tmp_path / "xdg" / "last.json"
    )


def _form_text(screen) -> str:
    return screen.query_one("#n-form", Label).render().plain


@run_async
async def test_start_tests_the_servers_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable model server: said on the form, nothing started, the form stays."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    started: list[list[str]] = []
    app = _launch_app(tmp_path, f"http://127.0.0.1:{_free_port()}/v1", tmp_path / "out.json")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.starter = lambda cmd, run_dir, env: started.append(cmd)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "Not started" in _form_text(screen), what="the preflight answer")
        assert "model server test failed" in _form_text(screen)
        assert screen.query_one("#answer-model", Label).render().plain.startswith("✗")
        assert not screen.query_one("#start").disabled and app.screen is screen
    assert not started


@pytest.mark.slow
@run_async
async def test_an_early_runner_exit_comes_back_to_the_form_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real runner on a dataset it refuses: its one-line error, whole, on the form."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "tasks.json"
    bad.write_text('[{"instance_id": "x"}]', encoding="utf-8")  # no problem_statement
    with ModelServer(ScriptedResponder({}, default=[DONE])) as server:
        app = _launch_app(tmp_path, server.base_url, tmp_path / "out.json")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            await pilot.press("ctrl+s")
            await wait_until(
                pilot, lambda: "exited with code" in _form_text(screen), timeout=90, what="the exit"
            )
            assert app.screen is screen  # still the form, not a dashboard on nothing
            text = _form_text(screen)
            assert "exited with code 2 before it got going" in text
            assert "problem_statement" in text and "tasks.json" in text  # the runner's own words, in full
            assert not screen.query_one("#start").disabled
            assert screen.process.poll() == 2


@pytest.mark.slow
@run_async
async def test_a_runner_dying_before_any_rollout_finished_comes_back_to_the_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It had started (the dashboard was open) but no rollout ended: nothing to watch."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    with ModelServer(ScriptedResponder({}, default=[DONE]), latency=60) as server:
        app = _launch_app(tmp_path, server.base_url, tmp_path / "out.json")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=60)
            await dashboard_caught_up(pilot)
            screen.process.kill()  # SIGKILL: no run_finished, no last words
            await wait_until(pilot, lambda: app.screen is screen, timeout=30, what="the form again")
            assert "exited with code -9" in _form_text(screen)
            assert not screen.query_one("#start").disabled


@pytest.mark.slow
@run_async
async def test_resume_and_start_over_from_the_launch_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second run of every user: the output already holds a run."""
    from agentdata_tui.tui.screens.modals import ChoiceScreen

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out.json"
    responder = ScriptedResponder({}, default=[FIX, DONE])
    with ModelServer(responder) as server:
        for choice in ("resume", "start_over", "cancel"):
            app = _launch_app(tmp_path, server.base_url, output)
            async with app.run_test(size=(120, 40)) as pilot:
                screen = app.screen
                if choice == "resume":
                    # a first run that stops half-way: 1 of 3 tasks
                    _form_value(screen, "max_tasks", "1")
                    await pilot.press("ctrl+s")
                    await wait_until(
                        pilot, lambda app=app: isinstance(app.screen, DashboardScreen), timeout=60
                    )
                    await dashboard_caught_up(pilot, finished=True, timeout=120)
                    assert app.screen.process.wait(timeout=60) == 0
                    app.pop_screen()
                    await pilot.pause()
                    # a resume is the same run: the same task selection (issue 8 item 6)
                await pilot.press("ctrl+s")
                await wait_until(
                    pilot,
                    lambda app=app: isinstance(app.screen, ChoiceScreen),
                    timeout=30,
                    what="the question",
                )
                question = str(app.screen.query_one(".dialog-question").render())
                assert "already holds a run" in question
                await pilot.click(f"#choice-{choice}")
                if choice == "cancel":
                    await pilot.pause()
                    assert app.screen is screen and "Not started" in _form_text(screen)
                    continue
                await wait_until(pilot, lambda app=app: isinstance(app.screen, DashboardScreen), timeout=60)
                dash = app.screen
                await dashboard_caught_up(pilot, finished=True, timeout=120)
                assert dash.process.wait(timeout=60) == 0
                m = dash.state.metrics()
                assert (m.done, m.total) == ((1, 1) if choice == "resume" else (3, 3))
                if choice == "resume":
                    assert "--resume" in screen.command
                    assert m.done_before == 1  # the first task was not run again
                    assert "1 before this session" in str(dash.query_one("#run-summary").render())
                else:
                    assert "--force" in screen.command and m.done_before == 0
    aside = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out.run.old-"))
    assert len(aside) == 1  # start over moved the old folder aside, nothing deleted
    assert (tmp_path / aside[0] / "examples.jsonl").read_text().count("\n") == 1
    # and the output file the old run wrote beside it
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("out.json.old-")]) == 1


@run_async
async def test_a_live_run_is_watched_not_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentdata_tui.tui.screens.modals import ChoiceScreen
    from tui.fixtures import write_run

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started: list[list[str]] = []
    try:
        write_run(tmp_path / "out.run", total=8, finished=3, complete=False, pid=runner.pid)
        with ModelServer(ScriptedResponder({}, default=[DONE])) as server:
            app = _launch_app(tmp_path, server.base_url, tmp_path / "out.json")
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                screen.starter = lambda cmd, run_dir, env: started.append(cmd)
                await pilot.press("ctrl+s")
                await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), timeout=30)
                assert f"pid {runner.pid}" in str(app.screen.query_one(".dialog-question").render())
                await pilot.click("#choice-watch")
                await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
                await dashboard_caught_up(pilot)
                assert app.screen.process is None  # watching takes nothing over
                assert app.screen.state.metrics().done == 3
        assert not started and runner.poll() is None
    finally:
        runner.kill()
        runner.wait()


@run_async
async def test_form_details(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eval token masked, from the environment, never saved; the model test offers without
    overwriting; a chosen config prefills; Escape on a changed form asks; plain messages."""
    from agentdata_tui.tui.launch_settings import build_command, child_env, save_last, validate_fields
    from agentdata_tui.tui.screens.modals import ConfirmScreen

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "model:\n  model_name: cfg-model\n  model_kwargs:\n    temperature: 0.3\n", encoding="utf-8"
    )
    values, sources = initial_values(
        {"dataset": str(make_dataset(tmp_path))}, {"AGENTDATA_EVAL_TOKEN": "eval-SECRET-tok"}, {}
    )
    with ModelServer(ScriptedResponder({}, default=[DONE]), models=("served-a", "served-b")) as server:
        values["base_url"] = server.base_url
        app = make_app(
            "launch", launch_values=values, launch_sources=sources, last_path=tmp_path / "last.json"
        )
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            token = screen.query_one("#f-eval_token", Input)
            assert token.password and token.value == "eval-SECRET-tok"
            assert screen.query_one("#n-eval_token", Label).render().plain == "from AGENTDATA_EVAL_TOKEN"
            # the model section is in view at 80x24 (the form was not scrolled to Start)
            assert screen.query_one("#launch-form").scroll_y == 0
            # a chosen config fills what it defines
            _form_value(screen, "config", str(config))
            await wait_until(pilot, lambda: screen.query_one("#f-model", Input).value == "cfg-model")
            assert screen.query_one("#f-temperature", Input).value == "0.3"
            # typed model kept after the test; the served ones are offered
            _form_value(screen, "model", "my-own-model")
            await pilot.pause()
            screen.run_check("model")
            await wait_until(
                pilot, lambda: "model(s)" in screen.query_one("#answer-model", Label).render().plain
            )
            assert screen.query_one("#f-model", Input).value == "my-own-model"
            assert "not among the 2 served" in screen.query_one("#n-model", Label).render().plain
            served = screen.query_one("#served", Select)
            assert served.display or screen.query_one("#served-row").display
            served.value = "served-b"
            await pilot.pause()
            assert screen.query_one("#f-model", Input).value == "served-b"
            # plain words, short
            _form_value(screen, "workers", "0")
            await pilot.pause()
            assert screen.query_one("#n-workers", Label).render().plain == "✗ must be at least 1"
            _form_value(screen, "workers", "many")
            await pilot.pause()
            assert "a whole number" in screen.query_one("#n-workers", Label).render().plain
            _form_value(screen, "workers", "2")
            # Escape on a changed form asks; Escape again keeps the form
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is screen
            settings, errors = validate_fields(screen.form_values())
            assert settings is not None, errors
        assert app.return_value is None  # not quit
    # the token reaches the run by its environment only, and is never saved
    assert "eval-SECRET-tok" not in " ".join(build_command(settings))
    assert child_env("", {}, eval_token=settings.eval_token)["AGENTDATA_EVAL_TOKEN"] == "eval-SECRET-tok"
    save_last(settings, tmp_path / "last.json")
    assert "eval-SECRET-tok" not in (tmp_path / "last.json").read_text()
    # an unchanged form quits at once on Escape
    values2, sources2 = initial_values({"dataset": str(tmp_path / "tasks.json")}, {}, {})
    app = make_app("launch", launch_values=values2, launch_sources=sources2, last_path=tmp_path / "last.json")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape")
    assert app.return_value == 0


@pytest.mark.slow
@run_async
async def test_dashboard_keys_control_a_live_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """p pauses and resumes, + adds a worker, x cancels the selected rollout: through the real
    runner's control channel, each answer read back from its events."""
    monkeypatch.chdir(tmp_path)
    dataset = make_dataset(tmp_path)
    output = tmp_path / "live.json"
    with ModelServer(ScriptedResponder({}, default=[LOOK, LOOK, LOOK, DONE]), latency=1.0) as server:
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentdata_tui",
                "generate-multi",
                "--dataset",
                str(dataset),
                "--output",
                str(output),
                "--base-url",
                server.base_url,
                "--workers",
                "2",
                "--samples-per-task",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            app = make_app("watch", path=tmp_path / "live.run", process=runner, poll_interval=0.05)
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_until(pilot, lambda: (tmp_path / "live.run").is_dir(), timeout=60)
                screen = app.screen
                await wait_until(
                    pilot, lambda: screen.state and screen.state.running >= 1, timeout=60, what="rollouts"
                )
                await pilot.press("p")
                await wait_until(pilot, lambda: screen.state.paused, timeout=30, what="paused")
                await dashboard_caught_up(pilot)
                assert "paused" in str(screen.query_one("#run-summary").render())
                await pilot.press("p")
                await wait_until(pilot, lambda: not screen.state.paused, timeout=30, what="resumed")
                await pilot.press("plus")
                await wait_until(
                    pilot, lambda: screen.state.control_workers == 3, timeout=30, what="3 workers"
                )
                # cancel the rollout the view follows
                await wait_until(
                    pilot,
                    lambda: (
                        screen.selected_rollout
                        and screen.state.rollouts.get(screen.selected_rollout)
                        and screen.state.rollouts[screen.selected_rollout].finished is None
                    ),
                    timeout=30,
                )
                target = screen.selected_rollout
                await pilot.press("x")
                await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                await pilot.press("y")
                await wait_until(
                    pilot,
                    lambda: (screen.state.rollouts.get(target) or RolloutGone).finished is not None,
                    timeout=60,
                    what="the cancel",
                )
                assert screen.state.rollouts[target].status == "cancelled"
                assert screen.state.metrics().cancelled >= 1
                await pilot.press("s")
                await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                await pilot.press("y")
                assert runner.wait(timeout=90) in (0, 130)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()


class RolloutGone:
    finished = "gone"


@run_async
async def test_the_unisolated_opt_in_appears_only_without_bubblewrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where bwrap is missing, the local sandbox needs i9's --allow-unisolated-local: a checkbox then."""
    import shutil

    from textual.widgets import Checkbox

    from agentdata_tui.tui.launch_settings import build_command, validate_fields

    real_which = shutil.which
    for missing in (False, True):
        monkeypatch.setattr(
            shutil,
            "which",
            lambda name, *a, missing=missing, **k: (
                None if missing and name == "bwrap" else real_which(name, *a, **k)
            ),
        )
        values, sources = initial_values(
            {
                "dataset": str(
                    make_dataset(tmp_path)
                    if not (tmp_path / "tasks.json").exists()
                    else tmp_path / "tasks.json"
                )
            },
            {},
            {},
        )
        app = make_app(
            "launch", launch_values=values, launch_sources=sources, last_path=tmp_path / "last.json"
        )
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            box = screen.query_one("#f-allow_unisolated_local", Checkbox)
            assert box.display is missing
            if missing:
                assert "not installed" in screen.query_one("#sandbox-warning", Label).render().plain
                box.value = True
                await pilot.pause()
                settings, errors = validate_fields(screen.form_values())
                assert settings is not None, errors
                assert "--allow-unisolated-local" in build_command(settings)
                screen.query_one("#f-environment_class", Select).value = "docker"
                await pilot.pause()
                assert not box.display and not screen.form_values()["allow_unisolated_local"]
