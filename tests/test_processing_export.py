"""Exports: SFT JSONL (reasoning modes, per-task choice, Hugging Face loading), trajectories,
mini-swe-agent files read back, filtered training data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from test_processing_fixtures import SEED_METADATA, seed_examples

from agentdata_tui.errors import InputError
from agentdata_tui.processing import export as export_module
from agentdata_tui.processing.export import (
    SFT_FEATURES_CODE,
    SftReport,
    clean_message,
    export_sft,
    export_trajectory,
    mini_traj_filename,
    preview_sft,
    trajectory_steps,
    write_filtered,
)
from agentdata_tui.reader import open_input
from agentdata_tui.records import Example, derived_rollout_id, with_ids

SAMPLES = Path(__file__).parent / "data" / "mini-swe-agent"


def _examples() -> list[Example]:
    return [Example.model_validate(e) for e in seed_examples()]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- messages --------------------------------------------------------------------------


def test_reasoning_inline_field_strip() -> None:
    sep = {"role": "assistant", "content": "Answer.", "reasoning_content": "Because."}
    inline = {"role": "assistant", "content": "<think>\nHmm.\n</think>\n\nAnswer."}

    assert clean_message(sep, "inline") == {
        "role": "assistant",
        "content": "<think>\nBecause.\n</think>\n\nAnswer.",
    }
    assert clean_message(inline, "inline")["content"] == inline["content"]  # already inline: as is
    assert clean_message(sep, "field") == {
        "role": "assistant",
        "content": "Answer.",
        "reasoning_content": "Because.",
    }
    moved = clean_message(inline, "field")
    assert moved == {"role": "assistant", "content": "Answer.", "reasoning_content": "Hmm."}
    for msg in (sep, inline):
        assert clean_message(msg, "strip") == {"role": "assistant", "content": "Answer."}
    # no reasoning: no reasoning_content key at all, in any mode
    for mode in ("inline", "field", "strip"):
        assert clean_message({"role": "assistant", "content": "Answer."}, mode) == {
            "role": "assistant",
            "content": "Answer.",
        }


def test_reasoning_modes_touch_assistant_messages_only() -> None:
    """Defect: field and strip removed a leading <think> block from observations too."""
    for role in ("user", "tool", "system"):
        msg = {"role": role, "content": "<think>\nprinted by the program\n</think>\n\nrest"}
        for mode in ("inline", "field", "strip"):
            out = clean_message(msg, mode)
            assert out["content"] == msg["content"] and "reasoning_content" not in out


def test_unclosed_think_is_reasoning_to_the_end() -> None:
    """Defect: an unclosed <think> (a reply cut at max_tokens) survived ``strip``."""
    cut = {"role": "assistant", "content": "<think>\nI will first look at calc"}
    assert clean_message(cut, "strip") == {"role": "assistant", "content": ""}
    assert clean_message(cut, "field") == {
        "role": "assistant",
        "content": "",
        "reasoning_content": "I will first look at calc",
    }
    assert clean_message(cut, "inline")["content"] == "<think>\nI will first look at calc\n</think>\n\n"


def test_inline_keeps_reasoning_content_when_content_has_think() -> None:
    """Defect: inline dropped reasoning_content when the content already started with <think>."""
    both = {
        "role": "assistant",
        "content": "<think>\nin content\n</think>\n\nAnswer.",
        "reasoning_content": "separate",
    }
    assert clean_message(both, "inline")["content"] == "<think>\nseparate\n\nin content\n</think>\n\nAnswer."
    assert clean_message(both, "field")["reasoning_content"] == "separate\n\nin content"
    same = {"role": "assistant", "content": "<think>\nX\n</think>\n\nA", "reasoning_content": "X"}
    assert clean_message(same, "inline")["content"] == "<think>\nX\n</think>\n\nA"


def test_whitespace_is_the_same_in_every_mode() -> None:
    msg = {"role": "assistant", "content": "  <think>r</think>\n\n\n  Answer.\n"}
    rests = {mode: clean_message(msg, mode)["content"] for mode in ("inline", "field", "strip")}
    assert rests["strip"] == rests["field"] == "Answer.\n"
    assert rests["inline"] == "<think>\nr\n</think>\n\nAnswer.\n"


def test_clean_message_tool_calls_are_objects_without_placeholders() -> None:
    """Defect: tool_calls was a JSON string and every message carried "tool_calls": "" and
    "tool_call_id": "" (Llama-3.1 treats a present key as a call; Qwen iterates the string)."""
    msg = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "function": {"name": "bash", "arguments": '{"command": "ls -la"}'}}],
        "extra": {"dropped": True},
    }
    out = clean_message(msg)
    assert out == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": {"command": "ls -la"}}}
        ],
    }
    as_string = clean_message(msg, tool_arguments="string")
    assert as_string["tool_calls"][0]["function"]["arguments"] == '{"command": "ls -la"}'
    # arguments recorded as an object stay an object (never re-encoded)
    obj = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c", "function": {"name": "bash", "arguments": {"command": "x"}}}],
    }
    assert clean_message(obj)["tool_calls"][0]["function"]["arguments"] == {"command": "x"}
    assert clean_message({"role": "tool", "tool_call_id": "c1", "content": "out"}) == {
        "role": "tool",
        "content": "out",
        "tool_call_id": "c1",
    }
    for plain in ({"role": "user", "content": "x"}, {"role": "system", "content": "s", "tool_calls": None}):
        assert set(clean_message(plain)) == {"role", "content"}
    parts = clean_message(
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    )
    assert parts["content"] == "ab"


# -- SFT files ------------------------------------------------------------------------------

BASH_SCHEMA = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "Run a command.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
        },
    }
]


def _with_tools(exs: list[Example]) -> list[Example]:
    out = []
    for ex in exs:
        if any(m.get("tool_calls") for m in ex.messages):
            ex = ex.model_copy(update={"metadata": {**ex.metadata, "tools": BASH_SCHEMA}})
        out.append(ex)
    return out


@pytest.mark.parametrize("reasoning", ["inline", "field", "strip"])
def test_sft_lines_share_line_level_fields_and_metadata_types(tmp_path: Path, reasoning: str) -> None:
    out = tmp_path / "sft.jsonl"
    exs = _with_tools(_examples())
    assert export_sft(exs, out, reasoning=reasoning) == 9
    lines = _lines(out)
    # every line: messages, metadata, tools; metadata with the same keys and JSON types
    assert {tuple(line) for line in lines} == {("messages", "metadata", "tools")}
    meta_schemas = {tuple((k, type(v).__name__) for k, v in line["metadata"].items()) for line in lines}
    assert len(meta_schemas) == 1, meta_schemas
    first = next(
        line
        for line in lines
        if line["metadata"]["sample_index"] == 0 and line["metadata"]["instance_id"] == "task_001"
    )
    assert first["metadata"] == {
        "instance_id": "task_001",
        # no ids recorded and not read through a reader: the record layer's derived ids
        "run_id": "unknown",
        "rollout_id": derived_rollout_id("unknown", "task_001", 0, 1),
        "sample_index": 0,
        "attempt": 1,
        "model_name": "",
        "reward": 1.0,
        "success": True,
        "resolved": True,
        "speedup": 1.5,
        "has_speedup": True,
        "exit_status": "Submitted",
        "model_calls": 3,
        "assistant_steps": 3,
        "prompt_tokens": 600,
        "completion_tokens": 30,
    }
    assert first["tools"] is None
    tool_line = next(line for line in lines if line["tools"] is not None)
    assert json.loads(tool_line["tools"]) == BASH_SCHEMA
    assert tool_line["metadata"]["speedup"] == 0.0 and tool_line["metadata"]["has_speedup"] is False
    call = tool_line["messages"][2]["tool_calls"][0]
    assert call["function"]["arguments"] == {"command": "cat calc.py"}
    assert tool_line["messages"][3] == {
        "role": "tool",
        "content": "<returncode>1</returncode>\n<output>\nboom\n</output>",
        "tool_call_id": "call_1",
    }


def test_sft_tools_from_the_file_when_the_example_has_none(tmp_path: Path) -> None:
    """Defect: no tools column; the schema the model was offered was in no file."""
    out = tmp_path / "sft.jsonl"
    report = SftReport()
    export_sft(_examples(), out, file_metadata={"tools": BASH_SCHEMA, "model_name": "m/x"}, report=report)
    lines = _lines(out)
    tool_lines = [line for line in lines if any("tool_calls" in m for m in line["messages"])]
    assert tool_lines and all(json.loads(line["tools"]) == BASH_SCHEMA for line in tool_lines)
    assert all(line["tools"] is None for line in lines if line not in tool_lines)
    assert {line["metadata"]["model_name"] for line in lines} == {"m/x"}
    assert report.tools_missing == 0
    report = SftReport()
    export_sft(_examples(), out, report=report)
    assert report.tools_missing == 3  # said, not invented
    # a schema recorded as a JSON string is not encoded twice
    export_sft(_examples()[1:2], out, file_metadata={"tools": json.dumps(BASH_SCHEMA)})
    assert json.loads(_lines(out)[0]["tools"]) == BASH_SCHEMA


def _error_examples() -> list[Example]:
    base = _examples()[0]
    sys_user = base.messages[:2]
    return [
        base.model_copy(
            update={"exit_status": "ModelError", "messages": sys_user, "model_calls": 1, "instance_id": "e1"}
        ),
        base.model_copy(
            update={"exit_status": "SandboxError", "messages": [], "model_calls": 0, "instance_id": "e2"}
        ),
        base.model_copy(update={"exit_status": "Error", "instance_id": "e3"}),
        base.model_copy(update={"exit_status": "Submitted", "messages": sys_user, "instance_id": "e4"}),
        base.model_copy(
            update={"exit_status": "LimitsExceeded", "reward": 0.0, "success": False, "instance_id": "ok1"}
        ),
        base.model_copy(update={"exit_status": "ContextLengthExceeded", "instance_id": "ok2"}),
        base.model_copy(update={"exit_status": "TimeExceeded", "instance_id": "ok3"}),
        base.model_copy(update={"exit_status": "RepeatedFormatError", "instance_id": "ok4"}),
    ]


def test_sft_leaves_out_failures_and_empty_conversations_by_default(tmp_path: Path) -> None:
    """Defect: examples with no assistant turn (a ModelError on the first call) and with
    messages: [] were exported, and TRL's assistant_only_loss then aborts."""
    out = tmp_path / "sft.jsonl"
    report = SftReport()
    assert export_sft(_error_examples(), out, report=report) == 4
    assert [line["metadata"]["instance_id"] for line in _lines(out)] == ["ok1", "ok2", "ok3", "ok4"]
    assert report.left_out == {"ModelError": 1, "SandboxError": 1, "Error": 1, "no assistant turn": 1}
    assert report.offered == 8 and report.written == 4
    assert report.describe_left_out() == (
        "left out 4 examples (1 Error, 1 ModelError, 1 SandboxError, 1 no assistant turn); "
        "--include-errors keeps them"
    )
    preview = preview_sft(_error_examples())
    assert (preview.written, preview.left_out) == (4, report.left_out)
    # what the dialog's toggle does, the core does
    assert preview_sft(_error_examples(), include_errors=True).written == 8
    report = SftReport()
    assert export_sft(_error_examples(), out, include_errors=True, report=report) == 8
    assert report.left_out == {}
    assert [line["metadata"]["model_calls"] for line in _lines(out)][:2] == [1, 0]


def test_sft_metadata_resolved_ids_patch_and_meta_file(tmp_path: Path) -> None:
    """Defect: metadata lacked the patch, a resolved flag, model, run and rollout ids."""
    base = _examples()[0]
    perf = base.model_copy(
        update={
            "success": False,
            "reward": 0.0,
            "speedup": 1.01,
            "evaluation_info": {"status": "correct_no_speedup"},
            "metadata": {"run_id": "run-1", "rollout_id": "r-7", "model_name": "Qwen/Qwen3-8B"},
        }
    )
    out = tmp_path / "sft.jsonl"
    export_sft([perf], out, with_patch=True, meta={"input": "in.json", "criteria": {"min_reward": 0.0}})
    md = _lines(out)[0]["metadata"]
    assert (md["resolved"], md["success"]) == (True, False)
    assert (md["run_id"], md["rollout_id"], md["model_name"]) == ("run-1", "r-7", "Qwen/Qwen3-8B")
    assert md["git_diff"] == base.git_diff and md["git_diff"].startswith("diff --git")
    meta = json.loads((tmp_path / "sft.jsonl.meta.json").read_text())
    assert meta["input"] == "in.json" and meta["criteria"] == {"min_reward": 0.0}
    assert meta["with_patch"] is True and meta["reasoning"] == "inline" and meta["tool_arguments"] == "object"
    assert meta["counts"]["written"] == 1 and meta["counts"]["left_out"] == {}
    assert meta["output"] == "sft.jsonl" and meta["format"] == "agentdata-tui-sft"
    export_sft([perf], out)
    assert "git_diff" not in _lines(out)[0]["metadata"]


def test_sft_system_prompt_replaced_or_removed(tmp_path: Path) -> None:
    ex = _examples()[0]
    out = tmp_path / "sft.jsonl"
    export_sft([ex], out, system_prompt="You are the inference prompt.")
    msgs = _lines(out)[0]["messages"]
    assert msgs[0] == {"role": "system", "content": "You are the inference prompt."}
    assert len(msgs) == len(ex.messages)
    export_sft([ex], out, system_prompt=False)
    msgs = _lines(out)[0]["messages"]
    assert msgs[0]["role"] == "user" and len(msgs) == len(ex.messages) - 1
    no_system = ex.model_copy(update={"messages": ex.messages[1:]})
    export_sft([no_system], out, system_prompt="S")
    assert _lines(out)[0]["messages"][0] == {"role": "system", "content": "S"}
    meta = json.loads((tmp_path / "sft.jsonl.meta.json").read_text())
    assert meta["system_prompt"]["mode"] == "replaced" and len(meta["system_prompt"]["sha256"]) == 64


def _load(path: Path | list[Path], tmp_path: Path, **kw):
    import datasets

    files = [str(p) for p in path] if isinstance(path, list) else str(path)
    return datasets.load_dataset(
        "json", data_files=files, split="train", cache_dir=str(tmp_path / "cache"), **kw
    )


@pytest.fixture
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))


def test_sft_loads_with_hugging_face_datasets(
    tmp_path: Path, hf_offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text-only lines first, tool-call lines beyond datasets' first block: the mixture that
    made Arrow fail. (Scaled down: a 2 KB block instead of 10 MB, on both sides.) The first
    tool-call line is moved to the top, so datasets sees both shapes in its first block; every
    message comes back exactly as written."""
    monkeypatch.setattr(export_module, "DATASETS_FIRST_BLOCK", 2048)
    raw = seed_examples()
    text = [e for e in raw if "tool_calls" not in json.dumps(e)]
    tool = [e for e in raw if "tool_calls" in json.dumps(e)]
    ordered = [Example.model_validate(e) for e in text * 20 + tool * 20]
    ordered = _with_tools(ordered)
    for reasoning in ("inline", "field", "strip"):
        out = tmp_path / f"sft-{reasoning}.jsonl"
        report = SftReport()
        n = export_sft(ordered, out, reasoning=reasoning, report=report)
        assert report.first_line_from == len(text) * 20 + 1
        written = _lines(out)
        ds = _load(out, tmp_path, chunksize=2048)
        assert ds.num_rows == n == len(ordered)
        for i in (0, 1, n - 1):
            assert ds[i]["messages"] == written[i]["messages"]
            assert ds[i]["tools"] == written[i]["tools"]
            assert ds[i]["metadata"] == written[i]["metadata"]
        assert json.loads(ds[0]["tools"]) == BASH_SCHEMA and ds[1]["tools"] is None
    # a field export and an inline export load together (the same line-level fields)
    both = _load([tmp_path / "sft-field.jsonl", tmp_path / "sft-inline.jsonl"], tmp_path)
    assert both.num_rows == 2 * len(ordered)
    # a mixed file whose first block has a tool-call line is left in order
    monkeypatch.setattr(export_module, "DATASETS_FIRST_BLOCK", 10 << 20)
    report = SftReport()
    export_sft(ordered, tmp_path / "m.jsonl", report=report)
    assert report.first_line_from is None
    assert _lines(tmp_path / "m.jsonl")[0]["messages"] == _lines(tmp_path / "sft-inline.jsonl")[1]["messages"]
    assert _load(tmp_path / "m.jsonl", tmp_path).num_rows == len(ordered)
    # text-only files need no reordering
    report = SftReport()
    export_sft(
        [Example.model_validate(e) for e in text], tmp_path / "t.jsonl", reasoning="strip", report=report
    )
    assert report.first_line_from is None
    assert _load(tmp_path / "t.jsonl", tmp_path).num_rows == len(text)


def test_sft_features_load_any_set_of_files(tmp_path: Path, hf_offline: None) -> None:
    """Several files at once (the first text-only): the documented features load them."""
    from datasets import Features, Json, List, Value

    raw = seed_examples()
    text = [Example.model_validate(e) for e in raw if "tool_calls" not in json.dumps(e)]
    tool = _with_tools([Example.model_validate(e) for e in raw if "tool_calls" in json.dumps(e)])
    export_sft(text, tmp_path / "a.jsonl")
    export_sft(tool, tmp_path / "b.jsonl")
    features = Features({"messages": List(Json()), "metadata": Json(), "tools": Value("string")})
    ns: dict = {}
    exec(SFT_FEATURES_CODE, ns)  # the code README and .meta.json give is this code
    assert ns["features"] == features
    ds = _load([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path, features=features)
    assert ds.num_rows == len(text) + len(tool)
    assert ds[len(text)]["messages"] == _lines(tmp_path / "b.jsonl")[0]["messages"]


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
