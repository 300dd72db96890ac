"""The browser's export dialog: exactly what the browser's filter shows, to SFT / trajectory /
filtered JSON, in a worker.

One set of filters: the browser's (the dialog says which, and has none of its own). An SFT
export leaves out by default what the trainer-exports core leaves out (infrastructure
failures, examples without an assistant turn); the dialog counts them before it starts and
offers the same "include" toggle as ``export_sft --include-errors``. What was exported from
where and how is recorded as the CLI records it: ``metadata.processing`` in JSON outputs,
``<output>.meta.json`` beside an SFT JSONL.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, RadioButton, RadioSet, Select

from agentdata_tui.processing import with_processing
from agentdata_tui.tui.index import ExampleIndex, Row, RowFilter
from agentdata_tui.tui.messages import ExportDone, ExportProgress, PreviewReady

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


def processing_record(index: ExampleIndex, kind: str, flt: RowFilter, **fields: Any) -> dict[str, Any]:
    """This export as a step of the data's processing history (the CLI's record shape)."""
    from agentdata_tui.processing import processing_record as record

    inputs = [str(p) for p in index.paths]
    return record(
        f"tui export ({kind})",
        inputs[0] if len(inputs) == 1 else inputs,
        criteria=flt.criteria().describe(),
        **fields,
    )


def run_export(
    kind: str,
    index: ExampleIndex,
    rows: list[Row],
    output: str,
    *,
    flt: RowFilter,
    reasoning: str = "inline",
    include_errors: bool = False,
    progress: Any = None,
    report: Any = None,
) -> int:
    """The export itself (no Textual): the core exporters over the rows' examples, which are
    already the browser's selection (nothing is filtered again here)."""
    from agentdata_tui.processing.export import export_sft, export_trajectory, write_filtered

    examples = index.iter_examples(rows)
    if kind == "sft":
        meta = {
            "command": "tui export (sft)",
            "input": [str(p) for p in index.paths] if index.multiple else str(index.path),
            "criteria": flt.criteria().describe(),
            "shown": len(rows),
        }
        return export_sft(
            examples,
            output,
            reasoning=reasoning,  # type: ignore[arg-type]
            include_errors=include_errors,
            file_metadata=index.metadata,
            progress=progress,
            report=report,
            meta=meta,
        )
    metadata = with_processing(index.metadata, processing_record(index, kind, flt, examples=len(rows)))
    if kind == "trajectory":
        return export_trajectory(examples, output, metadata=metadata, progress=progress)
    return write_filtered(examples, output, metadata, progress=progress)


class ExportScreen(ModalScreen[int | None]):
    """Returns the number of examples written (None when closed without exporting)."""

    BINDINGS = [
        Binding("escape", "cancel", "Close", id="close"),
        Binding("ctrl+e", "export", "Export", id="export"),
    ]

    def __init__(self, index: ExampleIndex, rows: list[Row], flt: RowFilter | None = None) -> None:
        super().__init__()
        self.index = index
        self.rows = rows
        self.flt = flt or RowFilter()
        self.running = False
        self.written: int | None = None
        self.preview: Any = None  # the SFT export's counts (SftReport), once computed
        self.report: Any = None  # the last export's report (SFT)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog export-dialog"):
            yield Label(
                Text.assemble(
                    ("Export what the browser shows: ", "bold"),
                    (f"{len(self.rows):,} example(s)", "bold cyan"),
                ),
                id="export-title",
                classes="dialog-question",
            )
            yield Label(
                Text(f"filter: {self.flt.describe()} (change it in the browser)", style="dim"),
                id="export-filter",
            )
            with VerticalScroll(id="export-fields"):
                with RadioSet(id="kind", compact=True):
                    for key, (label, _) in KINDS.items():
                        yield RadioButton(label, value=key == "sft", id=f"kind-{key}")
                with Horizontal(classes="field-row"):
                    yield Label("output", classes="field-label")
                    yield Input(default_output(self.index.path, "sft"), id="output", compact=True)
                with Horizontal(classes="field-row"):
                    yield Label("reasoning", classes="field-label")
                    yield Select(REASONING, value="inline", allow_blank=False, id="reasoning", compact=True)
                yield Checkbox(
                    "include examples the SFT export leaves out", id="include-errors", compact=True
                )
            yield Label("", id="export-counts")
            yield Label("", id="export-error", classes="error")
            yield ProgressBar(total=len(self.rows) or 1, show_eta=False, id="export-progress")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", id="export", variant="primary", compact=True)
                yield Button("Close", id="cancel", compact=True)

    def on_mount(self) -> None:
        self._show_counts()
        self.compute_preview()

    # -- counts --------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="export-preview")
    def compute_preview(self) -> None:
        from agentdata_tui.processing.export import preview_sft

        try:
            report = preview_sft(self.index.iter_examples(self.rows))
        except Exception as exc:  # an unreadable example: said by the export itself
            self.post_message(
                PreviewReady(None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            )
            return
        self.post_message(PreviewReady(report))

    def on_preview_ready(self, message: PreviewReady) -> None:
        self.preview = message.report
        if message.error:
            self.query_one("#export-error", Label).update(f"could not read every example: {message.error}")
        self._show_counts()

    def _show_counts(self) -> None:
        shown = len(self.rows)
        kind = self._kind()
        include = self.query_one("#include-errors", Checkbox)
        include.disabled = kind != "sft"
        text = Text(f"{shown:,} shown by the filter", style="bold")
        if kind != "sft":
            text.append(f" · {shown:,} to write")
        elif self.preview is None:
            text.append(" · counting what the SFT export leaves out…", style="italic")
        else:
            left = self.preview.left_out
            n_left = sum(left.values())
            include.label = (
                f"include the {n_left:,} example(s) left out by default (like --include-errors)"
                if n_left
                else "include examples the SFT export leaves out (none here)"
            )
            if include.value or not n_left:
                text.append(f" · {shown:,} to write")
                if n_left:
                    text.append(f" (the {n_left:,} usually left out included)", style="yellow")
            else:
                why = ", ".join(f"{n:,} {reason}" for reason, n in sorted(left.items()))
                text.append(f" · {n_left:,} left out by default ({why})", style="yellow")
                text.append(f" · {shown - n_left:,} to write")
        self.query_one("#export-counts", Label).update(text)

    @on(Checkbox.Changed, "#include-errors")
    def _include_changed(self) -> None:
        self._show_counts()

    # -- kind and output -----------------------------------------------------
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
        self._show_counts()

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
        output = self.query_one("#output", Input).value.strip()
        if not output:
            error.update("output: a file path is required")
            return
        folder = Path(output).expanduser().resolve().parent
        if not folder.is_dir():
            error.update(f"output: the folder {folder} does not exist")
            return
        error.update("")
        self.running = True
        self.query_one("#export", Button).disabled = True
        self._export(
            self._kind(),
            str(Path(output).expanduser()),
            str(self.query_one("#reasoning", Select).value),
            self.query_one("#include-errors", Checkbox).value,
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def _export(self, kind: str, output: str, reasoning: str, include_errors: bool) -> None:
        from agentdata_tui.processing.export import SftReport

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

        report = SftReport()
        try:
            count = run_export(
                kind,
                self.index,
                self.rows,
                output,
                flt=self.flt,
                reasoning=reasoning,
                include_errors=include_errors,
                progress=progress,
                report=report,
            )
        except Exception as exc:  # shown in the dialog, never a traceback
            self.post_message(
                ExportDone(output, seen, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            )
            return
        self.report = report if kind == "sft" else None
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
        said = f"Exported {message.count:,} of the {len(self.rows):,} example(s) shown to {message.path}"
        if self.report is not None and self.report.left_out:
            left = ", ".join(f"{n:,} {reason}" for reason, n in sorted(self.report.left_out.items()))
            said += f" ({self.report.left_out_total:,} left out: {left})"
        if self.report is not None:
            from agentdata_tui.processing.export import meta_path

            said += f"; criteria and counts in {meta_path(message.path).name}"
        self.app.notify(said, title="Export done", timeout=10)
        self.dismiss(message.count)
