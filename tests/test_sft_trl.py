"""SFT exports against their real consumer: the chat templates TRL ships, rendered by
transformers with a tokenizer trained here, ``datasets.load_dataset("json", ...)``, and one
TRL ``SFTTrainer`` step on a tiny random model (slow). Nothing is downloaded.

Four files: text-mode examples, tool-call examples (with the recorded tool schema), real
mini-swe-agent trajectories imported, and a ``merge`` of all three; every line of each is read
back line by line and rendered through Qwen3, Qwen2.5 and Llama-3.1's templates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from test_processing_fixtures import seed_examples
from trainer_deps import chat_template, local_tokenizer, need

from agentdata_tui.agent.loop import BASH_TOOL
from agentdata_tui.processing.export import SftReport, export_sft, trajectory_steps
from agentdata_tui.processing.merge import merge
from agentdata_tui.reader import open_input
from agentdata_tui.records import Example
from agentdata_tui.writer import write_training_data

SAMPLES = Path(__file__).parent / "data" / "mini-swe-agent"
TEMPLATES = ("qwen3", "qwen2_5", "llama3_1")


def _is_tool(ex: dict[str, Any]) -> bool:
    return any(m.get("tool_calls") for m in ex["messages"])


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training-data inputs: text, tool-call, mini-swe-agent, and the merge of all three."""
    folder = tmp_path_factory.mktemp("sources")
    raw = seed_examples()
    text = [Example.model_validate(e) for e in raw if not _is_tool(e)]
    tool = [
        Example.model_validate({**e, "metadata": {**e["metadata"], "tools": [BASH_TOOL]}})
        for e in raw
        if _is_tool(e)
    ]
    write_training_data(folder / "text.json", text, {"model_name": "m"})
    write_training_data(folder / "tool.json", tool, {"model_name": "m"})
    merge([folder / "text.json", folder / "tool.json", SAMPLES], folder / "merged.json")
    return {
        "text": folder / "text.json",
        "tool": folder / "tool.json",
        "mini": SAMPLES,
        "merged": folder / "merged.json",
    }


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return local_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def _export(src: Path, out: Path, **kw: Any) -> tuple[list[Example], list[dict[str, Any]]]:
    examples = list(open_input(src))
    report = SftReport()
    export_sft(examples, out, report=report, **kw)
    assert report.left_out == {} and report.first_line_from is None  # lines match examples 1:1
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(examples)
    return examples, lines


def _expected_fragments(ex: Example) -> list[str]:
    """What must appear in any rendering: each recorded command, tool-call arguments as one
    JSON object (never a JSON string holding JSON)."""
    out = []
    for msg in ex.messages:
        if msg.get("role") != "assistant":
            continue
        for call in msg.get("tool_calls") or []:
            args = call["function"]["arguments"]
            args = json.loads(args) if isinstance(args, str) else args
            out.append(json.dumps(args, ensure_ascii=False))
    commands = [s["action"] for s in trajectory_steps(ex) if s["action"]]
    assert commands, ex.instance_id
    return out + commands


@pytest.mark.parametrize("kind", ["text", "tool", "mini", "merged"])
@pytest.mark.parametrize("reasoning", ["inline", "field", "strip"])
def test_every_line_renders_through_trl_chat_templates(
    sources: dict[str, Path], tokenizer: Any, tmp_path: Path, kind: str, reasoning: str
) -> None:
    examples, lines = _export(sources[kind], tmp_path / "sft.jsonl", reasoning=reasoning)
    if kind in ("tool", "mini", "merged"):
        assert any(m.get("tool_calls") for line in lines for m in line["messages"])
    for name in TEMPLATES:
        template = chat_template(name)
        for ex, line in zip(examples, lines, strict=True):
            tools = json.loads(line["tools"]) if line["tools"] is not None else None
            rendered = tokenizer.apply_chat_template(
                line["messages"], tools=tools, chat_template=template, tokenize=False
            )
            where = f"{name}/{kind}/{reasoning}: {ex.instance_id}"
            for fragment in _expected_fragments(ex):
                assert fragment in rendered, f"{where}: {fragment!r} missing"
            assert '{\\"command\\"' not in rendered, f"{where}: arguments double-encoded"
            if tools:
                assert '"name": "bash"' in rendered  # the offered schema is in the prompt
            ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(ids) == rendered  # byte-level: nothing unknown, nothing lost


def test_text_only_conversations_render_without_tools_on_llama(
    sources: dict[str, Path], tokenizer: Any, tmp_path: Path
) -> None:
    """Defect: with "tool_calls": "" on every message, Llama-3.1's template took each message
    for a tool call. A text line renders as plain turns, and no tool prompt appears."""
    _, lines = _export(sources["text"], tmp_path / "sft.jsonl")
    template = chat_template("llama3_1")
    for line in lines:
        assert line["tools"] is None
        rendered = tokenizer.apply_chat_template(line["messages"], chat_template=template, tokenize=False)
        assert rendered.count("<|start_header_id|>assistant<|end_header_id|>") == sum(
            m["role"] == "assistant" for m in line["messages"]
        )
        assert "Environment: ipython" not in rendered and '"parameters"' not in rendered


def test_assistant_masks_of_the_training_template(
    sources: dict[str, Path], tokenizer: Any, tmp_path: Path
) -> None:
    """The mask TRL trains on (qwen3_training's generation markers) covers each assistant turn
    and the tool call in it, and none of the observations."""
    _, lines = _export(sources["merged"], tmp_path / "sft.jsonl")
    template = chat_template("qwen3_training")
    for line in lines:
        tools = json.loads(line["tools"]) if line["tools"] else None
        out = tokenizer.apply_chat_template(
            line["messages"],
            tools=tools,
            chat_template=template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids, mask = out["input_ids"], out["assistant_masks"]
        trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        untrained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        for m in line["messages"]:
            if m["role"] == "assistant" and m["content"].strip():
                assert m["content"].split("</think>")[-1].strip() in trained
            if m["role"] in ("user", "tool"):
                assert m["content"].strip() in untrained
            for call in m.get("tool_calls", []):
                assert json.dumps(call["function"]["arguments"]) in trained


def test_files_load_unchanged_with_datasets(
    sources: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    for kind in ("text", "tool", "mini", "merged"):
        out = tmp_path / f"{kind}.jsonl"
        _, lines = _export(sources[kind], out)
        ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "c"))
        assert ds.num_rows == len(lines)
        for i, line in enumerate(lines):
            assert ds[i]["messages"] == line["messages"], f"{kind} line {i + 1}"
            assert ds[i]["tools"] == line["tools"] and ds[i]["metadata"] == line["metadata"]


@pytest.mark.slow
def test_one_sft_trainer_step_on_the_exported_files(
    sources: dict[str, Path], tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI's one TRL SFTTrainer step: assistant_only_loss with the qwen3 template (TRL swaps in
    its training variant with generation markers), on the merged file of text, tool-call and
    mini-swe-agent examples and on the tool-call file, each loaded unchanged."""
    need("torch")
    trl = need("trl")
    transformers = need("transformers")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("WANDB_DISABLED", "true")
    import datasets
    import torch

    torch.manual_seed(0)
    tokenizer.chat_template = chat_template("qwen3")
    config = transformers.Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = transformers.Qwen3ForCausalLM(config)
    for kind in ("merged", "tool"):
        out = tmp_path / f"{kind}.jsonl"
        _, lines = _export(sources[kind], out)
        dataset = datasets.load_dataset(
            "json", data_files=str(out), split="train", cache_dir=str(tmp_path / "c")
        )
        args = trl.SFTConfig(
            output_dir=str(tmp_path / f"trainer-{kind}"),
            max_steps=1,
            per_device_train_batch_size=len(lines),
            assistant_only_loss=True,
            max_length=None,
            report_to=[],
            save_strategy="no",
            logging_steps=1,
            use_cpu=True,
            dataloader_num_workers=0,
            dataset_num_proc=None,
        )
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        # every example has assistant tokens to learn from (TRL aborts otherwise), and the
        # prompt and observations are masked out of the loss
        for row in trainer.train_dataset:
            labels = row["labels"]
            assert any(x != -100 for x in labels) and any(x == -100 for x in labels)
        result = trainer.train()
        assert result.global_step == 1 and math.isfinite(result.training_loss) and result.training_loss > 0
