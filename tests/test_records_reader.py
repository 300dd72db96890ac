"""Records, the streaming reader and the writer: every accepted input, and bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from agentdata_tui.errors import InputError
from agentdata_tui.reader import ReaderWarning, open_input, read_example_at
from agentdata_tui.records import Example
from agentdata_tui.writer import TrainingDataWriter, write_training_data


def make_example(i: int, **kw) -> Example:
    data = {
        "instance_id": f"task_{i:03d}",
        "problem_statement": f"Fix bug {i}",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": f"Please solve {i}"},
            {"role": "assistant", "content": "THOUGHT: x\n\n```bash\nls\n```"},
        ],
        "git_diff": "diff --git a/x b/x\n",
        "exit_status": "Submitted",
        "reward": (i % 5) / 4,
        "speedup": None,
        "success": i % 2 == 0,
        "model_calls": 3,
        "evaluation_info": {"status": "correct"},
        "error": None,
        "metadata": {},
    }
    data.update(kw)
    return Example.model_validate(data)


def seed_document(n: int) -> dict:
    """The shape of the original README's training-data file."""
    return {
        "metadata": {"model_name": "Qwen/Qwen3-8B", "temperature": 1.0, "max_tokens": 8000, "workers": 4},
        "examples": [
            make_example(i).model_dump(mode="json", exclude={"steps", "sample_index", "attempt"})
            for i in range(n)
        ],
        "summary": {"total_examples": n},
    }


def test_writer_layout_round_trips_and_keeps_unknown_fields(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    examples = [make_example(i, custom_field={"kept": i}) for i in range(5)]
    write_training_data(out, examples, {"model_name": "m", "extra_meta": 1})
    doc = json.loads(out.read_text())  # plain JSON
    assert doc["summary"]["total_examples"] == 5
    assert doc["summary"]["successful"] == 3
    src = open_input(out)
    assert src.kind == "training_data" and src.line_indexable
    back = list(src)
    assert [e.instance_id for e in back] == [e.instance_id for e in examples]
    assert back[2].model_extra == {"custom_field": {"kept": 2}}
    assert src.metadata["extra_meta"] == 1
    raws = list(src.iter_raw())
    assert read_example_at(out, raws[3].offset, raws[3].length).instance_id == "task_003"


def test_empty_training_data(tmp_path: Path) -> None:
    out = tmp_path / "empty.json"
    write_training_data(out, [], {})
    assert list(open_input(out)) == []
    assert json.loads(out.read_text())["summary"]["total_examples"] == 0


def test_seed_format_pretty_printed_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed_document(7), indent=2, ensure_ascii=False))
    src = open_input(path)
    assert not src.line_indexable
    ids = [e.instance_id for e in src]
    assert ids == [f"task_{i:03d}" for i in range(7)]
    assert src.metadata["model_name"] == "Qwen/Qwen3-8B"


def test_metadata_after_examples(tmp_path: Path) -> None:
    doc = seed_document(2)
    path = tmp_path / "late.json"
    path.write_text(json.dumps({"examples": doc["examples"], "metadata": {"model_name": "late"}}))
    src = open_input(path)
    assert len(list(src)) == 2
    assert src.metadata["model_name"] == "late"


def test_truncated_json_is_an_error(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    write_training_data(good, [make_example(i) for i in range(3)])
    for name, text in {
        "fast.json": good.read_text()[:-40],
        "pretty.json": json.dumps(seed_document(3), indent=2)[:-200],
    }.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match="truncated"):
            list(open_input(path))


def test_not_json_and_missing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("hello world")
    with pytest.raises(InputError, match="not JSON"):
        list(open_input(bad))
    with pytest.raises(InputError, match="no such file"):
        open_input(tmp_path / "nope.json")


def test_missing_required_field_names_example(tmp_path: Path) -> None:
    doc = seed_document(3)
    del doc["examples"][1]["instance_id"]
    path = tmp_path / "missing.json"
    path.write_text(json.dumps(doc, indent=1))
    with pytest.raises(InputError, match=r"example 1 lacks required field 'instance_id'"):
        list(open_input(path))


def test_jsonl_torn_last_line_skipped_with_warning(tmp_path: Path) -> None:
    run = tmp_path / "out.run"
    run.mkdir()
    lines = [json.dumps(make_example(i).to_dict()) for i in range(3)]
    (run / "examples.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:50])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [e.instance_id for e in open_input(run)]
    assert got == ["task_000", "task_001", "task_002"]
    assert any(issubclass(w.category, ReaderWarning) and "torn" in str(w.message) for w in caught)
    # X.json of a run still going resolves to its run folder
    assert open_input(tmp_path / "out.json").kind == "run_dir"
    # a bad line in the middle is an error naming the line
    (run / "examples.jsonl").write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    with pytest.raises(InputError, match="line 2"):
        list(open_input(run / "examples.jsonl"))


def test_mini_swe_agent_trajectories(samples_dir: Path) -> None:
    examples = {e.instance_id: e for e in open_input(samples_dir)}
    assert set(examples) == {"sample-text-solved", "sample-tool-solved", "sample-text-limit"}
    solved = examples["sample-text-solved"]
    assert solved.exit_status == "Submitted"
    assert solved.model_calls == 4
    assert "return a + b" in solved.git_diff
    assert all(m["role"] != "exit" for m in solved.messages)
    assert solved.steps[1].command == "sed -i 's/return a - b/return a + b/' calc.py"
    assert solved.steps[0].returncode == 0
    tool = examples["sample-tool-solved"]
    assert tool.messages[2]["tool_calls"][0]["function"]["name"] == "bash"
    assert tool.messages[3]["role"] == "tool" and tool.messages[3]["tool_call_id"]
    limit = examples["sample-text-limit"]
    assert limit.exit_status == "LimitsExceeded" and limit.git_diff == ""


def test_v1_trajectory_bare_list(tmp_path: Path, samples_dir: Path) -> None:
    v2 = json.loads((samples_dir / "sample-text-solved.traj.json").read_text())
    path = tmp_path / "old.traj.json"
    path.write_text(json.dumps(v2["messages"]))
    (ex,) = list(open_input(path))
    assert ex.instance_id == "old"
    assert ex.exit_status == "Submitted"
    assert "return a + b" in ex.git_diff


def test_writer_failure_keeps_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "keep.json"
    out.write_text("precious")
    with pytest.raises(RuntimeError), TrainingDataWriter(out, {}) as w:
        w.write(make_example(1))
        raise RuntimeError("boom")
    assert out.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    import os
    import stat

    out = tmp_path / "perm.json"
    write_training_data(out, [make_example(1)])
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
