"""The live dashboard: follows a run folder's ``events.jsonl``, exactly as ``watch`` does.

A worker thread reads the log in batches (``EventTail``) and posts them; the UI thread folds
them into :class:`DashboardState` (cheap) and a 10 Hz timer repaints only what changed, so a
run with hundreds of workers streaming never repaints once per event.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Header, Label, ProgressBar, RichLog, Static

from agentdata_tui.events import EventTail
from agentdata_tui.tui.messages import ControlAnswered, EventsBatch, LogReset, RunProcessExited
from agentdata_tui.tui.run_folder import log_tail, pid_alive, read_run_json
from agentdata_tui.tui.state import DashboardState, RolloutView, StepView, format_duration
from agentdata_tui.tui.widgets.footer import AppFooter
from agentdata_tui.tui.widgets.line_table import LineTable
from agentdata_tui.tui.widgets.render import code, is_suspicious, render_content, speedup_cell, visible

REPAINT_S = 0.1  # at most ten repaints a second
WORKER_COLUMNS = ("worker", "instance", "sample", "step", "elapsed", "status", "last command")
# Widths that keep the worker table within half of a 120-column terminal (the conversation
# gets the other half); "last command" takes whatever is left and is left out when nothing is.
WORKER_HEADERS = {
    "worker": ("w", 3),
    "instance": ("instance", 20),
    "sample": ("s", 2),
    "step": ("step", 4),
    "elapsed": ("time", 7),
    "status": ("status", 9),
    "last command": ("last command", 0),
}
NARROW = 100  # below this many columns the worker table and the conversation are stacked
RECENT_HEADERS = [  # the instance column takes what the others leave
    ("instance", 14),
    ("s", 2),
    ("reward", 7),
    ("speedup", 9),
    ("status", 10),
    ("exit status", 14),
    ("steps", 5),
]
STATUS_STYLE = {
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "error": "bold red",
    "stopped": "dim",
    "cancelled": "magenta",
    "idle": "dim",
}


class DashboardScreen(Screen[None]):
    BINDINGS = [
        Binding("q", "leave", "Quit", id="quit"),
        Binding("s", "stop_run", "Stop run", id="stop"),
        Binding("b", "browse", "Browse", id="browse"),
        Binding("f", "follow", "Follow newest", show=False, id="follow"),
        Binding("p", "pause", "Pause/resume", id="pause"),
        Binding("x", "cancel_rollout", "Cancel rollout", id="cancel-rollout"),
        Binding("plus", "workers(1)", "More workers", key_display="+", show=False, id="more-workers"),
        Binding("minus", "workers(-1)", "Fewer workers", key_display="-", show=False, id="fewer-workers"),
    ]

    def __init__(
        self,
        run_dir: Path,
        *,
        process: Any = None,
        poll_interval: float = 0.2,
        newer_than: float | None = None,
        on_early_exit: Any = None,
    ) -> None:
        """``on_early_exit(returncode, log_tail)``: the launch screen's way back to the form when
        the run it started exits with an error before finishing any rollout."""
        super().__init__()
        self.run_dir = Path(run_dir)
        self.process = process
        self.newer_than = newer_than
        self.on_early_exit = on_early_exit
        self.poll_interval = poll_interval
        self.state: DashboardState | None = None
        self.painted_events = -1
        self.selected_rollout: str | None = None
        self.selected_worker: str | None = None  # follow this worker's rollouts as they change
        self._written_steps = 0
        self._dirty = True
        self._stop = threading.Event()
        self._pending = threading.Semaphore(8)  # batches in flight: the reader backs off past this
        self._recent_done = -1
        self._recent_views: dict[str, RolloutView] = {}
        self._tick = 0
        self._process_reported = False
        self._stop_sent = False
        self._problem_shown = False
        self._live_width = 0
        self.rewrap_pending = False  # a resize's rewrite of the conversation is still to come
        self.sub_title = str(self.run_dir)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Waiting for the run's event log…", id="run-summary")
        yield ProgressBar(total=None, show_eta=False, id="run-progress")
        yield Label("", id="run-alert")
        with Horizontal(id="dash-body"):
            yield LineTable(
                [WORKER_HEADERS[c] for c in WORKER_COLUMNS],
                self._worker_row,
                flex=WORKER_COLUMNS.index("last command"),
                id="workers",
            )
            with Vertical(id="live"):
                yield Label("Conversation", id="live-title")
                yield RichLog(
                    id="live-log", wrap=True, markup=False, highlight=False, max_lines=2000, min_width=20
                )
        yield LineTable(RECENT_HEADERS, self._recent_row, flex=0, id="recent")
        yield AppFooter()

    def on_mount(self) -> None:
        self.state = DashboardState(clock=self.app.clock)  # type: ignore[attr-defined]
        self.follow()
        self.set_interval(REPAINT_S, self.repaint)
        self.repaint()

    def on_unmount(self) -> None:
        self._stop.set()

    # -- reading the log -----------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="tail")
    def follow(self) -> None:
        """Tail the log. A log replaced or truncated (a run started over in this folder) starts
        the dashboard over; a log older than ``newer_than`` (a previous run's, which the run
        just launched is about to replace) is not read."""
        path = self.run_dir / "events.jsonl"
        tail = EventTail(path)
        inode: int | None = None
        finished = False
        while not self._stop.is_set():
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and self.newer_than is not None and st.st_mtime < self.newer_than:
                st = None  # the previous run's log: wait for the new one
            if st is not None:
                if inode is None:
                    inode = st.st_ino
                elif st.st_ino != inode or st.st_size < tail.offset:
                    tail, inode, finished = EventTail(path), st.st_ino, False
                    self.post_message(LogReset())
            events = tail.read() if st is not None else []
            if events:
                finished = finished or any(e.get("type") == "run_finished" for e in events)
                while not self._pending.acquire(timeout=0.5):
                    if self._stop.is_set():
                        return
                self.post_message(EventsBatch(events))
                continue
            process_done = self.process is None or self.process.poll() is not None
            if finished and process_done:
                return
            if self.process is not None and process_done:
                # The run exited: read what it wrote last, then report once.
                events = tail.read()
                if events:
                    self.post_message(EventsBatch(events))
                    continue
                self.post_message(
                    RunProcessExited(self.process.returncode, log_tail(self._log_path(), lines=40))
                )
                return
            self._stop.wait(self.poll_interval)

    def _log_path(self) -> Path:
        for name in ("tui-launch.log", "demo.log"):
            if (self.run_dir / name).exists():
                return self.run_dir / name
        return self.run_dir / "tui-launch.log"

    def on_log_reset(self, message: LogReset) -> None:
        """The run started over in this folder: so does the dashboard."""
        self.state = DashboardState(clock=self.app.clock)  # type: ignore[attr-defined]
        self.query_one("#workers", LineTable).set_keys([])
        self.query_one("#recent", LineTable).set_keys([])
        self.query_one("#live-log", RichLog).clear()
        self._recent_views = {}
        self._recent_done = -1
        self.selected_rollout = self.selected_worker = None
        self._dirty = True

    def on_events_batch(self, message: EventsBatch) -> None:
        self._pending.release()
        assert self.state is not None
        self.state.apply(message.events)
        self._dirty = True

    def on_run_process_exited(self, message: RunProcessExited) -> None:
        assert self.state is not None
        if self.state.run_finished is not None or self._process_reported:
            return
        self._process_reported = True
        early = not self.state.finished_seen
        if message.returncode != 0 and not self._stop_sent and early and self.on_early_exit is not None:
            # Nothing to watch: back to the form, with the runner's reason in full.
            callback = self.on_early_exit
            self.app.pop_screen()
            callback(message.returncode, message.log_tail)
            return
        if message.returncode != 0 and not self._stop_sent:
            tail = "\n".join(message.log_tail.splitlines()[-8:])
            text = f"The run exited with code {message.returncode} before finishing:\n{tail}"
            self.query_one("#run-alert", Label).update(Text(text.strip(), style="bold red"))
            self.query_one("#run-alert", Label).add_class("shown")
            self.notify(
                f"The run exited with code {message.returncode}: see {self._log_path()}",
                severity="error",
                timeout=15,
            )
        else:
            self.query_one("#run-alert", Label).update("The run's process has ended.")
            self.query_one("#run-alert", Label).add_class("shown")

    # -- painting ------------------------------------------------------------
    def repaint(self) -> None:
        state = self.state
        if state is None:
            return
        self._tick += 1
        every_second = self._tick % 10 == 0
        if not self._dirty and not every_second:
            return
        self._dirty = False
        self.painted_events = state.events_seen
        dirty_workers, dirty_rollouts = state.take_dirty()
        self._paint_summary(state)
        self._paint_workers(state, dirty_workers, elapsed_only=every_second)
        self._paint_recent(state)
        self._paint_live(state, dirty_rollouts)

    def _paint_summary(self, state: DashboardState) -> None:
        m = state.metrics()
        if state.run_id is None and not state.events_seen:
            return
        live = self._run_live()
        state.stale = not live and not m.finished
        m = state.metrics()
        if state.paused and not m.finished:
            status = "paused (p resumes)"
        elif m.stopped:
            status = "stopped (resume with --resume)"
        elif m.status in ("failed", "aborted"):
            status = f"{m.status}: {m.reason}" if m.reason else m.status
        elif m.finished:
            status = "finished"
        else:
            status = "running" if live else "not running (stopped or killed; resume with --resume)"
        settings = state.settings
        model = settings.get("model") or settings.get("model_name")
        groups: list[list[Text | str | tuple[str, str]]] = [
            [
                (state.run_id or "run ?", "bold"),
                (status, "green" if m.finished and not m.stopped else "yellow"),
                *([f"model {model}"] if model else []),
                f"{state.control_workers or state.workers_n or len(state.workers)} workers",
            ],
            [
                (f"{m.done:,}/{m.total:,} done", "bold"),
                *([f"{m.done_before:,} before this session"] if m.done_before else []),
                f"ETA {format_duration(m.eta_s)}",
                f"elapsed {format_duration(m.elapsed_s)}",
                f"{m.rollouts_per_min:.1f} rollouts/min",
                f"{m.tokens_per_s:,.0f} tok/s",
            ],
            [
                (f"running {m.running}", "yellow"),
                (f"succeeded {m.succeeded}", "green"),
                (f"failed {m.failed}", "red"),
                (f"errors {m.errors}", "bold red" if m.errors else "dim"),
                *(
                    [(f"cancelled {m.cancelled} (not recorded; they run again on resume)", "magenta")]
                    if m.cancelled
                    else []
                ),
                f"success {m.success_rate * 100:.1f}%",
                f"avg reward {m.average_reward:.3f}",
            ],
        ]
        width = max(20, self.size.width - 2)
        lines = [line for group in groups for line in figure_lines(group, width)]
        self.query_one("#run-summary", Static).update(Text("\n").join(lines))
        bar = self.query_one("#run-progress", ProgressBar)
        bar.update(total=max(1, m.total), progress=m.done)

    def _worker_cells(self, state: DashboardState, w: Any) -> tuple:
        view = state.rollouts.get(w.rollout_id) if w.rollout_id else None
        if view is not None and view.finished_t is not None:
            elapsed = view.finished_t - view.started_t
        else:
            elapsed = state.elapsed(w.started_t) if w.started_t is not None else None
        command = w.last_command.replace("\n", " ⏎ ")
        return (
            w.worker,
            w.instance_id,
            str(w.sample_index),
            str(w.step),
            format_duration(elapsed),
            Text(w.status, style=STATUS_STYLE.get(w.status, "")),
            command[:300],
        )

    def _worker_row(self, key: str) -> tuple:
        assert self.state is not None
        w = self.state.workers.get(key)
        return self._worker_cells(self.state, w) if w is not None else ()

    def _paint_workers(self, state: DashboardState, dirty: set[str], elapsed_only: bool) -> None:
        """Rows are painted from the state when shown: a repaint only says what changed."""
        table = self.query_one("#workers", LineTable)
        if len(state.workers) != table.row_count or "*" in dirty:
            table.set_keys(sorted(state.workers, key=_worker_order))
        elif dirty or elapsed_only:
            table.refresh_rows()
        if self.selected_rollout is None and table.row_count:
            self._select_worker_row(table.cursor)
        elif self.selected_worker in dirty:
            w = state.workers.get(self.selected_worker)
            if w is not None and w.rollout_id and w.rollout_id != self.selected_rollout:
                self.select_rollout(w.rollout_id, worker=self.selected_worker)

    def _recent_row(self, key: str) -> tuple:
        view = self._recent_views.get(key)
        if view is None:
            return ()
        f = view.finished or {}
        reward = f.get("reward")
        speedup = f.get("speedup")
        calls = f.get("model_calls")
        return (
            view.instance_id,
            str(view.sample_index),
            Text("–" if reward is None else f"{reward:.3f}", justify="right"),
            speedup_cell(speedup, f.get("speedup_flagged")),
            Text(view.status, style=STATUS_STYLE.get(view.status, "")),
            str(f.get("exit_status") or ""),
            str(calls if calls is not None else len(view.steps)),
        )

    def _paint_recent(self, state: DashboardState) -> None:
        if state.finished_seen == self._recent_done:
            return
        self._recent_done = state.finished_seen
        self._recent_views = {v.rollout_id: v for v in state.recent}
        self.query_one("#recent", LineTable).set_keys([v.rollout_id for v in state.recent])

    def _paint_live(self, state: DashboardState, dirty_rollouts: set[str]) -> None:
        rid = self.selected_rollout
        if rid is None or rid not in dirty_rollouts:
            return
        view = state.rollouts.get(rid)
        if view is None:
            return
        log = self.query_one("#live-log", RichLog)
        if not view.steps:
            # Nothing the model did yet: the task it was given, until its first step.
            if not self._problem_shown:
                _write_problem(log, view)
                self._problem_shown = True
        elif self._problem_shown:
            log.clear()
            self._problem_shown = False
        for step in view.steps[self._written_steps :]:
            _write_step(log, step)
        self._written_steps = len(view.steps)
        if view.finished is not None and not getattr(log, "_finished_written", False):
            _write_finished(log, view)
            log._finished_written = True  # type: ignore[attr-defined]
        # RichLog scrolls to the end as it writes, but lines written right after a clear (a new
        # rollout, a new width) can land before its size is known: follow the newest line once
        # the layout is done.
        self.call_after_refresh(log.scroll_end, animate=False)

    def select_rollout(self, rollout_id: str | None, worker: str | None = None) -> None:
        """Show this rollout's conversation (from its first step, growing as steps arrive).

        Chosen through a worker's row, the view then follows that worker to its next rollout;
        chosen among the finished ones, it stays."""
        self.selected_worker = worker
        if rollout_id == self.selected_rollout or self.state is None:
            return
        self.selected_rollout = rollout_id
        self._clear_live()
        view = self.state.rollouts.get(rollout_id) if rollout_id else None
        title = self.query_one("#live-title", Label)
        if view is None:
            title.update("Conversation")
            return
        title.update(
            Text(f"{view.instance_id} · sample {view.sample_index} · worker {view.worker}", style="bold")
        )
        self._paint_live(self.state, {view.rollout_id})

    def _clear_live(self) -> None:
        log = self.query_one("#live-log", RichLog)
        log.clear()
        log._finished_written = False  # type: ignore[attr-defined]
        self._written_steps = 0
        self._problem_shown = False

    def on_resize(self, event: Any) -> None:
        """Stacked below 100 columns; the conversation is written again at its new width (a
        RichLog keeps lines wrapped at the width they were written at)."""
        self.set_class(self.size.width < NARROW, "narrow")
        self.rewrap_pending = True
        self.call_after_refresh(self._rewrap_live)

    def _rewrap_live(self) -> None:
        self.rewrap_pending = False
        width = self.query_one("#live-log", RichLog).scrollable_content_region.width
        if width == self._live_width or self.state is None or self.selected_rollout is None:
            self._live_width = width
            return
        self._live_width = width
        self._clear_live()
        self._paint_live(self.state, {self.selected_rollout})

    def _select_worker_row(self, row: int) -> None:
        table = self.query_one("#workers", LineTable)
        if not table.row_count or self.state is None:
            return
        w = self.state.workers.get(table.keys[min(row, table.row_count - 1)])
        if w is not None and w.rollout_id:
            self.select_rollout(w.rollout_id, worker=w.worker)

    @on(LineTable.Highlighted, "#workers")
    def _worker_highlighted(self, event: LineTable.Highlighted) -> None:
        if self.state is not None:
            w = self.state.workers.get(event.key)
            if w is not None and w.rollout_id:
                self.select_rollout(w.rollout_id, worker=w.worker)

    @on(LineTable.Selected, "#recent")
    def _recent_selected(self, event: LineTable.Selected) -> None:
        self.select_rollout(event.key)

    # -- the run process -----------------------------------------------------
    def run_pid(self) -> int | None:
        """The runner's pid: the run folder's lock holder, else run.json's while it says it is
        running (a finished run's pid may belong to another process by now)."""
        from agentdata_tui.runner.store import lock_holder

        holder = lock_holder(self.run_dir)
        if holder:
            return holder
        data = read_run_json(self.run_dir)
        pid = data.get("pid")
        if isinstance(pid, int) and data.get("status", "running") == "running":
            return pid
        return getattr(self.process, "pid", None)

    def _run_live(self) -> bool:
        if self.state is not None and self.state.run_finished is not None:
            return False
        if self.process is not None and self.process.poll() is None:
            return True
        return pid_alive(self.run_pid())

    def stop_run(self) -> bool:
        """A graceful stop: SIGTERM to the runner (it records what is done and writes the output)."""
        pid = self.run_pid()
        if not pid_alive(pid):
            self.notify("The run is not running (no live process in run.json).", severity="warning")
            return False
        try:
            os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
        except OSError as exc:
            self.notify(f"Could not stop the run (pid {pid}): {exc.strerror}", severity="error")
            return False
        self._stop_sent = True
        self.notify(f"Stop sent to the run (pid {pid}); it finishes cleanly and writes its output.")
        return True

    # -- actions -------------------------------------------------------------
    def action_stop_run(self) -> None:
        if not self._run_live():
            self.notify("The run is not running.", severity="warning")
            return
        from agentdata_tui.tui.screens.modals import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self.stop_run()

        self.app.push_screen(
            ConfirmScreen(
                "Stop the run? Rollouts in flight are not recorded; resume later with --resume.",
                yes="Stop the run",
            ),
            answer,
        )

    def action_leave(self) -> None:
        if not self._run_live():
            self.app.exit(0)
            return
        from agentdata_tui.tui.screens.modals import QuitRunScreen

        def answer(choice: str | None) -> None:
            if choice == "stop":
                self.stop_run()
                self.app.exit(0)
            elif choice == "leave":
                self.app.exit(0)

        self.app.push_screen(QuitRunScreen(), answer)

    def action_browse(self) -> None:
        if not (self.run_dir / "examples.jsonl").exists():
            self.notify("No finished rollouts yet: nothing to browse.", severity="warning")
            return
        from agentdata_tui.tui.screens.browser import BrowserScreen

        self.app.push_screen(BrowserScreen(self.run_dir))

    # -- live control (the runner's control channel, runner/control.py) ------
    def action_pause(self) -> None:
        paused = bool(self.state and self.state.paused)
        self.control("resume" if paused else "pause")

    def action_workers(self, delta: int) -> None:
        if self.state is None:
            return
        current = self.state.control_workers or self.state.workers_n or len(self.state.workers) or 1
        self.control("workers", str(max(1, current + delta)))

    def action_cancel_rollout(self) -> None:
        rid = self.selected_rollout
        view = self.state.rollouts.get(rid) if self.state and rid else None
        if view is None or view.finished is not None:
            self.notify("Select a running rollout first (a worker's row).", severity="warning")
            return
        from agentdata_tui.tui.screens.modals import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self.control("cancel", view.rollout_id)

        self.app.push_screen(
            ConfirmScreen(
                f"Cancel {view.instance_id} sample {view.sample_index}? It is not recorded and runs again on --resume.",
                yes="Cancel the rollout",
                no="Keep it",
            ),
            answer,
        )

    def control(self, command: str, arg: str | None = None) -> None:
        if not self._run_live():
            self.notify("The run is not running: nothing to control.", severity="warning")
            return
        self._send_control(command, arg)

    @work(thread=True, exit_on_error=False, group="control")
    def _send_control(self, command: str, arg: str | None) -> None:
        from agentdata_tui.errors import UserError
        from agentdata_tui.runner.control import send_command

        try:
            answer = send_command(self.run_dir, command, arg, wait=10.0)
        except UserError as exc:
            self.post_message(ControlAnswered(command, False, str(exc)))
            return
        self.post_message(ControlAnswered(command, bool(answer.get("ok")), str(answer.get("detail") or "")))

    def on_control_answered(self, message: ControlAnswered) -> None:
        what = f"{message.command}: {message.detail}" if message.detail else message.command
        self.notify(what, severity="information" if message.ok else "error")
        self._dirty = True

    def action_follow(self) -> None:
        """Show the most recently started rollout."""
        if self.state and self.state.rollouts:
            running = [r for r in self.state.rollouts.values() if r.finished is None]
            target = running[-1] if running else next(reversed(self.state.rollouts.values()))
            self.select_rollout(target.rollout_id)


def figure_lines(figures: list[Text | str | tuple[str, str]], width: int) -> list[Text]:
    """Figures joined by ' · ', wrapped between figures, never inside one ("avg reward" stays
    beside its number)."""
    sep = Text(" · ", style="dim")
    lines: list[Text] = []
    line = Text()
    for figure in figures:
        text = (
            figure
            if isinstance(figure, Text)
            else Text(*figure)
            if isinstance(figure, tuple)
            else Text(figure)
        )
        if line.cell_len and line.cell_len + len(sep) + text.cell_len > width:
            lines.append(line)
            line = Text()
        if line.cell_len:
            line.append_text(sep)
        line.append_text(text)
    if line.cell_len:
        lines.append(line)
    return lines


def _worker_order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 30, key)


def _write_step(log: RichLog, step: StepView) -> None:
    head = Text()
    head.append(f" step {step.step} ", style="bold reverse green")
    if step.completion_tokens or step.prompt_tokens:
        head.append(f"  {step.prompt_tokens:,}+{step.completion_tokens:,} tokens", style="dim")
    if step.model_latency_s is not None:
        head.append(f"  model {step.model_latency_s:.1f}s", style="dim")
    log.write(head)
    if step.assistant:
        text = step.assistant
        lines = text.splitlines()
        if len(lines) > 40:  # the whole text is in the browser; keep the live view light
            text = "\n".join(lines[:40]) + f"\n… {len(lines) - 40} more lines"
        log.write(render_content(text))
    if step.command and step.command not in step.assistant:  # tool-call mode: not in the text
        log.write(code(step.command, "bash"))
    if step.observation or step.returncode is not None:
        rc = Text(f"  ↳ returncode {step.returncode}", style="green" if step.returncode == 0 else "red")
        if step.exec_time_s is not None:
            rc.append(f"  {step.exec_time_s:.2f}s", style="dim")
        log.write(rc)
        obs = step.observation
        lines = obs.splitlines()
        if len(lines) > 12:
            obs = "\n".join(lines[:12]) + f"\n… {len(lines) - 12} more lines (full text in the browser)"
        if obs:
            log.write(visible(obs, style="dim"))  # escape codes spelled out, as in the browser


def _write_problem(log: RichLog, view: RolloutView) -> None:
    log.write(
        Text(" TASK ", style="bold reverse cyan")
        + Text("  the problem statement (until the first step)", style="dim")
    )
    if view.problem_statement:
        text = view.problem_statement
        lines = text.splitlines()
        if len(lines) > 60:
            text = "\n".join(lines[:60]) + f"\n… {len(lines) - 60} more lines"
        log.write(Text(text))
    else:
        log.write(Text("(the event log does not carry it; waiting for the first step)", style="dim italic"))


def _write_finished(log: RichLog, view: RolloutView) -> None:
    f = view.finished or {}
    t = Text()
    t.append(f" {view.status.upper()} ", style=("bold reverse " + STATUS_STYLE.get(view.status, "")).strip())
    t.append(f"  exit {f.get('exit_status')}  reward {f.get('reward')}")
    if f.get("speedup") is not None:
        if is_suspicious(f["speedup"], f.get("speedup_flagged")):
            t.append(f"  speedup {f['speedup']:.2f}× ⚠ suspicious (>10×): check it", style="bold magenta")
        else:
            t.append(f"  speedup {f['speedup']:.2f}×")
    if f.get("error"):
        t.append(f"  error: {f['error']}", style="red")
    log.write(t)
