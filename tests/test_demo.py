"""The offline demo: the whole pipeline with the replay model, in well under a minute."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentdata_tui.interfaces import ModelError, RolloutContext
from agentdata_tui.reader import open_input


def _demo(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "agentdata_tui", "demo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return res, time.monotonic() - t0


@pytest.mark.slow
def test_demo_runs_offline_and_writes_seed_format(tmp_path: Path) -> None:
    res, elapsed = _demo(tmp_path, "--headless")
    assert res.returncode == 0, res.stderr
    assert elapsed < 60
    out = tmp_path / "demo_training_data.json"
    assert out.exists() and (tmp_path / "demo_training_data.run" / "events.jsonl").exists()
    assert "DEMO" in res.stdout and str(out) in res.stdout and "average reward" in res.stdout
    assert "\x1b[" not in res.stdout
    src = open_input(out)
    meta = src.metadata
    assert meta["demo"] is True and "demo" in meta["model_name"].lower()
    for key in ("model_name", "temperature", "max_tokens", "config_file", "dataset_file", "workers"):
        assert key in meta  # the seed's metadata fields
    by_id = {e.instance_id: e for e in src}
    assert len(by_id) == 5
    for iid in ("demo__pager-last-page", "demo__units-fahrenheit", "demo__confparse-equals-in-value"):
        assert by_id[iid].success and by_id[iid].reward == 1.0 and by_id[iid].exit_status == "Submitted"
        assert by_id[iid].git_diff.startswith("diff --git")
    failing = by_id["demo__stats-empty-input"]
    assert not failing.success and failing.evaluation_info["status"] == "tests_failed"
    perf = by_id["demo__dedupe-perf"]
    info = perf.evaluation_info
    assert info["status"] in ("correct", "correct_no_speedup")
    assert (
        len(info["base_times"]) == 10 and len(info["patched_times"]) == 10
    )  # the demo task asks for 10 repeats
    assert (
        perf.speedup is not None and perf.speedup > 1.0
    )  # measured, so only a range: shared cores are noisy
    assert 0.0 <= perf.reward <= 1.0
    for ex in by_id.values():
        assert ex.steps and ex.steps[0].prompt_tokens and ex.steps[0].completion_tokens
        for m in ex.messages:
            assert set(m) >= {"role", "content"}
    summary = src.summary
    assert summary["total_examples"] == 5 and summary["successful"] >= 3

    analyze = subprocess.run(
        [sys.executable, "-m", "agentdata_tui", "analyze", "--input", str(out)],
        capture_output=True,
        text=True,
    )
    assert analyze.returncode == 0, analyze.stderr

    # Again, without --headless: stdout is not a terminal, so it stays headless; the old demo is replaced.
    again, _ = _demo(tmp_path, "--workers", "5")
    assert again.returncode == 0, again.stderr
    assert len(list(open_input(out))) == 5
    assert len((tmp_path / "demo_training_data.run" / "examples.jsonl").read_text().splitlines()) == 5


def test_demo_never_overwrites_a_real_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "real.run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text('{"metadata": {"model_name": "qwen"}}')
    res, _ = _demo(tmp_path, "--headless", "--output", "real.json")
    assert res.returncode == 2 and "not a demo" in res.stderr
    assert (run_dir / "run.json").exists()


@pytest.mark.slow
def test_demo_keeps_foreign_files_in_its_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "d.run"
    run_dir.mkdir()
    (run_dir / "demo.log").write_text("a launcher's log\n")
    res, _ = _demo(tmp_path, "--headless", "--output", "d.json", "--workers", "5")
    assert res.returncode == 0, res.stderr
    assert (run_dir / "demo.log").read_text() == "a launcher's log\n"
    assert len(list(open_input(tmp_path / "d.json"))) == 5


def test_replay_model_plays_scripts() -> None:
    from agentdata_tui.demo.replay import ReplayModel

    model = ReplayModel({"a": ["one", "two"]})
    ctx = RolloutContext("a")
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u" * 400}]
    r = model.query(msgs, context=ctx)
    assert r.content == "one" and r.prompt_tokens > 100 and r.completion_tokens >= 1
    msgs.append({"role": "assistant", "content": "one"})
    assert model.query(msgs, context=ctx).content == "two"
    msgs.append({"role": "assistant", "content": "two"})
    assert model.query(msgs, context=ctx).content == "two", "past the end the last reply repeats"
    with pytest.raises(ModelError):
        model.query(msgs, context=RolloutContext("unknown"))
    assert "demo" in model.name.lower()
