"""Exports: SFT JSONL (reasoning modes, per-task choice, Hugging Face loading), trajectories,
mini-swe-agent files read back, filtered training data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from test_processing_fixtures import SEED_METADATA, seed_examples

from agentdata_tui.errors import InputError
from agentdata_tui.processing.export import (
    clean_message,
    export_sft,
    export_trajectory,
    mini_traj_filename,
    trajectory_steps,
    write_filtered,
)
from agentdata_tui.reader import open_input
from agentdata_tui.records import Example, with_ids

SAMPLES = Path(__file__).parent / "data" / "mini-swe-agent"


def _examples() -> list[Example]:
    return [Example.model_validate(e) for e in seed_examples()]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- reasoning modes ----------------------------------------------------------------


def test_reasoning_inline_field_strip() -> None:
    sep = {"role": "assistant", "content": "Answer.", "reasoning_content": "Because."}
    inline = {"role": "assistant", "content": "<think>\nHmm.\n</think>\n\nAnswer."}

    assert clean_message(sep, "inline")["content"] == "<think>\nBecause.\n</think>\n\nAnswer."
    assert clean_message(inline, "inline")["content"] == inline["content"]  # already inline: as is
    assert "reasoning_content" not in clean_message(sep, "inline")

    assert clean_message(sep, "field") == {
        "role": "assistant",
        "content": "Answer.",
        "tool_calls": "",
        "tool_call_id": "",
        "reasoning_content": "Because.",
    }
    assert clean_message({"role": "user", "content": "x"}, "field")["reasoning_content"] == ""
    moved = clean_message(inline, "field")
    assert moved["content"] == "Answer." and moved["reasoning_content"] == "Hmm."

    for msg in (sep, inline):
        stripped = clean_message(msg, "strip")
        assert stripped["content"] == "Answer." and "reasoning_content" not in stripped
    # an unclosed <think> is left alone (no guessing where reasoning ends)
    assert clean_message({"role": "assistant", "content": "<think>cut"}, "strip")["content"] == "<think>cut"


def test_clean_message_normalises_tool_calls_and_content() -> None:
    msg = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "function": {"name": "bash", "arguments": {"command": "ls"}}}],
        "extra": {"dropped": True},
    }
    out = clean_message(msg)
    assert set(out) == {"role", "content", "tool_calls", "tool_call_id"}
    assert out["content"] == "" and out["tool_call_id"] == ""
    assert json.loads(out["tool_calls"]) == [
        {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
    ]
    parts = clean_message(
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    )
    assert parts["content"] == "ab"


# -- SFT files ------------------------------------------------------------------------------


@pytest.mark.parametrize("reasoning", ["inline", "field", "strip"])
def test_sft_lines_have_one_schema(tmp_path: Path, reasoning: str) -> None:
    out = tmp_path / "sft.jsonl"
    assert export_sft(_examples(), out, reasoning=reasoning) == 9
    lines = _lines(out)
    # every field of every line has the same key set and the same non-null JSON type
    msg_schemas = {
        tuple((k, type(v).__name__) for k, v in m.items()) for line in lines for m in line["messages"]
    }
    assert len(msg_schemas) == 1, msg_schemas
    meta_schemas = {tuple((k, type(v).__name__) for k, v in line["metadata"].items()) for line in lines}
    assert len(meta_schemas) == 1, meta_schemas
    assert lines[0]["metadata"] == {
        "instance_id": "task_001",
        "sample_index": 0,
        "attempt": 1,
        "reward": 1.0,
        "speedup": 1.5,
        "has_speedup": True,
        "success": True,
        "model_calls": 3,
        "exit_status": "Submitted",
        "assistant_steps": 3,
    }
    assert lines[1]["metadata"]["speedup"] == 0.0 and lines[1]["metadata"]["has_speedup"] is False
    tool_line = lines[1]["messages"]
    assert json.loads(tool_line[2]["tool_calls"])[0]["function"]["arguments"] == '{"command": "cat calc.py"}'
    assert tool_line[3]["tool_call_id"] == "call_1"


def test_sft_loads_with_hugging_face_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    import datasets

    # Text-mode lines first, tool-call lines later: with a tiny chunk size Arrow infers the
    # schema from chunks holding only one kind, the case where null-vs-list mixtures break.
    raw = seed_examples()
    ordered = [e for e in raw if "tool_calls" not in json.dumps(e)] * 20 + [
        e for e in raw if "tool_calls" in json.dumps(e)
    ] * 20
    exs = [Example.model_validate(e) for e in ordered]
    for reasoning in ("inline", "field", "strip"):
        out = tmp_path / f"sft-{reasoning}.jsonl"
        n = export_sft(exs, out, reasoning=reasoning)
        ds = datasets.load_dataset(
            "json", data_files=str(out), split="train", chunksize=2048, cache_dir=str(tmp_path / "cache")
        )
        assert ds.num_rows == n == len(ordered)
        row = ds[n - 1]
        assert json.loads(row["messages"][2]["tool_calls"])[0]["function"]["name"] == "bash"
        assert row["metadata"]["has_speedup"] is False and ds[0]["metadata"]["speedup"] == 1.5
        assert row["metadata"]["instance_id"] == ordered[-1]["instance_id"]
        assert ds[0]["messages"][2]["tool_calls"] == ""
        if reasoning == "field":
            assert "reasoning_content" in ds.features["messages"].feature


def test_max_per_task_is_a_seeded_choice_in_input_order(tmp_path: Path) -> None:
    exs = _examples()

    def run(seed: int) -> list[tuple[str, int]]:
        out = tmp_path / f"sft-{seed}.jsonl"
        assert export_sft(iter(exs), out, max_per_task=2, seed=seed) == 6
        return [(line["metadata"]["instance_id"], line["metadata"]["sample_index"]) for line in _lines(out)]

    a = run(1)
    assert a == run(1)  # reproducible
    assert Counter(i for i, _ in a) == {"task_001": 2, "task_002": 2, "task_003": 2}
    assert a == sorted(a)  # input order kept
    assert len({tuple(run(s)) for s in range(8)}) > 1  # the seed matters
    # The choice for one task does not depend on the others being present.
    only_2 = [e for e in exs if e.instance_id == "task_002"]
    export_sft(only_2, tmp_path / "two.jsonl", max_per_task=2, seed=1)
    assert [
        (x["metadata"]["instance_id"], x["metadata"]["sample_index"]) for x in _lines(tmp_path / "two.jsonl")
    ] == [p for p in a if p[0] == "task_002"]
    assert not list(tmp_path.glob(".*spool"))  # the spool file is gone


def test_export_accepts_a_callable(tmp_path: Path) -> None:
    assert export_sft(_examples, tmp_path / "a.jsonl", max_per_task=1) == 3
    seen = []
    assert export_sft(_examples(), tmp_path / "b.jsonl", progress=seen.append) == 9
    assert seen == list(range(1, 10))


def _failing_stream():
    yield from _examples()[:3]
    raise InputError("truncated JSON", where="in.json")


@pytest.mark.parametrize("max_per_task", [None, 1])
def test_failed_sft_export_leaves_old_output(tmp_path: Path, max_per_task: int | None) -> None:
    out = tmp_path / "sft.jsonl"
    out.write_text("old\n")
    with pytest.raises(InputError):
        export_sft(_failing_stream(), out, max_per_task=max_per_task)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft.jsonl"]


# -- trajectories ---------------------------------------------------------------------------------


def test_trajectory_steps_from_text_and_tool_modes() -> None:
    text_ex, tool_ex, think_ex = _examples()[:3]
    steps = trajectory_steps(text_ex)
    assert [s["action"] for s in steps] == [
        "cat calc.py",
        "sed -i 's/a - b/a + b/' calc.py",
        "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT",
    ]
    assert steps[0]["thought"] == "look at the code."
    assert steps[0]["returncode"] == 0 and "return a - b" in steps[0]["observation"]
    assert steps[2]["observation"] is None
    tool = trajectory_steps(tool_ex)
    assert tool == [
        {
            "thought": "Running a command.",
            "reasoning": "I should read calc.py first.",
            "action": "cat calc.py",
            "observation": "<returncode>1</returncode>\n<output>\nboom\n</output>",
            "returncode": 1,
        }
    ]
    assert trajectory_steps(think_ex)[0]["reasoning"] == "The bug is probably in add."


def test_export_trajectory_json(tmp_path: Path) -> None:
    out = tmp_path / "traj.json"
    n = export_trajectory(_examples()[:2], out, metadata={"model_name": "m"})
    doc = json.loads(out.read_text())
    assert n == 2 and doc["metadata"] == {"model_name": "m"}
    t = doc["trajectories"][0]
    assert set(t) >= {
        "instance_id",
        "sample_index",
        "problem_statement",
        "steps",
        "git_diff",
        "reward",
        "speedup",
        "success",
        "exit_status",
    }
    assert t["reward"] == 1.0 and t["git_diff"].startswith("diff --git")
    assert doc["summary"]["total_examples"] == 2


def test_mini_swe_agent_files_read_back(tmp_path: Path) -> None:
    exs = _examples()
    out = tmp_path / "trajs"
    assert export_trajectory(exs, out, fmt="mini-swe-agent", metadata=SEED_METADATA) == 9
    names = sorted(p.name for p in out.iterdir())
    assert names[:3] == ["task_001.traj.json", "task_001__s1.traj.json", "task_001__s2.traj.json"]
    doc = json.loads((out / "task_001.traj.json").read_text())
    assert doc["trajectory_format"] == "mini-swe-agent-1.1" and doc["instance_id"] == "task_001"
    assert doc["info"]["exit_status"] == "Submitted" and doc["info"]["model_stats"]["api_calls"] == 3
    assert doc["info"]["config"]["model"]["model_name"] == "Qwen/Qwen3-8B"
    assert doc["messages"][-1]["role"] == "exit"
    assert doc["messages"][2]["extra"]["actions"] == [{"command": "cat calc.py"}]

    by_file = {Path(e.metadata["source_file"]).name: e for e in open_input(out)}
    for ex in exs:
        got = by_file[mini_traj_filename(ex)]
        assert got.instance_id == ex.instance_id
        assert got.exit_status == ex.exit_status
        assert got.git_diff == ex.git_diff
        assert got.model_calls == ex.model_calls
        assert got.messages == ex.messages
        assert [s.command for s in got.steps] == [s["action"] for s in trajectory_steps(ex)]
    assert len(by_file) == 9


def test_real_mini_swe_agent_trajectories_round_trip(tmp_path: Path) -> None:
    original = list(open_input(SAMPLES))
    export_trajectory(original, tmp_path / "out", fmt="mini-swe-agent")
    again = list(open_input(tmp_path / "out"))
    assert [e.instance_id for e in again] == [e.instance_id for e in original]
    for a, b in zip(original, again, strict=True):
        assert (a.messages, a.exit_status, a.git_diff, a.model_calls) == (
            b.messages,
            b.exit_status,
            b.git_diff,
            b.model_calls,
        )
        assert [s.command for s in a.steps] == [s.command for s in b.steps]
        assert [s.returncode for s in a.steps] == [s.returncode for s in b.steps]


def test_failed_mini_export_adds_nothing(tmp_path: Path) -> None:
    out = tmp_path / "trajs"
    out.mkdir()
    (out / "keep.traj.json").write_text("{}")
    with pytest.raises(InputError):
        export_trajectory(_failing_stream(), out, fmt="mini-swe-agent")
    assert [p.name for p in out.iterdir()] == ["keep.traj.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trajs"]


def test_write_filtered_keeps_metadata_and_recomputes_summary(tmp_path: Path) -> None:
    out = tmp_path / "f.json"
    n = write_filtered(
        (e for e in _examples() if e.success),
        out,
        {"a": 1},
        summary_extra=lambda k: {"processing": {"kept": k}},
    )
    src = open_input(out)
    assert n == 3 and len(list(src)) == 3
    assert src.metadata == {"a": 1}
    assert src.summary["total_examples"] == 3 and src.summary["successful"] == 3
    assert src.summary["processing"] == {"kept": 3}


def test_core_exports_drop_secret_looking_metadata(tmp_path: Path) -> None:
    meta = {"model_name": "m", "max_tokens": 10, "api_key": "sk-SECRET", "servers": [{"token": "SECRET"}]}
    write_filtered(_examples()[:1], tmp_path / "f.json", meta)
    export_trajectory(_examples()[:1], tmp_path / "t.json", metadata=meta)
    for name in ("f.json", "t.json"):
        text = (tmp_path / name).read_text()
        assert "SECRET" not in text and '"max_tokens": 10' in text and '"servers": [{}]' in text


def test_filtered_output_reads_back_identical(tmp_path: Path) -> None:
    """write_filtered uses the writer's compact (pydantic-core) serialisation: same data."""
    exs = [with_ids(e, "run-1") for e in _examples()]  # the reader would fill them in
    exs[0] = exs[0].model_copy(update={"evaluation_info": {"status": "correct", "note": "ünïcode ✓"}})
    write_filtered(exs, tmp_path / "c.json", {"m": 1})
    back = open_input(tmp_path / "c.json")
    assert back.line_indexable and list(back) == exs
