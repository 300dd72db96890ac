"""Bad input (issue 2 §4): one line on stderr naming the file (and line or example), exit 2,
no traceback, and no partial output — an output that existed before stays intact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_processing_fixtures import seed_examples, write_fast_file, write_seed_file

from agentdata_tui.cli import main

OLD = '{"old": "output"}\n'


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert "Traceback" not in err
    return err.strip()


def _outputs(tmp_path: Path) -> dict[str, list[str]]:
    """Every output-writing subcommand, with an output that already exists."""
    out_json = tmp_path / "out.json"
    out_jsonl = tmp_path / "out.jsonl"
    out_traj = tmp_path / "traj.json"
    folder = tmp_path / "trajs"
    folder.mkdir()
    (folder / "old.traj.json").write_text(OLD)
    for p in (out_json, out_jsonl, out_traj):
        p.write_text(OLD)
    return {
        "filter_data": ["filter_data", "--output", str(out_json)],
        "export_sft": ["export_sft", "--output", str(out_jsonl)],
        "export_sft_sampled": ["export_sft", "--output", str(out_jsonl), "--max-per-task", "1"],
        "export_trajectory": ["export_trajectory", "--output", str(out_traj)],
        "export_mini": ["export_trajectory", "--output", str(folder), "--format", "mini-swe-agent"],
        "merge": ["merge", "--output", str(out_json)],
    }


def _assert_outputs_intact(tmp_path: Path, bad: Path) -> None:
    for name in ("out.json", "out.jsonl", "traj.json"):
        assert (tmp_path / name).read_text() == OLD, name
    assert [p.name for p in (tmp_path / "trajs").iterdir()] == ["old.traj.json"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers  # no temp file or folder left behind


def _run_all(capsys, tmp_path: Path, bad: Path, show_index: int = -1) -> list[str]:
    """Run every subcommand on ``bad``; return the error lines."""
    errors = []
    for argv in _outputs(tmp_path).values():
        if argv[0] == "merge":
            argv = [*argv, str(write_seed_file(tmp_path / "good_for_merge.json")), str(bad)]
        else:
            argv = [*argv, "--input", str(bad)]
        errors.append(_one_line_error(main(argv), capsys.readouterr().err))
    errors.append(_one_line_error(main(["analyze", "--input", str(bad)]), capsys.readouterr().err))
    errors.append(
        _one_line_error(
            main(["show_example", "--input", str(bad), "--index", str(show_index)]), capsys.readouterr().err
        )
    )
    (tmp_path / "good_for_merge.json").unlink(missing_ok=True)
    _assert_outputs_intact(tmp_path, bad)
    return errors


def test_missing_file(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "missing.json"
    for err in _run_all(capsys, tmp_path, bad):
        assert err == f"agentdata-tui: error: {bad}: no such file or folder"


def test_not_json(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text("these are not the examples you are looking for\n")
    for err in _run_all(capsys, tmp_path, bad):
        assert err.startswith(f"agentdata-tui: error: {bad}: not JSON")


def test_truncated_seed_layout(capsys, tmp_path: Path) -> None:
    good = write_seed_file(tmp_path / "seed_full.json").read_bytes()
    bad = tmp_path / "seed.json"
    bad.write_bytes(good[: int(len(good) * 0.7)])  # cut inside an example, after several whole ones
    (tmp_path / "seed_full.json").unlink()
    for err in _run_all(capsys, tmp_path, bad):
        assert f"{bad}: truncated JSON" in err and "examples" in err


def test_truncated_fast_layout(capsys, tmp_path: Path) -> None:
    good = write_fast_file(tmp_path / "fast_full.json").read_bytes()
    lines = good.split(b"\n")
    bad = tmp_path / "fast.json"
    bad.write_bytes(b"\n".join(lines[:8]) + b"\n" + lines[8][:50])
    (tmp_path / "fast_full.json").unlink()
    for err in _run_all(capsys, tmp_path, bad):
        assert f"{bad}: truncated JSON: the file ends inside example 6" in err


def test_example_lacking_a_required_field(capsys, tmp_path: Path) -> None:
    examples = seed_examples()
    del examples[4]["messages"]
    bad = write_seed_file(tmp_path / "lacking.json", examples)
    # show_example validates only the example it shows: another index of this file works
    for err in _run_all(capsys, tmp_path, bad, show_index=4):
        assert err == f"agentdata-tui: error: {bad}: example 4 lacks required field 'messages'"
    assert main(["show_example", "--input", str(bad), "--index", "5"]) == 0
    assert "task_002" in capsys.readouterr().out
    fast = tmp_path / "lacking_fast.json"
    lines = write_fast_file(fast).read_text().split("\n")
    row = json.loads(lines[4].rstrip(","))
    del row["instance_id"]
    lines[4] = json.dumps(row) + ","
    fast.write_text("\n".join(lines))
    code = main(["analyze", "--input", str(fast)])
    err = _one_line_error(code, capsys.readouterr().err)
    assert err == f"agentdata-tui: error: {fast}: example 2 (line 5) lacks required field 'instance_id'"


def test_wrong_field_type_names_the_field(capsys, tmp_path: Path) -> None:
    examples = seed_examples()
    examples[2]["reward"] = "high"
    bad = write_seed_file(tmp_path / "typed.json", examples)
    err = _one_line_error(main(["analyze", "--input", str(bad)]), capsys.readouterr().err)
    assert f"{bad}: example 2: field 'reward'" in err


@pytest.mark.parametrize("index", ["9", "-10", "100"])
def test_index_out_of_range(capsys, tmp_path: Path, index: str) -> None:
    path = write_seed_file(tmp_path / "seed.json")
    err = _one_line_error(
        main(["show_example", "--input", str(path), "--index", index]), capsys.readouterr().err
    )
    assert err == (
        f"agentdata-tui: error: {path}: index {index} is out of range: it has 9 examples (valid: 0..8 or -9..-1)"
    )


def test_index_on_empty_file(capsys, tmp_path: Path) -> None:
    path = write_fast_file(tmp_path / "empty.json", [])
    err = _one_line_error(
        main(["show_example", "--input", str(path), "--index", "0"]), capsys.readouterr().err
    )
    assert err.endswith(f"{path}: index 0 is out of range: it has 0 examples")


@pytest.mark.parametrize("value", ["abc", "1.5", "-0.1", "nan"])
def test_bad_min_reward(capsys, tmp_path: Path, value: str) -> None:
    path = write_seed_file(tmp_path / "seed.json")
    for cmd, out in (("filter_data", "f.json"), ("export_sft", "s.jsonl"), ("export_trajectory", "t.json")):
        target = tmp_path / out
        target.write_text(OLD)
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--input", str(path), "--output", str(target), "--min-reward", value])
        err = capsys.readouterr().err
        _one_line_error(exc.value.code, err)
        assert f"--min-reward: must be a number between 0 and 1, got '{value}'" in err
        assert target.read_text() == OLD


def test_bad_regex_and_counts(capsys, tmp_path: Path) -> None:
    path = write_seed_file(tmp_path / "seed.json")
    err = _one_line_error(
        main(
            [
                "filter_data",
                "--input",
                str(path),
                "--output",
                str(tmp_path / "f.json"),
                "--instance",
                "task_(",
            ]
        ),
        capsys.readouterr().err,
    )
    assert "--instance: not a valid regular expression 'task_('" in err
    assert not (tmp_path / "f.json").exists()
    with pytest.raises(SystemExit) as exc:
        main(
            ["export_sft", "--input", str(path), "--output", str(tmp_path / "s.jsonl"), "--max-per-task", "0"]
        )
    _one_line_error(exc.value.code, capsys.readouterr().err)


def test_real_process_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    good = write_fast_file(tmp_path / "full.json").read_bytes()
    bad = tmp_path / "cut.json"
    bad.write_bytes(good[: len(good) // 2])
    out = tmp_path / "out.json"
    out.write_text(OLD)
    proc = subprocess.run(
        [sys.executable, "-m", "agentdata_tui", "filter-data", "--input", str(bad), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"agentdata-tui: error: {bad}: truncated JSON")
    assert out.read_text() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.json", "full.json", "out.json"]
