"""The browser's export dialog: what the filter shows, to SFT / trajectory / filtered JSON, in a worker.

The dialog narrows further with its own minimum reward and successful-only settings (the
core ``Criteria``), then hands a stream of examples to the core exporters; the progress bar
follows their ``progress(count)`` callback.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, RadioButton, RadioSet, Select

from agentdata_tui.tui.index import ExampleIndex, Row
from agentdata_tui.tui.messages import ExportDone, ExportProgress

KINDS = {
    "sft": ("SFT JSONL", ".sft.jsonl"),
    "trajectory": ("trajectory JSON", ".trajectories.json"),
    "filtered": ("filtered training-data JSON", ".filtered.json"),
}
REASONING = [
    ("inline (<think>…</think> in content)", "inline"),
    ("field (reasoning_content)", "field"),
    ("strip", "strip"),
]


def default_output(source: Path, kind: str) -> str:
    stem = source.name
    for suffix in (".jsonl", ".json", ".run"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    folder = source.parent
    return str(folder / (stem + KINDS[kind][1]))


def run_export(
    kind: str,
    index: ExampleIndex,
    rows: list[Row],
    output: str,
    *,
    min_reward: float | None,
    successful_only: bool,
    reasoning: str,
    progress: Any = None,
) -> int:
    """The export itself (no Textual): the core exporters over the rows' examples."""
    from agentdata_tui.processing.export import export_sft, export_trajectory, write_filtered
    from agentdata_tui.processing.select import Criteria

    criteria = Criteria(min_reward=min_reward, successful_only=successful_only)
    examples = (ex for ex in index.iter_examples(rows) if criteria.matches(ex))
    metadata = dict(index.metadata)
    metadata["exported_from"] = str(index.path)
    if kind == "sft":
        return export_sft(examples, output, reasoning=reasoning, progress=progress)
    if kind == "trajectory":
        return export_trajectory(examples, output, metadata=metadata, progress=progress)
    return write_filtered(examples, output, metadata, progress=progress)


class ExportScreen(ModalScreen[int | None]):
    """Returns the number of examples written (None when cancelled)."""

    BINDINGS = [
        Binding("escape", "cancel", "Close", id="close"),
        Binding("ctrl+e", "export", "Export", id="export"),
    ]

    def __init__(self, index: ExampleIndex, rows: list[Row]) -> None:
        super().__init__()
        self.index = index
        self.rows = rows
        self.running = False
        self.written: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog export-dialog"):
            yield Label(
                f"Export the {len(self.rows):,} example(s) the filter shows", classes="dialog-question"
            )
            with RadioSet(id="kind"):
                for key, (label, _) in KINDS.items():
                    yield RadioButton(label, value=key == "sft", id=f"kind-{key}")
            with Horizontal(classes="field-row"):
                yield Label("output", classes="field-label")
                yield Input(default_output(self.index.path, "sft"), id="output")
            with Horizontal(classes="field-row"):
                yield Label("min reward", classes="field-label")
                yield Input("", placeholder="0..1 (empty: any)", id="min-reward")
                yield Checkbox("successful only", id="successful")
            with Horizontal(classes="field-row"):
                yield Label("reasoning", classes="field-label")
                yield Select(REASONING, value="inline", allow_blank=False, id="reasoning")
            yield Label("", id="export-error", classes="error")
            yield ProgressBar(total=len(self.rows) or 1, show_eta=False, id="export-progress")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", id="export", variant="primary")
                yield Button("Close", id="cancel")

    def _kind(self) -> str:
        pressed = self.query_one("#kind", RadioSet).pressed_button
        return (pressed.id or "kind-sft").removeprefix("kind-") if pressed else "sft"

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        kind = self._kind()
        out = self.query_one("#output", Input)
        known = {default_output(self.index.path, k) for k in KINDS}
        if out.value in known or not out.value:
            out.value = default_output(self.index.path, kind)
        self.query_one("#reasoning", Select).disabled = kind != "sft"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.action_cancel()
        elif event.button.id == "export":
            self.start_export()

    def action_export(self) -> None:
        self.start_export()

    def action_cancel(self) -> None:
        if self.running:
            self.notify("The export is still running; it ends on its own.", severity="warning")
            return
        self.dismiss(self.written)

    def start_export(self) -> None:
        if self.running:
            return
        error = self.query_one("#export-error", Label)
        text = self.query_one("#min-reward", Input).value.strip()
        min_reward: float | None = None
        if text:
            try:
                min_reward = float(text)
            except ValueError:
                min_reward = -1.0
            if not 0.0 <= min_reward <= 1.0:
                error.update(f"min reward: must be a number between 0 and 1, got '{text}'")
                return
        output = self.query_one("#output", Input).value.strip()
        if not output:
            error.update("output: a file path is required")
            return
        if not Path(output).expanduser().resolve().parent.is_dir():
            error.update(f"output: folder {Path(output).expanduser().resolve().parent} does not exist")
            return
        error.update("")
        self.running = True
        self.query_one("#export", Button).disabled = True
        self._export(
            self._kind(),
            str(Path(output).expanduser()),
            min_reward,
            self.query_one("#successful", Checkbox).value,
            str(self.query_one("#reasoning", Select).value),
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def _export(
        self, kind: str, output: str, min_reward: float | None, successful_only: bool, reasoning: str
    ) -> None:
        total = len(self.rows)
        seen = 0
        last = [0.0]

        def progress(count: int) -> None:
            nonlocal seen
            seen = count
            now = time.monotonic()
            if now - last[0] >= 0.05 or count == total:  # the bar needs no more than 20 updates a second
                last[0] = now
                self.post_message(ExportProgress(count, total))

        try:
            count = run_export(
                kind,
                self.index,
                self.rows,
                output,
                min_reward=min_reward,
                successful_only=successful_only,
                reasoning=reasoning,
                progress=progress,
            )
        except Exception as exc:  # shown in the dialog, never a traceback
            self.post_message(
                ExportDone(output, seen, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            )
            return
        self.post_message(ExportDone(output, count))

    def on_export_progress(self, message: ExportProgress) -> None:
        self.query_one("#export-progress", ProgressBar).update(
            progress=min(message.count, message.total or 1)
        )

    def on_export_done(self, message: ExportDone) -> None:
        self.running = False
        self.query_one("#export", Button).disabled = False
        if message.error:
            self.query_one("#export-error", Label).update(f"export failed: {message.error}")
            self.app.notify(f"Export failed: {message.error}", severity="error")
            return
        bar = self.query_one("#export-progress", ProgressBar)
        bar.update(total=max(1, message.count), progress=max(1, message.count))
        self.written = message.count
        self.app.notify(f"Exported {message.count:,} example(s) to {message.path}", title="Export done")
        self.dismiss(message.count)
