"""The TUI's Textual-free parts: the browser's index, the dashboard's state, the launch settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentdata_tui.tui.index import ExampleIndex, RowFilter
from agentdata_tui.tui.launch_settings import (
    build_command,
    child_env,
    initial_values,
    load_last,
    save_last,
    validate_field,
    validate_fields,
)
from agentdata_tui.tui.state import DashboardState
from tui.fixtures import T0, examples, write_file, write_run


def test_index_reads_rows_by_offset_and_loads_on_demand(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.json", n=12)
    index = ExampleIndex(path)
    assert index.by_offset
    batches = list(index.build(batch_rows=5, batch_seconds=60))
    assert [len(b) for b in batches] == [1, 5, 5, 1]  # the first row at once, then by count
    assert index.complete and len(index.rows) == 12
    want = examples(12)
    row = index.rows[7]
    assert row.offset is not None and (row.instance_id, row.reward) == (want[7].instance_id, want[7].reward)
    loaded = index.load(row)
    ids = {k: loaded.metadata[k] for k in ("run_id", "rollout_id")}  # derived: the file has none
    assert loaded.to_dict() == {**want[7].to_dict(), "metadata": {**want[7].metadata, **ids}}
    assert not index._held  # nothing kept but rows


def test_index_of_a_non_line_input_holds_examples(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    path.write_text(json.dumps([ex.to_dict() for ex in examples(3)], indent=2), encoding="utf-8")
    index = ExampleIndex(path).build_all()
    assert not index.by_offset and len(index.rows) == 3
    assert index.load(index.rows[2]).instance_id == examples(3)[2].instance_id


def test_filter_and_sort(tmp_path: Path) -> None:
    index = ExampleIndex(write_file(tmp_path / "d.json", n=12)).build_all()
    all_rewards = [r.reward for r in index.rows]
    good = index.select(RowFilter(min_reward=0.5))
    assert [r.reward for r in good] == [x for x in all_rewards if x >= 0.5]
    assert all(r.success for r in index.select(RowFilter(successful_only=True)))
    by_text = index.select(RowFilter(text="TASK 3"))  # case-insensitive, id or problem statement
    assert by_text and all(r.instance_id == "demo__task-3" for r in by_text)
    assert index.select(RowFilter(text="multiple of 4"))  # problem statement only
    ordered = index.select(RowFilter(), "reward", reverse=True)
    assert [r.reward for r in ordered] == sorted(all_rewards, reverse=True)


def test_dashboard_state_folds_events(tmp_path: Path) -> None:
    run = write_run(tmp_path / "x.run", total=8, finished=5, complete=False)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    state = DashboardState(clock=lambda: T0 + 30)
    state.apply(events[:1])
    assert state.total == 8 and state.metrics().done == 0
    state.apply(events[1:])
    m = state.metrics()
    assert (m.done, m.running, m.succeeded, m.failed, m.errors) == (5, 3, 3, 2, 0)
    assert m.average_reward == pytest.approx((1 + 0 + 1 + 0.5 + 1) / 5)
    assert m.rollouts_per_min == pytest.approx(5 / 30 * 60)
    assert m.eta_s == pytest.approx(3 / (5 / 30))
    assert len(state.recent) == 5 and state.recent[0].instance_id == "demo__task-4"
    w = state.workers["1"]
    assert w.status == "running" and w.step == 1 and w.last_command == "ls -R src | head"
    state.stale = True  # the process is gone: time stops at the last event
    assert state.metrics().eta_s is None and state.metrics().elapsed_s == pytest.approx(events[-1]["t"] - T0)
    state.apply(
        [
            {"v": 1, "t": T0 + 40, "type": "run_finished", "counts": {}},
            {"v": 1, "t": T0, "type": "future_type"},
        ]
    )
    assert state.metrics().finished and state.metrics().elapsed_s == pytest.approx(40)
    assert state.workers["1"].status == "stopped"


def test_dashboard_state_memory_is_bounded() -> None:
    state = DashboardState(keep_finished=10, recent=5)
    evs = []
    for i in range(100):
        evs.append(
            {
                "v": 1,
                "t": T0 + i,
                "type": "rollout_started",
                "rollout_id": f"r{i}",
                "instance_id": f"a{i}",  # 100 distinct pairs (one pair's retries count once)
                "worker": 0,
            }
        )
        evs.append(
            {
                "v": 1,
                "t": T0 + i,
                "type": "rollout_finished",
                "rollout_id": f"r{i}",
                "reward": 1,
                "success": True,
            }
        )
    state.apply(evs)
    assert state.done == 100 and len(state.rollouts) <= 11 and len(state.recent) == 5


def test_launch_settings_validation_and_command(tmp_path: Path) -> None:
    dataset = tmp_path / "tasks.json"
    dataset.write_text("[]", encoding="utf-8")
    settings, errors = validate_fields(
        {
            "dataset": str(dataset),
            "base_url": "http://127.0.0.1:9/v1",
            "workers": "8",
            "temperature": "",
            "api_key": "sk-SECRET",
        }
    )
    assert settings is not None and not errors
    cmd = build_command(settings)
    assert cmd[1:4] == ["-m", "agentdata_tui", "generate-multi"] and "--workers" in cmd and "8" in cmd
    assert not any("sk-SECRET" in part for part in cmd)
    assert child_env("sk-SECRET", {"PATH": "/bin"})["OPENAI_API_KEY"] == "sk-SECRET"
    _, errors = validate_fields(
        {"dataset": str(tmp_path / "missing.json"), "workers": "0", "base_url": "ftp://x"}
    )
    assert set(errors) >= {"dataset", "workers", "base_url"}
    assert "no such file" in errors["dataset"]
    assert validate_field("docker_servers", "host-without-port") is not None
    assert validate_field("docker_servers", "10.0.0.5:2375,10.0.0.6:2375") is None
    assert validate_field("temperature", "3") is not None


def test_last_settings_never_hold_the_key(tmp_path: Path) -> None:
    dataset = tmp_path / "tasks.json"
    dataset.write_text("[]", encoding="utf-8")
    settings, _ = validate_fields(
        {"dataset": str(dataset), "api_key": "sk-SECRET", "model": "m1", "workers": "3"}
    )
    assert settings is not None
    path = save_last(settings, tmp_path / "xdg" / "agentdata-tui" / "last.json")
    assert "sk-SECRET" not in path.read_text() and load_last(path)["workers"] == 3
    values, sources = initial_values(
        {"workers": 7}, {"OPENAI_API_KEY": "sk-ENV", "OPENAI_BASE_URL": "http://h:1/v1"}, load_last(path)
    )
    assert values["api_key"] == "sk-ENV" and sources["api_key"] == "from OPENAI_API_KEY"
    assert (
        values["base_url"] == "http://h:1/v1" and values["model"] == "m1" and sources["model"] == "last used"
    )
    assert values["workers"] == 7 and sources["workers"] == "from a flag"
