"""The launch screen: settings of a run, a connection test per server, and Start.

Start validates the form (messages in plain words next to each field), tests the servers
(a failure is said on the form and nothing starts), then looks at the output's run folder:
a run already there is resumed or started over (``--resume`` / ``--force``) or left alone, a
live one can be watched. It remembers the settings (never the key or the token), launches
``generate-multi`` as its own background process with the secrets in its environment, and
stays on the form until the run has written its ``run_started`` event: a runner that exits
before that leaves its error, in full, on the form.
"""

from __future__ import annotations

import os
import threading
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
from textual.widgets import Button, Checkbox, Header, Input, Label, Select

from agentdata_tui.tui.checks import CheckResult, check_docker, check_eval, check_model
from agentdata_tui.tui.launch_settings import (
    CONFIG_FIELDS,
    SANDBOX_KINDS,
    LaunchSettings,
    bubblewrap_missing,
    build_command,
    child_env,
    config_defaults,
    save_last,
    start_background,
    validate_field,
    validate_fields,
)
from agentdata_tui.tui.messages import CheckDone, PreflightDone, RunProcessExited, RunStarted
from agentdata_tui.tui.run_folder import existing_run, log_tail
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
    ("eval_token", "eval token", "empty: none"),
)
RUN_FIELDS = (
    ("dataset", "dataset", "tasks.json / tasks.jsonl"),
    ("config", "config", "empty: the bundled mini.yaml"),
    ("output", "output", "training_data.json (the run folder is training_data.run/)"),
    ("workers", "workers", "rollouts at once"),
    ("max_tasks", "max tasks", "empty: all"),
    ("samples_per_task", "samples per task", "1"),
)
SECRET_FIELDS = ("api_key", "eval_token")
START_LOG_LINES = 40  # an early exit's log shown on the form


def _text(value: Any) -> str:
    return "" if value is None else str(value)


Starter = Callable[[list[str], Path, dict[str, str]], Any]


class LaunchScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", id="start"),
        Binding("ctrl+t", "test_all", "Test servers", id="test"),
        Binding("ctrl+q", "leave", "Quit", id="quit"),
        Binding("escape", "leave", "Quit", show=False),
    ]

    def __init__(
        self,
        values: dict[str, Any],
        sources: dict[str, str],
        *,
        last_path: Path | None = None,
        starter: Starter = start_background,
    ) -> None:
        super().__init__()
        self.values = values
        self.sources = sources
        self.last_path = last_path
        self.starter = starter
        self.process: Any = None
        self.command: list[str] | None = None
        self.sub_title = "new run"
        self._initial: dict[str, Any] = {}
        self._set_by_us: dict[str, str] = {}  # field -> the value the screen put there (not typed)
        self._config_values: dict[str, Any] = {}
        self._starting = False
        self._stop_wait = threading.Event()

    # -- layout --------------------------------------------------------------
    def _row(self, name: str, label: str, placeholder: str) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label(label, classes="form-label")
            yield Input(
                _text(self.values.get(name)),
                placeholder=placeholder,
                password=name in SECRET_FIELDS,
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
            with Horizontal(classes="form-row", id="served-row"):
                yield Label("served models", classes="form-label")
                yield Select([], prompt="pick one to use it", compact=True, id="served")
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
            yield Checkbox(
                "run the local sandbox without bubblewrap isolation (--allow-unisolated-local): the "
                "model's commands can read this machine's files",
                id="f-allow_unisolated_local",
                compact=True,
            )
            with Horizontal(id="launch-buttons"):
                yield Button("Start", id="start", variant="success")
                yield Button("Quit", id="quit")
            yield Label("", id="n-form", classes="form-error")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#served-row").display = False
        self._update_warning()
        self._config_values = config_defaults(self.values.get("config") or None)
        # The form reads from the top (the model section): the first field has the focus, or the
        # dataset when it is missing (ctrl+s starts from anywhere).
        self.query_one("#f-dataset" if not self.values.get("dataset") else "#f-base_url").focus()
        self._initial = self.form_values()

    def on_unmount(self) -> None:
        self._stop_wait.set()

    # -- form values ---------------------------------------------------------
    def form_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, _, _ in MODEL_FIELDS + SERVER_FIELDS + RUN_FIELDS:
            values[name] = self.query_one(f"#f-{name}", Input).value.strip()
        values["environment_class"] = str(self.query_one("#f-environment_class", Select).value)
        box = self.query_one("#f-allow_unisolated_local", Checkbox)
        values["allow_unisolated_local"] = box.display and box.value
        return values

    def _set_field(self, name: str, value: Any, hint: str) -> None:
        text = _text(value)
        self._set_by_us[name] = text
        if name == "environment_class":
            select = self.query_one("#f-environment_class", Select)
            if text in SANDBOX_KINDS:
                select.value = text
        else:
            self.query_one(f"#f-{name}", Input).value = text
        self._note(name, hint=hint)

    def _show_errors(self, errors: dict[str, str]) -> None:
        for name in [n for n, _, _ in MODEL_FIELDS + SERVER_FIELDS + RUN_FIELDS] + ["environment_class"]:
            self._note(name, errors.get(name))
        self._form_message(Text(f"✗ {errors['form']}", style="bold red") if "form" in errors else "")

    def _form_message(self, text: Text | str) -> None:
        label = self.query_one("#n-form", Label)
        label.update(text)
        if text:
            self.call_after_refresh(label.scroll_visible, animate=False)

    @on(Input.Changed)
    def _field_changed(self, event: Input.Changed) -> None:
        name = (event.input.id or "").removeprefix("f-")
        value = event.value.strip()
        # typed: neither the value the form opened with nor one the screen put there
        typed = event.value != self._set_by_us.get(name, _text(self.values.get(name)))
        if typed:
            self._set_by_us.pop(name, None)
        message = validate_field(name, value) if value or name in ("dataset", "output", "base_url") else None
        if name == "dataset" and not value:
            message = None  # not yet: said on Start
        if name in SECRET_FIELDS and typed and self.values.get(name) != value:
            self.sources[name] = "typed here (never saved)" if value else ""
        elif name in CONFIG_FIELDS and typed:
            self.sources[name] = ""
        self._note(name, message)
        if name == "config" and message is None and typed:
            self._prefill_from_config(value)
        self._update_warning()

    def _prefill_from_config(self, path: str) -> None:
        """A newly chosen config sets the fields it defines that the user has not typed."""
        new = config_defaults(path or None)
        old = self._config_values
        self._config_values = new
        current = self.form_values()
        for name in CONFIG_FIELDS:
            if name not in new:
                continue
            now = _text(current.get(name))
            untouched = now == "" or now == _text(old.get(name)) or self._set_by_us.get(name) == now
            if untouched and now != _text(new[name]):
                self._set_field(name, new[name], "from the config")

    @on(Select.Changed, "#f-environment_class")
    def _kind_changed(self) -> None:
        self._update_warning()

    @on(Select.Changed, "#served")
    def _served_picked(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self._set_field("model", str(event.value), "picked among the served models")

    def _update_warning(self) -> None:
        kind = str(self.query_one("#f-environment_class", Select).value)
        warning = LaunchSettings.model_construct(environment_class=kind).local_sandbox_warning()
        if warning and bubblewrap_missing():
            warning += (
                " bubblewrap (bwrap) is not installed here: a run is refused unless you tick the box below."
            )
        self.query_one("#sandbox-warning", Label).update(
            Text(f"⚠ {warning}", style="bold") if warning else ""
        )
        # the opt-in only where it applies: the local sandbox on a machine without bubblewrap
        self.query_one("#f-allow_unisolated_local", Checkbox).display = (
            kind == "local" and bubblewrap_missing()
        )

    # -- connection tests ----------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id
        if bid == "start":
            self.action_start()
        elif bid == "quit":
            self.action_leave()
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
        self.post_message(CheckDone(self._run_check(server, values)))

    def _run_check(self, server: str, values: dict[str, Any]) -> CheckResult:
        if server == "model":
            return check_model(values["base_url"], values["api_key"])
        if server == "eval":
            return check_eval(values["eval_server"], values.get("eval_token") or None)
        return check_docker(values["docker_servers"], values["environment_class"], self._images(values))

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
        self._show_check(message.result)

    def _show_check(self, result: CheckResult) -> None:
        style = "green" if result.ok else "red"
        self.query_one(f"#answer-{result.server}", Label).update(Text(result.message, style=style))
        if result.server != "model" or not result.models:
            return
        field = self.query_one("#f-model", Input)
        field.suggester = SuggestFromList(result.models, case_sensitive=False)
        served = self.query_one("#served", Select)
        served.set_options([(m, m) for m in result.models])
        self.query_one("#served-row").display = True
        typed = field.value.strip()
        if not typed:
            # nothing typed to overwrite: the first served model, as the run would pick
            self._set_field(
                "model", result.models[0], f"served by the model server ({len(result.models)} listed)"
            )
        elif typed in result.models:
            self._note("model", hint="served by the model server")
        else:
            self._note(
                "model", error=f"not among the {len(result.models)} served (pick one below, or keep it)"
            )

    # -- start ---------------------------------------------------------------
    def action_start(self) -> None:
        if self._starting:
            return
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
        self._busy(True, "Testing the servers before starting…")
        self._preflight(settings)

    def _busy(self, busy: bool, message: str = "") -> None:
        self._starting = busy
        self.query_one("#start", Button).disabled = busy
        if message:
            self._form_message(Text(message, style="italic"))

    @work(thread=True, exit_on_error=False, group="preflight")
    def _preflight(self, settings: LaunchSettings) -> None:
        values = settings.model_dump()
        values["docker_servers"] = settings.docker_servers
        results = [self._run_check(server, values) for server in ("model", "docker", "eval")]
        self.post_message(PreflightDone(results, settings))

    def on_preflight_done(self, message: PreflightDone) -> None:
        for result in message.results:
            self._show_check(result)
        failed = [r for r in message.results if not r.ok]
        if failed:
            self._busy(False)
            names = ", ".join(
                {"model": "model server", "docker": "docker", "eval": "eval server"}[r.server] for r in failed
            )
            lines = [Text(f"✗ Not started: the {names} test failed.", style="bold red")]
            lines += [Text(f"  {r.message}", style="red") for r in failed]
            self._form_message(Text("\n").join(lines))
            self.query_one(f"#test-{failed[0].server}", Button).focus()
            return
        self._busy(False, " ")
        self.choose_and_start(message.settings)

    def choose_and_start(self, settings: LaunchSettings) -> None:
        """A run already in the output's folder: resume it, start over, or (live) watch it."""
        found = existing_run(settings.output)
        if found is None:
            self.start(settings, "new")
            return
        from agentdata_tui.tui.screens.modals import ChoiceScreen

        if found.live:

            def watch(choice: str | None) -> None:
                if choice == "watch":
                    self.watch(found.run_dir)
                else:
                    self._form_message(Text("Not started: a run is going in that folder.", style="yellow"))

            self.app.push_screen(
                ChoiceScreen(
                    found.describe(),
                    [("watch", "Watch it", "primary"), ("cancel", "Cancel", "default")],
                    detail="Watching does not disturb it. To start another run, pick another output.",
                ),
                watch,
            )
            return

        def answer(choice: str | None) -> None:
            if choice in ("resume", "start_over"):
                self.start(settings, choice)
            else:
                self._form_message(Text("Not started.", style="dim"))

        output = Path(settings.output).name
        self.app.push_screen(
            ChoiceScreen(
                found.describe(),
                [
                    ("resume", "Resume", "primary"),
                    ("start_over", "Start over", "warning"),
                    ("cancel", "Cancel", "default"),
                ],
                detail=(
                    "Resume runs what is not done yet (with the same task selection). Start over moves "
                    f"the old run folder and {output} aside (nothing is deleted) and runs everything again."
                ),
            ),
            answer,
        )

    def watch(self, run_dir: Path) -> None:
        from agentdata_tui.tui.screens.dashboard import DashboardScreen

        self.app.push_screen(DashboardScreen(run_dir))

    def start(self, settings: LaunchSettings, mode: str = "new") -> None:
        try:
            save_last(settings, self.last_path)
        except OSError as exc:
            self.notify(f"Could not remember the settings: {exc.strerror}", severity="warning")
        self.command = build_command(settings, mode=mode)
        run_dir = settings.run_dir
        from agentdata_tui.runner.store import lock_holder

        holder = lock_holder(run_dir)
        if holder is not None:  # one writer per run folder: a live run holds it
            self.query_one("#n-form", Label).update(
                Text(f"✗ {run_dir} is in use by a running run (pid {holder or 'unknown'})", style="bold red")
            )
            return
        events = run_dir / "events.jsonl"
        try:
            st = os.stat(events)
            log_from = (st.st_ino, st.st_size)
        except OSError:
            log_from = None
        started = time.time() - 1.0  # a log older than this is a previous run's
        try:
            self.process = self.starter(
                self.command, run_dir, child_env(settings.api_key, eval_token=settings.eval_token)
            )
        except OSError as exc:
            self._form_message(Text(f"✗ could not start the run: {exc}", style="bold red"))
            return
        self._busy(True, "Starting the run…")
        self._run_dir, self._started = run_dir, started
        self._await_start(self.process, events, log_from, run_dir)

    @work(thread=True, exclusive=True, exit_on_error=False, group="await-start")
    def _await_start(
        self, process: Any, events: Path, log_from: tuple[int, int] | None, run_dir: Path
    ) -> None:
        """Until the run has said ``run_started`` (then the dashboard) or has exited (then its
        error on the form). Polls the log's new bytes only."""
        offset = 0
        inode = None
        if log_from is not None:
            inode, offset = log_from
        buffer = b""
        while not self._stop_wait.is_set():
            try:
                st = os.stat(events)
            except OSError:
                st = None
            if st is not None:
                if inode is not None and (st.st_ino != inode or st.st_size < offset):
                    offset, buffer = 0, b""  # a new log (start over): from its beginning
                inode = st.st_ino
                if st.st_size > offset:
                    with open(events, "rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read(st.st_size - offset)
                    offset += len(chunk)
                    buffer += chunk
                    if b'"run_started"' in buffer:
                        self.post_message(RunStarted())
                        return
                    buffer = buffer[-4096:]
            if process.poll() is not None:
                if st is not None and os.path.getsize(events) > offset:
                    continue  # read what it wrote last first
                log = run_dir / "tui-launch.log"
                self.post_message(RunProcessExited(process.returncode, log_tail(log, lines=START_LOG_LINES)))
                return
            self._stop_wait.wait(0.1)

    def on_run_started(self, message: RunStarted) -> None:
        from agentdata_tui.tui.screens.dashboard import DashboardScreen

        self._busy(False, " ")
        self.app.push_screen(
            DashboardScreen(
                self._run_dir,
                process=self.process,
                newer_than=self._started,
                on_early_exit=self._exited_early,
            )
        )

    def _exited_early(self, returncode: int, tail: str) -> None:
        self.on_run_process_exited(RunProcessExited(returncode, tail))

    def on_run_process_exited(self, message: RunProcessExited) -> None:
        """The runner gave up before starting: its reason, whole, where the user can act on it."""
        self._busy(False)
        head = Text(f"✗ The run exited with code {message.returncode} before it got going:", style="bold red")
        body = Text(message.log_tail or "(it wrote nothing to its log)", style="red")
        where = Text(f"(log: {self._run_dir / 'tui-launch.log'})", style="dim")
        self._form_message(Text("\n").join([head, body, where]))
        self.notify(
            f"The run exited with code {message.returncode}: see the end of the form.", severity="error"
        )

    # -- leaving -------------------------------------------------------------
    def action_leave(self) -> None:
        """Quit; when the form was changed, ask first (Escape must not throw away a filled form)."""
        if self.form_values() == self._initial:
            self.app.exit(0)
            return
        from agentdata_tui.tui.screens.modals import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self.app.exit(0)

        self.app.push_screen(
            ConfirmScreen("Quit? The changes to the form are not kept (Start remembers them).", yes="Quit"),
            answer,
        )
