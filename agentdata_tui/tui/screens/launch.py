"""The launch screen: settings of a run, a connection test per server, and Start.

Start validates the form (pydantic, messages next to each field), remembers the settings
(never the key), launches ``generate-multi`` as its own background process with the key in
its environment, and switches to the dashboard on the run folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Header, Input, Label, Select

from agentdata_tui.tui.checks import CheckResult, check_docker, check_eval, check_model
from agentdata_tui.tui.launch_settings import (
    SANDBOX_KINDS,
    LaunchSettings,
    build_command,
    child_env,
    save_last,
    start_background,
    validate_field,
    validate_fields,
)
from agentdata_tui.tui.messages import CheckDone
from agentdata_tui.tui.widgets.footer import AppFooter

# (field, label, placeholder)
MODEL_FIELDS = (
    ("base_url", "base URL", "http://localhost:8000/v1"),
    ("api_key", "API key", "empty: none"),
    ("model", "model", "empty: the config's model_name, else the one model the server lists"),
    ("temperature", "temperature", "empty: the config's, else the server's"),
    ("max_tokens", "max tokens", "empty: the config's, else the server's"),
)
SERVER_FIELDS = (
    ("docker_servers", "docker servers", "HOST:PORT[,HOST:PORT...] for docker_remote"),
    ("eval_server", "eval server", "local, a URL or HOST:PORT"),
)
RUN_FIELDS = (
    ("dataset", "dataset", "tasks.json / tasks.jsonl"),
    ("config", "config", "empty: the bundled mini.yaml"),
    ("output", "output", "training_data.json (the run folder is training_data.run/)"),
    ("workers", "workers", "rollouts at once"),
    ("max_tasks", "max tasks", "empty: all"),
    ("samples_per_task", "samples per task", "1"),
)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class LaunchScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", id="start"),
        Binding("ctrl+t", "test_all", "Test servers", id="test"),
        Binding("ctrl+q", "app.quit", "Quit", id="quit"),
        Binding("q", "app.quit", "Quit", show=False),
        Binding("escape", "app.quit", "Quit", show=False),
    ]

    def __init__(
        self,
        values: dict[str, Any],
        sources: dict[str, str],
        *,
        last_path: Path | None = None,
        starter: Callable[[list[str], Path, dict[str, str]], Any] = start_background,
    ) -> None:
        super().__init__()
        self.values = values
        self.sources = sources
        self.last_path = last_path
        self.starter = starter
        self.process: Any = None
        self.command: list[str] | None = None
        self.sub_title = "new run"

    # -- layout --------------------------------------------------------------
    def _row(self, name: str, label: str, placeholder: str) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label(label, classes="form-label")
            yield Input(
                _text(self.values.get(name)),
                placeholder=placeholder,
                password=name == "api_key",
                compact=True,
                id=f"f-{name}",
            )
            yield Label(self.sources.get(name, ""), id=f"n-{name}", classes="form-note")

    def _note(self, name: str, error: str | None = None, hint: str | None = None) -> None:
        """The field's note: its error when it has one, else where its value came from."""
        if hint is not None:
            self.sources[name] = hint
        try:
            note = self.query_one(f"#n-{name}", Label)
        except Exception:
            return
        if error:
            note.update(Text(f"✗ {error}", style="bold red"))
        else:
            note.update(Text(self.sources.get(name, ""), style="dim italic"))

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="launch-form"):
            yield Label("Model server", classes="section")
            for spec in MODEL_FIELDS:
                yield from self._row(*spec)
            with Horizontal(classes="check-row"):
                yield Button("Test model server", id="test-model", compact=True)
                yield Label("", id="answer-model", classes="check-answer")
            yield Label("Servers", classes="section")
            kind = _text(self.values.get("environment_class")) or "local"
            options = [(k, k) for k in SANDBOX_KINDS] + ([(kind, kind)] if kind not in SANDBOX_KINDS else [])
            with Horizontal(classes="form-row"):
                yield Label("sandbox", classes="form-label")
                yield Select(options, value=kind, allow_blank=False, compact=True, id="f-environment_class")
                yield Label(
                    self.sources.get("environment_class", ""), id="n-environment_class", classes="form-note"
                )
            for spec in SERVER_FIELDS:
                yield from self._row(*spec)
            with Horizontal(classes="check-row"):
                yield Button("Test docker", id="test-docker", compact=True)
                yield Label("", id="answer-docker", classes="check-answer")
            with Horizontal(classes="check-row"):
                yield Button("Test eval server", id="test-eval", compact=True)
                yield Label("", id="answer-eval", classes="check-answer")
            yield Label("Run", classes="section")
            for spec in RUN_FIELDS:
                yield from self._row(*spec)
            yield Label("", id="sandbox-warning")
            with Horizontal(id="launch-buttons"):
                yield Button("Start", id="start", variant="success")
                yield Button("Quit", id="quit")
            yield Label("", id="n-form", classes="form-error")
        yield AppFooter()

    def on_mount(self) -> None:
        self._update_warning()
        self.query_one("#f-dataset" if not self.values.get("dataset") else "#start").focus()

    # -- form values ---------------------------------------------------------
    def form_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, _, _ in MODEL_FIELDS + SERVER_FIELDS + RUN_FIELDS:
            values[name] = self.query_one(f"#f-{name}", Input).value.strip()
        values["environment_class"] = str(self.query_one("#f-environment_class", Select).value)
        return values

    def _show_errors(self, errors: dict[str, str]) -> None:
        for name in [n for n, _, _ in MODEL_FIELDS + SERVER_FIELDS + RUN_FIELDS] + ["environment_class"]:
            self._note(name, errors.get(name))
        self.query_one("#n-form", Label).update(
            Text(f"✗ {errors['form']}", style="bold red") if "form" in errors else ""
        )

    @on(Input.Changed)
    def _field_changed(self, event: Input.Changed) -> None:
        name = (event.input.id or "").removeprefix("f-")
        value = event.value.strip()
        message = validate_field(name, value) if value or name in ("dataset", "output", "base_url") else None
        if name == "dataset" and not value:
            message = None  # not yet: said on Start
        if name == "api_key" and self.values.get("api_key") and value != self.values.get("api_key"):
            self.sources["api_key"] = "typed here (never saved)"
        self._note(name, message)
        self._update_warning()

    @on(Select.Changed, "#f-environment_class")
    def _kind_changed(self) -> None:
        self._update_warning()

    def _update_warning(self) -> None:
        kind = str(self.query_one("#f-environment_class", Select).value)
        warning = LaunchSettings.model_construct(environment_class=kind).local_sandbox_warning()
        self.query_one("#sandbox-warning", Label).update(
            Text(f"⚠ {warning}", style="bold") if warning else ""
        )

    # -- connection tests ----------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id
        if bid == "start":
            self.action_start()
        elif bid == "quit":
            self.app.exit(0)
        elif bid in ("test-model", "test-docker", "test-eval"):
            self.run_check(bid.removeprefix("test-"))

    def action_test_all(self) -> None:
        for server in ("model", "docker", "eval"):
            self.run_check(server)

    def run_check(self, server: str) -> None:
        values = self.form_values()
        self.query_one(f"#answer-{server}", Label).update(Text("testing…", style="italic"))
        self._check(server, values)

    @work(thread=True, exit_on_error=False, group="checks")
    def _check(self, server: str, values: dict[str, Any]) -> None:
        if server == "model":
            result = check_model(values["base_url"], values["api_key"])
        elif server == "eval":
            import os

            result = check_eval(values["eval_server"], os.environ.get("AGENTDATA_EVAL_TOKEN"))
        else:
            result = check_docker(values["docker_servers"], values["environment_class"], self._images(values))
        self.post_message(CheckDone(result))

    def _images(self, values: dict[str, Any]) -> list[str]:
        try:
            from agentdata_tui.config import load_config
            from agentdata_tui.dataset import load_dataset
            from agentdata_tui.sandbox.docker import images_needed

            dataset = load_dataset(values["dataset"])
            config = load_config(values["config"] or None)
            return images_needed(dataset.instances, config.environment)
        except Exception:
            return []

    def on_check_done(self, message: CheckDone) -> None:
        result: CheckResult = message.result
        style = "green" if result.ok else "red"
        self.query_one(f"#answer-{result.server}", Label).update(Text(result.message, style=style))
        if result.server == "model" and result.models:
            field = self.query_one("#f-model", Input)
            field.suggester = SuggestFromList(result.models, case_sensitive=False)
            if not field.value or field.value not in result.models:
                field.value = result.models[0]
                self._note("model", hint=f"served by the model server ({len(result.models)} listed)")

    # -- start ---------------------------------------------------------------
    def action_start(self) -> None:
        settings, errors = validate_fields(self.form_values())
        self._show_errors(errors)
        if settings is None:
            first = next(iter(errors))
            target: Widget | None = None
            try:
                target = self.query_one(f"#f-{first}")
            except Exception:
                target = None
            if target is not None:
                target.focus()
            self.notify(f"{len(errors)} field(s) to fix before starting.", severity="error")
            return
        self.start(settings)

    def start(self, settings: LaunchSettings) -> None:
        try:
            save_last(settings, self.last_path)
        except OSError as exc:
            self.notify(f"Could not remember the settings: {exc.strerror}", severity="warning")
        self.command = build_command(settings)
        run_dir = settings.run_dir
        started = time.time() - 1.0  # a log older than this is a previous run's
        try:
            self.process = self.starter(self.command, run_dir, child_env(settings.api_key))
        except OSError as exc:
            self.query_one("#n-form", Label).update(
                Text(f"✗ could not start the run: {exc}", style="bold red")
            )
            return
        from agentdata_tui.tui.screens.dashboard import DashboardScreen

        self.app.switch_screen(DashboardScreen(run_dir, process=self.process, newer_than=started))
