"""The screens as frozen apps (clock injected, fixed data, relative paths) for snapshots and screenshots.

Each builder writes its data into the current folder and returns ``(app, run_before)``;
``run_before`` waits (on conditions, never sleeps) until the screen is complete.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input

from agentdata_tui.tui.app import AgentDataApp, make_app
from agentdata_tui.tui.screens.compare import CompareScreen, TasksScreen
from agentdata_tui.tui.screens.export import ExportScreen
from agentdata_tui.tui.screens.stats import StatsScreen
from tui.fixtures import T0, compare_inputs, write_file, write_run
from tui.helpers import dashboard_caught_up, index_done, wait_until

Built = tuple[AgentDataApp, Callable[[Pilot], Awaitable[None]]]
CLOCK = lambda: T0 + 27  # noqa: E731


def _data() -> Path:
    path = Path("training_data.json")
    if not path.exists():
        write_file(path, n=15, samples=3)
    return path


def browser() -> Built:
    async def ready(pilot: Pilot) -> None:
        await index_done(pilot)

    return make_app("browse", path=_data(), clock=CLOCK), ready


def example_detail() -> Built:
    async def ready(pilot: Pilot) -> None:
        await index_done(pilot)
        await pilot.press("n", "n", "n")
        pilot.app.screen.query_one("ConversationView").action_toggle_fold(0)  # the reasoning opened
        await pilot.pause()

    return make_app("browse", path=_data(), clock=CLOCK), ready


def diff_tab() -> Built:
    async def ready(pilot: Pilot) -> None:
        await index_done(pilot)
        await pilot.press("2")
        await pilot.pause()

    return make_app("browse", path=_data(), clock=CLOCK), ready


def export_dialog() -> Built:
    async def ready(pilot: Pilot) -> None:
        await index_done(pilot)
        pilot.app.screen.query_one("#text", Input).value = "task-1"
        pilot.app.screen.query_one("#examples").focus()
        await pilot.pause()
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ExportScreen))
        await pilot.pause()

    return make_app("browse", path=_data(), clock=CLOCK), ready


def statistics() -> Built:
    async def ready(pilot: Pilot) -> None:
        await index_done(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, StatsScreen))
        await pilot.app.workers.wait_for_complete()
        await wait_until(pilot, lambda: pilot.app.screen.stats is not None)
        await pilot.pause()

    return make_app("browse", path=_data(), clock=CLOCK), ready


def _two_inputs() -> list[Path]:
    return list(compare_inputs(Path(".")))


def tasks() -> Built:
    async def ready(pilot: Pilot) -> None:
        await index_done(pilot)
        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, TasksScreen))
        await pilot.pause()

    return make_app("browse", path=_two_inputs(), clock=CLOCK), ready


def _compare(tab: str) -> Built:
    async def ready(pilot: Pilot) -> None:
        await index_done(pilot)
        await pilot.press("g")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, TasksScreen))
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        await pilot.press("down", "down", "b", tab)
        await pilot.pause()

    return make_app("browse", path=_two_inputs(), clock=CLOCK), ready


def speedup_statistics() -> Built:
    """The statistics of two models' rollouts, scrolled to the speedup figures."""

    async def ready(pilot: Pilot) -> None:
        await index_done(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, StatsScreen))
        await pilot.app.workers.wait_for_complete()
        await wait_until(pilot, lambda: pilot.app.screen.stats is not None)
        await pilot.pause()
        pilot.app.screen.scroll_to_section("Speedup")
        await pilot.pause()

    return make_app("browse", path=_two_inputs(), clock=CLOCK), ready


def dashboard() -> Built:
    """Mid-run: 5 of 8 done, 3 rollouts in flight (the runner's pid is this process: 'running')."""
    import os

    run = write_run(Path("training_data.run"), total=8, finished=5, complete=False, pid=os.getpid())

    async def ready(pilot: Pilot) -> None:
        await dashboard_caught_up(pilot)

    return make_app("watch", path=run, clock=CLOCK), ready


def launch() -> Built:
    Path("tasks.json").write_text('[{"instance_id": "t1", "problem_statement": "fix it"}]', encoding="utf-8")
    values = {
        "base_url": "https://api.example.com/v1",
        "api_key": "sk-not-a-real-key",
        "model": "qwen3-coder",
        "temperature": 0.0,
        "max_tokens": None,
        "environment_class": "local",
        "docker_servers": "",
        "eval_server": "local",
        "dataset": "tasks.json",
        "config": "",
        "output": "training_data.json",
        "workers": 16,
        "max_tasks": None,
        "samples_per_task": 4,
    }
    sources = {"api_key": "from OPENAI_API_KEY", "base_url": "from OPENAI_BASE_URL", "dataset": "last used"}

    async def ready(pilot: Pilot) -> None:
        await pilot.pause()

    return make_app(
        "launch", launch_values=values, launch_sources=sources, last_path=Path("last.json")
    ), ready


def _frozen(build: Callable[[], Built]) -> Callable[[], Built]:
    """The screen's inputs without a blinking cursor (a blink caught mid-way is a flaky snapshot)."""

    def wrapped() -> Built:
        app, ready = build()

        async def run_before(pilot: Pilot) -> None:
            await ready(pilot)
            for box in pilot.app.screen.query(Input):
                box.cursor_blink = False
            await pilot.pause()

        return app, run_before

    return wrapped


SCREENS: dict[str, Callable[[], Built]] = {
    "launch": launch,
    "dashboard": dashboard,
    "browser": browser,
    "example_detail": example_detail,
    "diff": diff_tab,
    "export_dialog": export_dialog,
    "statistics": statistics,
    "speedup_statistics": speedup_statistics,
    "tasks": tasks,
    "compare": lambda: _compare("1"),
    "compare_interdiff": lambda: _compare("3"),
}
SCREENS = {name: _frozen(build) for name, build in SCREENS.items()}
