"""The processing subcommands through the real CLI, on a seed-format file (ijson path), a file
written by TrainingDataWriter (fast path), a run folder and real mini-swe-agent trajectories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_processing_fixtures import SEED_METADATA, seed_examples, write_fast_file, write_seed_file

from agentdata_tui.cli import main
from agentdata_tui.reader import open_input

SAMPLES = Path(__file__).parent / "data" / "mini-swe-agent"


@pytest.fixture(params=["seed", "fast", "run_dir"])
def data_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "seed":
        return write_seed_file(tmp_path / "seed.json")
    if request.param == "fast":
        return write_fast_file(tmp_path / "fast.json")
    run = tmp_path / "out.run"
    run.mkdir()
    (run / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in seed_examples()))
    return run


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_json_on_every_input_kind(capsys, data_file: Path) -> None:
    code, out, _ = run_cli(capsys, "analyze", "--input", str(data_file), "--json")
    stats = json.loads(out)
    assert code == 0 and stats["total"] == 9 and stats["successful"] == 3
    assert stats["instances"]["pass_at_k"]["3"] == pytest.approx(2 / 3, abs=1e-6)


def test_analyze_tables(capsys, data_file: Path) -> None:
    code, out, _ = run_cli(capsys, "analyze", "--input", str(data_file))
    assert code == 0
    for needle in (
        "Overview",
        "success rate",
        "Reward distribution",
        "Exit status",
        "pass@k",
        "Per instance",
    ):
        assert needle in out


def test_analyze_mini_swe_agent_folder(capsys) -> None:
    code, out, _ = run_cli(capsys, "analyze", "--input", str(SAMPLES), "--json")
    stats = json.loads(out)
    assert code == 0 and stats["total"] == 3
    assert stats["exit_status"] == {"Submitted": 2, "LimitsExceeded": 1}
    assert stats["model_calls"]["total"] == 10


def test_filter_data_keeps_metadata_and_records_what_was_done(
    capsys, data_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "filtered.json"
    code, _, err = run_cli(
        capsys,
        "filter-data",
        "--input",
        str(data_file),
        "--output",
        str(out),
        "--min-reward",
        "0.2",
        "--exit-status",
        "submitted",
        "--instance",
        "00[12]",
        "--max-steps",
        "3",
    )
    assert code == 0 and "kept 3 of 9 examples" in err
    src = open_input(out)
    kept = [(e.instance_id, e.sample_index) for e in src]
    assert kept == [("task_001", 0), ("task_001", 2), ("task_002", 2)]
    meta = src.metadata
    if data_file.suffix == ".json":
        assert {k: meta[k] for k in SEED_METADATA} == SEED_METADATA
    record = meta["processing"][-1]
    assert record["command"] == "filter_data" and record["input"] == str(data_file)
    assert record["criteria"] == {
        "min_reward": 0.2,
        "max_steps": 3,
        "exit_status": ["submitted"],
        "instance_regex": "00[12]",
    }
    assert src.summary["total_examples"] == 3 and src.summary["successful"] == 3
    assert src.summary["processing"] == {"command": "filter_data", "examples_read": 9, "examples_kept": 3}


def test_filter_data_successful_only_on_trajectories(capsys, tmp_path: Path) -> None:
    out = tmp_path / "f.json"
    code, _, err = run_cli(
        capsys, "filter_data", "--input", str(SAMPLES), "--output", str(out), "--successful-only"
    )
    assert code == 0 and "kept 0 of 3" in err  # trajectories are not evaluated: none successful
    src = open_input(out)
    assert list(src) == [] and src.summary["total_examples"] == 0
    code, _, err = run_cli(
        capsys,
        "filter_data",
        "--input",
        str(SAMPLES),
        "--output",
        str(out),
        "--exit-status",
        "LimitsExceeded",
    )
    assert [e.instance_id for e in open_input(out)] == ["sample-text-limit"]


def test_export_sft_through_cli(capsys, data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    code, _, err = run_cli(
        capsys,
        "export_sft",
        "--input",
        str(data_file),
        "--output",
        str(out),
        "--successful-only",
        "--reasoning",
        "strip",
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert code == 0 and len(lines) == 3 and "wrote 3 of 9" in err
    assert all("<think>" not in m["content"] for line in lines for m in line["messages"])
    code, _, _ = run_cli(
        capsys,
        "export-sft",
        "--input",
        str(data_file),
        "--output",
        str(out),
        "--max-per-task",
        "1",
        "--seed",
        "3",
    )
    ids = [json.loads(x)["metadata"]["instance_id"] for x in out.read_text().splitlines()]
    assert ids == ["task_001", "task_002", "task_003"]


def test_export_sft_from_trajectories(capsys, tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    code, _, _ = run_cli(
        capsys, "export_sft", "--input", str(SAMPLES), "--output", str(out), "--reasoning", "field"
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert code == 0 and [x["metadata"]["instance_id"] for x in lines] == [
        "sample-text-limit",
        "sample-text-solved",
        "sample-tool-solved",
    ]
    tool_msgs = lines[2]["messages"]
    call = tool_msgs[2]["tool_calls"][0]
    assert call["function"] == {"name": "bash", "arguments": {"command": "cat calc.py"}}
    assert tool_msgs[3]["role"] == "tool" and tool_msgs[3]["tool_call_id"] == call["id"]
    # mini-swe-agent records no tool schema: said, and tools is null rather than invented
    assert lines[2]["tools"] is None


def test_export_sft_flags_and_counts(capsys, tmp_path: Path) -> None:
    examples = seed_examples()
    failed = dict(
        examples[0], exit_status="ModelError", messages=examples[0]["messages"][:2], instance_id="bad"
    )
    empty = dict(examples[0], exit_status="SandboxError", messages=[], instance_id="empty")
    data = write_fast_file(tmp_path / "in.json", [*examples, failed, empty])
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are the inference-time prompt.")
    out = tmp_path / "sft.jsonl"
    code, _, err = run_cli(
        capsys,
        "export_sft",
        "--input",
        str(data),
        "--output",
        str(out),
        "--with-patch",
        "--system-prompt",
        str(prompt),
        "--tool-arguments",
        "string",
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert code == 0 and len(lines) == 9 and "wrote 9 of 11" in err
    assert "left out 2 examples (1 ModelError, 1 SandboxError); --include-errors keeps them" in err
    assert "3 tool-call examples have no recorded tool schema" in err
    assert all(line["messages"][0]["content"] == "You are the inference-time prompt." for line in lines)
    assert all("git_diff" in line["metadata"] for line in lines)
    calls = [c for line in lines for m in line["messages"] for c in m.get("tool_calls", [])]
    assert calls and all(isinstance(c["function"]["arguments"], str) for c in calls)
    meta = json.loads((tmp_path / "sft.jsonl.meta.json").read_text())
    assert meta["input"] == str(data) and meta["counts"]["left_out"] == {"ModelError": 1, "SandboxError": 1}
    assert meta["system_prompt_file"] == str(prompt) and meta["tool_arguments"] == "string"
    code, _, err = run_cli(
        capsys,
        "export_sft",
        "--input",
        str(data),
        "--output",
        str(out),
        "--include-errors",
        "--system-prompt",
        "none",
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert code == 0 and len(lines) == 11 and "left out" not in err
    assert all(m["role"] != "system" for line in lines for m in line["messages"])


def test_export_sft_bad_system_prompt_file(capsys, tmp_path: Path) -> None:
    data = write_fast_file(tmp_path / "in.json")
    out = tmp_path / "sft.jsonl"
    missing = tmp_path / "nope.txt"
    code, _, err = run_cli(
        capsys, "export_sft", "--input", str(data), "--output", str(out), "--system-prompt", str(missing)
    )
    assert code == 2 and err.strip().splitlines()[-1].endswith(
        f"{missing}: --system-prompt: no such file (use 'none' to remove the system message)"
    )
    assert "Traceback" not in err and not out.exists()


def test_export_trajectory_both_formats(capsys, data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "traj.json"
    code, _, _ = run_cli(
        capsys, "export_trajectory", "--input", str(data_file), "--output", str(out), "--min-reward", "0.5"
    )
    doc = json.loads(out.read_text())
    assert code == 0 and len(doc["trajectories"]) == 3
    assert doc["trajectories"][0]["steps"][0]["action"] == "cat calc.py"
    assert doc["metadata"]["processing"][-1]["criteria"] == {"min_reward": 0.5}
    folder = tmp_path / "trajs"
    code, _, err = run_cli(
        capsys,
        "export-trajectory",
        "--input",
        str(data_file),
        "--output",
        str(folder),
        "--format",
        "mini-swe-agent",
    )
    assert code == 0 and "wrote 9 trajectory files" in err
    assert len(list(open_input(folder))) == 9


def test_merge_keeps_every_distinct_rollout_and_drops_only_the_same_one(capsys, tmp_path: Path) -> None:
    a = write_seed_file(tmp_path / "a.json")
    b = write_fast_file(tmp_path / "b.json", seed_examples()[6:] + [dict(seed_examples()[0], attempt=2)])
    again = tmp_path / "a_again.json"
    again.write_bytes(a.read_bytes())  # the same file twice: the same rollouts
    out = tmp_path / "merged.json"
    code, _, err = run_cli(capsys, "merge", str(a), str(b), str(SAMPLES), str(again), "--output", str(out))
    assert code == 0
    # b.json holds other rollouts of the same pairs (another file, so another run): all kept.
    assert f"{b}: took 4 of 4 examples" in err
    assert f"{again}: took 0 of 9 examples (9 already taken: the same rollouts)" in err
    assert "wrote 16 examples from 4 inputs" in err
    src = open_input(out)
    ids = [(e.metadata["run_id"], e.metadata["rollout_id"]) for e in src]
    assert len(ids) == len(set(ids)) == 16
    sources = src.metadata["merged_from"]
    assert [s["path"] for s in sources] == [str(a), str(b), str(SAMPLES), str(again)]
    assert sources[0]["metadata"] == SEED_METADATA
    assert src.summary["merge"]["duplicates_dropped"] == 9
    assert src.summary["merge"]["sources"][1] == {
        "path": str(b),
        "examples_read": 4,
        "examples_kept": 4,
        "duplicates": 0,
    }
    assert src.summary["total_examples"] == 16


def test_show_example(capsys, data_file: Path) -> None:
    code, out, _ = run_cli(capsys, "show_example", "--input", str(data_file), "--index", "1")
    assert code == 0
    assert "task_001" in out and "LimitsExceeded" in out and "tool call bash" in out
    assert "I should read calc.py first." in out  # reasoning shown
    code, out, _ = run_cli(capsys, "show-example", "--input", str(data_file), "--index", "-1")
    assert code == 0 and "task_003" in out and "diff" in out
    code, out, _ = run_cli(capsys, "show_example", "--input", str(data_file), "--index", "0")
    assert "+    return a + b" in out and '"status": "correct"' in out and "model s" in out


def test_show_example_deep_negative_index(capsys, tmp_path: Path) -> None:
    many = [dict(e, instance_id=f"t{i:03d}") for i, e in enumerate(seed_examples() * 10)]
    path = write_fast_file(tmp_path / "many.json", many)
    code, out, _ = run_cli(capsys, "show_example", "--input", str(path), "--index", "-90")
    assert code == 0 and "t000" in out
    code, out, _ = run_cli(capsys, "show_example", "--input", str(path), "--index", "-65")
    assert code == 0 and "t025" in out


def test_script_alias(capsys, tmp_path: Path) -> None:
    path = write_seed_file(tmp_path / "s.json")
    code, out, _ = run_cli(capsys, "process-training-data", "analyze", "--input", str(path), "--json")
    assert code == 0 and json.loads(out)["total"] == 9


def test_help_texts(capsys) -> None:
    for cmd in (
        "analyze",
        "filter_data",
        "export_sft",
        "export_trajectory",
        "export_rl",
        "merge",
        "show_example",
    ):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        out = capsys.readouterr().out
        assert exc.value.code == 0 and "example" in out and "agentdata-tui " + cmd in out


def test_torn_run_folder_is_read_with_a_warning(capsys, tmp_path: Path) -> None:
    run = tmp_path / "x.run"
    run.mkdir()
    text = "".join(json.dumps(e) + "\n" for e in seed_examples()[:4])
    (run / "examples.jsonl").write_text(text + '{"instance_id": "cut')
    out = tmp_path / "f.json"
    # the run's final JSON was never written: pointing at it reads its run folder
    code, _, err = run_cli(capsys, "filter_data", "--input", str(tmp_path / "x.json"), "--output", str(out))
    assert code == 0 and "torn last line" in err and "kept 4 of 4" in err


def test_mini_export_refuses_a_file_as_output(capsys, tmp_path: Path) -> None:
    target = tmp_path / "file.json"
    target.write_text("keep")
    code, _, err = run_cli(
        capsys,
        "export_trajectory",
        "--input",
        str(SAMPLES),
        "--output",
        str(target),
        "--format",
        "mini-swe-agent",
    )
    assert code == 2 and "must be a folder" in err and target.read_text() == "keep"


def test_copy_of_samples_folder_works(capsys, tmp_path: Path) -> None:
    # a folder of trajectories nested one level, as mini-swe-agent's batch mode writes them
    nested = tmp_path / "batch" / "sample-text-solved"
    nested.mkdir(parents=True)
    shutil.copy(SAMPLES / "sample-text-solved.traj.json", nested)
    code, out, _ = run_cli(capsys, "show_example", "--input", str(tmp_path / "batch"), "--index", "0")
    assert code == 0 and "sample-text-solved" in out and "Submitted" in out


def test_secret_looking_metadata_is_not_carried_over(capsys, tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    doc = json.loads(write_seed_file(src).read_text())
    doc["metadata"].update(
        {"api_key": "sk-SECRET1", "eval_token": "SECRET2", "extra": {"Authorization": "SECRET3"}}
    )
    src.write_text(json.dumps(doc, indent=2))
    outs = [tmp_path / "f.json", tmp_path / "t.json", tmp_path / "m.json"]
    assert main(["filter_data", "--input", str(src), "--output", str(outs[0])]) == 0
    assert main(["export_trajectory", "--input", str(src), "--output", str(outs[1])]) == 0
    assert main(["merge", str(src), "--output", str(outs[2])]) == 0
    capsys.readouterr()
    for out in outs:
        text = out.read_text()
        assert "SECRET" not in text and '"max_tokens": 8000' in text


def test_export_sft_says_when_it_moves_a_line(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mixed file whose first tool-call conversation lies beyond datasets' first block (10 MB,
    scaled down here) gets that conversation as line 1, and the command says so."""
    from agentdata_tui.processing import export as export_module

    monkeypatch.setattr(export_module, "DATASETS_FIRST_BLOCK", 100)
    raw = seed_examples()
    text = [e for e in raw if not any(m.get("tool_calls") for m in e["messages"])]
    tool = [e for e in raw if any(m.get("tool_calls") for m in e["messages"])]
    data = write_fast_file(tmp_path / "in.json", [*text, *tool])
    out = tmp_path / "sft.jsonl"
    code, _, err = run_cli(capsys, "export_sft", "--input", str(data), "--output", str(out))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert (
        code == 0
        and f"example {len(text) + 1} (the first tool-call conversation) is written as line 1" in err
    )
    assert any("tool_calls" in m for m in lines[0]["messages"])
    assert [x["metadata"]["instance_id"] for x in lines[1:]] == [e["instance_id"] for e in [*text, *tool[1:]]]
    assert (
        json.loads((tmp_path / "sft.jsonl.meta.json").read_text())["counts"]["first_line_from"]
        == len(text) + 1
    )
