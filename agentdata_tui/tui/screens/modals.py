"""Small dialogs: confirmations and the dashboard's quit question."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no; Escape (or `n`) is no."""

    BINDINGS = [
        Binding("escape,n,q", "answer(False)", "No", id="no"),
        Binding("y", "answer(True)", "Yes", id="yes"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "Cancel") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.no, id="no")
                yield Button(self.yes, id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class QuitRunScreen(ModalScreen[str | None]):
    """Leaving the dashboard of a live run: leave it running (default) or stop it."""

    BINDINGS = [
        Binding("escape", "answer(None)", "Cancel", id="cancel"),
        Binding("l,q", "answer('leave')", "Leave running", id="leave"),
        Binding("s", "answer('stop')", "Stop the run", id="stop"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                "The run is still going. Leave it running in the background "
                "(re-attach with `agentdata-tui watch`), or stop it?",
                classes="dialog-question",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Leave running", id="leave", variant="primary")
                yield Button("Stop the run", id="stop", variant="error")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_answer(self, value: str | None) -> None:
        self.dismiss(value)


class ChoiceScreen(ModalScreen[str | None]):
    """A question with a few answers (buttons); Escape is the last one, "cancel"."""

    BINDINGS = [Binding("escape", "answer(None)", "Cancel", id="cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str, str]], detail: str = "") -> None:
        """``choices``: (key, button label, variant); the first has the focus."""
        super().__init__()
        self.question, self.choices, self.detail = question, choices, detail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-question")
            if self.detail:
                yield Label(self.detail, classes="dialog-question dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                for key, label, variant in self.choices:
                    yield Button(label, id=f"choice-{key}", variant=variant)  # type: ignore[arg-type]

    def on_mount(self) -> None:
        self.query_one(Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        key = (event.button.id or "").removeprefix("choice-")
        self.dismiss(None if key == "cancel" else key)

    def action_answer(self, value: str | None) -> None:
        self.dismiss(value)
