"""Token capture for RL, end to end over real HTTP: a loopback server that tokenizes like vLLM
(``return_token_ids``: ``prompt_token_ids`` and ``choices[0].token_ids``; ``logprobs``), a real
run through the CLI with ``model.capture_tokens: true``, the ``X.run/tokens.jsonl`` sidecar,
and ``export_rl``'s sequence and loss mask checked token by token against what the server
returned. A server that gives no token ids yields records saying so, and no invented ids.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers.model_server import ModelServer, Reply, ScriptedResponder
from test_atif import _validate as validate_with_harbor
from test_runner import write_dataset

from agentdata_tui.cli import main
from agentdata_tui.config import bundled_config_path, load_config
from agentdata_tui.model.client import OpenAIModel
from agentdata_tui.processing.rl import load_tokens
from agentdata_tui.reader import open_input

IM_START, IM_END = 256, 257  # byte-level ids 0..255, two specials
SUBMIT = "Done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"
THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


def enc(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def dec(ids: list[int]) -> str:
    specials = {IM_START: "<|im_start|>", IM_END: "<|im_end|>"}
    out, buf = [], bytearray()
    for t in ids:
        if t in specials:
            out.append(buf.decode("utf-8", "replace"))
            buf = bytearray()
            out.append(specials[t])
        else:
            buf.append(t)
    out.append(buf.decode("utf-8", "replace"))
    return "".join(out)


def logprob(i: int, token: int) -> float:
    return -round(((token * 7 + i) % 11 + 1) / 10, 3)


class VllmLikeTokens:
    """Renders the request's messages with a ChatML template (``drop_think``: Qwen3's habit of
    dropping earlier reasoning), tokenizes byte by byte, and returns ids as vLLM does. Keeps
    what it returned per call, by instance, for the test to check against."""

    def __init__(self, drop_think: bool = False) -> None:
        self.drop_think = drop_think
        self.calls: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def render(self, messages: list[dict[str, Any]]) -> list[int]:
        ids: list[int] = []
        for m in messages:
            content = m.get("content") or ""
            if self.drop_think:
                content = THINK.sub("", content)
            ids += [IM_START, *enc(f"{m['role']}\n{content}"), IM_END, *enc("\n")]
        return [*ids, IM_START, *enc("assistant\n")]

    def __call__(self, body: dict[str, Any], reply: Reply, payload: dict[str, Any]) -> None:
        prompt = self.render(body["messages"])
        text = reply.content or ""
        if reply.reasoning_content:
            text = f"<think>{reply.reasoning_content}</think>{text}"
        completion = [*enc(text), IM_END]
        lps = [logprob(i, t) for i, t in enumerate(completion)]
        payload["prompt_token_ids"] = prompt
        choice = payload["choices"][0]
        choice["token_ids"] = completion
        if body.get("logprobs"):
            choice["logprobs"] = {
                "content": [
                    {"token": dec([t]), "logprob": lp, "top_logprobs": []}
                    for t, lp in zip(completion, lps, strict=True)
                ]
            }
        task = re.search(r"\[(task-\d+)\]", json.dumps(body["messages"])).group(1)
        with self._lock:
            self.calls.setdefault(task, []).append(
                {"prompt": prompt, "completion": completion, "logprobs": lps}
            )


def _config(tmp_path: Path, capture: bool) -> Path:
    data = yaml.safe_load(bundled_config_path().read_text())
    data.setdefault("model", {})["capture_tokens"] = capture
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _scripts(n: int, think: bool = False) -> dict[str, list[Any]]:
    out = {}
    for i in range(n):
        iid = f"task-{i:03d}"
        first: Any = f"THOUGHT: look.\n\n```bash\nls && echo step-{iid}\n```"
        if think:
            first = {"content": first, "reasoning_content": f"I should look around {iid}."}
        out[f"[{iid}]"] = [first, f"THOUGHT: write it.\n\n```bash\necho data-{iid} > out.txt\n```", SUBMIT]
    return out


def _generate(tmp_path: Path, server: ModelServer, n: int, capture: bool = True) -> Path:
    dataset = write_dataset(tmp_path, n)
    out = tmp_path / "gen.json"
    # in a subprocess: an in-process run leaves the package logger unpropagated for later tests
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentdata_tui",
            "generate-multi",
            "--dataset",
            str(dataset),
            "--output",
            str(out),
            "--base-url",
            server.base_url,
            "--api-key",
            "sk-rl-test",
            "--config",
            str(_config(tmp_path, capture)),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")},
    )
    assert res.returncode == 0, res.stderr
    return out


def test_client_asks_for_token_ids_only_when_configured() -> None:
    config = load_config()
    assert "return_token_ids" not in OpenAIModel(
        "http://127.0.0.1:9/v1", None, "m", config.model
    ).request_body([], None)
    config.model.capture_tokens = True
    body = OpenAIModel("http://127.0.0.1:9/v1", None, "m", config.model).request_body([], None)
    assert body["return_token_ids"] is True and body["logprobs"] is True


def test_tokens_sidecar_and_export_rl_sequence_mask_token_by_token(tmp_path: Path, capsys) -> None:
    tokens = VllmLikeTokens()
    server = ModelServer(ScriptedResponder(_scripts(2)))
    server.tokens = tokens
    with server:
        out = _generate(tmp_path, server, 2)
    run = out.with_suffix(".run")
    # the sidecar: one record per call, keyed by rollout and step; the training data stays small
    sidecar = load_tokens(run)
    examples = {e.instance_id: e for e in open_input(run)}
    assert len(sidecar) == 2
    for iid, ex in examples.items():
        by_step = sidecar[ex.metadata["rollout_id"]]
        assert sorted(by_step) == [0, 1, 2]
        for step, call in enumerate(tokens.calls[iid]):
            assert by_step[step]["prompt_token_ids"] == call["prompt"]
            assert by_step[step]["token_ids"] == call["completion"]
            assert by_step[step]["logprobs"] == call["logprobs"]
    assert "prompt_token_ids" not in (run / "examples.jsonl").read_text()

    rl = tmp_path / "rl.jsonl"
    capsys.readouterr()
    assert main(["export_rl", "--input", str(run), "--output", str(rl)]) == 0
    assert "wrote 2 rollouts (2 as one sequence, 0 per call)" in capsys.readouterr().err
    lines = {line["instance_id"]: line for line in map(json.loads, rl.read_text().splitlines())}
    for iid, line in lines.items():
        ex = examples[iid]
        calls = tokens.calls[iid]
        assert line["format"] == "sequence" and line["n_calls"] == 3
        assert line["rollout_id"] == ex.metadata["rollout_id"] and line["reward"] == ex.reward == 1.0
        assert line["group_id"] == f"{ex.metadata['run_id']}/{iid}"
        assert line["input_ids"] == calls[-1]["prompt"] + calls[-1]["completion"]
        # the mask, token by token: 1 exactly on the tokens each call sampled
        sampled: dict[int, float] = {}
        for call in calls:
            start = len(call["prompt"])
            for i, lp in enumerate(call["logprobs"]):
                sampled[start + i] = lp
        assert len(line["loss_mask"]) == len(line["input_ids"]) == len(line["logprobs"])
        for pos, (mask, lp) in enumerate(zip(line["loss_mask"], line["logprobs"], strict=True)):
            assert mask == (1 if pos in sampled else 0), f"{iid} token {pos}"
            assert lp == sampled.get(pos), f"{iid} token {pos}"
        # what the mask covers is what the model said; the rest is prompt and observations
        said = dec([t for t, m in zip(line["input_ids"], line["loss_mask"], strict=True) if m])
        replies = [m["content"] for m in ex.messages if m["role"] == "assistant"]
        assert said == "".join(r + "<|im_end|>" for r in replies)
        unsaid = dec([t for t, m in zip(line["input_ids"], line["loss_mask"], strict=True) if not m])
        assert "<returncode>0</returncode>" in unsaid and "step-" + iid in unsaid
        assert line["prompt_length"] == len(calls[0]["prompt"])
    # the ATIF export of the run carries the token ids per step
    atif = tmp_path / "atif.jsonl"
    assert main(["export_trajectory", "--input", str(run), "--output", str(atif), "--format", "atif"]) == 0
    doc = json.loads(atif.read_text().splitlines()[0])
    agent_steps = [s for s in doc["steps"] if s["source"] == "agent"]
    calls = tokens.calls[doc["extra"]["instance_id"]]
    assert [s["metrics"]["completion_token_ids"] for s in agent_steps] == [c["completion"] for c in calls]
    assert [s["metrics"]["prompt_token_ids"] for s in agent_steps] == [c["prompt"] for c in calls]
    assert agent_steps[0]["metrics"]["logprobs"] == calls[0]["logprobs"]
    assert validate_with_harbor(atif) == 2  # Harbor's own models take the token ids too


def test_templates_that_drop_reasoning_give_per_call_records(tmp_path: Path, capsys) -> None:
    """Qwen3's template drops earlier <think> blocks: a later prompt does not extend the earlier
    prompt + completion, so no single sequence is what the model saw."""
    tokens = VllmLikeTokens(drop_think=True)
    server = ModelServer(ScriptedResponder(_scripts(1, think=True)))
    server.tokens = tokens
    with server:
        out = _generate(tmp_path, server, 1)
    rl = tmp_path / "rl.jsonl"
    assert main(["export_rl", "--input", str(out.with_suffix(".run")), "--output", str(rl)]) == 0
    assert "(0 as one sequence, 1 per call)" in capsys.readouterr().err
    (line,) = map(json.loads, rl.read_text().splitlines())
    calls = tokens.calls["task-000"]
    assert line["format"] == "per_call" and line["not_prefix_at_step"] == 1
    assert "input_ids" not in line and "loss_mask" not in line
    assert [c["prompt_token_ids"] for c in line["calls"]] == [c["prompt"] for c in calls]
    assert [c["completion_token_ids"] for c in line["calls"]] == [c["completion"] for c in calls]
    assert [c["logprobs"] for c in line["calls"]] == [c["logprobs"] for c in calls]


def test_a_server_without_token_ids_is_recorded_as_absent(tmp_path: Path, capsys) -> None:
    with ModelServer(ScriptedResponder(_scripts(1))) as server:  # no token support
        out = _generate(tmp_path, server, 1)
        assert server.chat_requests()[0].body["return_token_ids"] is True
    run = out.with_suffix(".run")
    records = [json.loads(x) for x in (run / "tokens.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert all(
        r["prompt_token_ids"] is None and r["token_ids"] is None and r["logprobs"] is None for r in records
    )
    rl = tmp_path / "rl.jsonl"
    assert main(["export_rl", "--input", str(run), "--output", str(rl)]) == 0
    err = capsys.readouterr().err
    assert "wrote 0 rollouts" in err and "left out 1 rollouts (token ids not captured)" in err
    assert rl.read_text() == ""


def test_no_capture_no_sidecar(tmp_path: Path, capsys) -> None:
    with ModelServer(ScriptedResponder(_scripts(1))) as server:
        out = _generate(tmp_path, server, 1, capture=False)
        assert "return_token_ids" not in server.chat_requests()[0].body
    assert not (out.with_suffix(".run") / "tokens.jsonl").exists()
    code = main(["export_rl", "--input", str(out), "--output", str(tmp_path / "rl.jsonl")])
    assert code == 2
    assert "no token ids were captured in this run" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["not-a-run.json", "missing"])
def test_export_rl_needs_a_run_folder(tmp_path: Path, capsys, bad: str) -> None:
    path = tmp_path / bad
    if bad.endswith(".json"):
        path.write_text("{}")
    code = main(["export_rl", "--input", str(path), "--output", str(tmp_path / "rl.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_readme_loading_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README's example of loading export_rl's output, verbatim, on both formats."""
    from trainer_deps import need

    from agentdata_tui.processing.rl import export_rl
    from agentdata_tui.records import Example

    need("torch")
    ex = Example(
        instance_id="t",
        messages=[{"role": "user", "content": "x"}],
        steps=[{}, {}],
        metadata={"run_id": "r", "rollout_id": "a"},
    )
    other = ex.model_copy(update={"metadata": {"run_id": "r", "rollout_id": "b"}})
    tokens = {
        "a": {
            0: {"prompt_token_ids": [1, 2], "token_ids": [3], "logprobs": [-0.5]},
            1: {"prompt_token_ids": [1, 2, 3, 4], "token_ids": [5], "logprobs": None},
        },
        "b": {
            0: {"prompt_token_ids": [1, 2], "token_ids": [3], "logprobs": [-0.5]},
            1: {"prompt_token_ids": [9], "token_ids": [5], "logprobs": None},
        },
    }
    stats: dict[str, int] = {}
    assert export_rl([ex, other], tokens, tmp_path / "rl.jsonl", stats=stats) == 2
    assert stats == {"sequence": 1, "per_call": 1}
    line = json.loads((tmp_path / "rl.jsonl").read_text().splitlines()[0])
    assert (line["input_ids"], line["loss_mask"], line["logprobs"]) == (
        [1, 2, 3, 4, 5],
        [0, 0, 1, 0, 1],
        [None, None, -0.5, None, None],
    )
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("Loading it:\n\n```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    exec(block, scope)  # the last line read is the per-call one
    assert scope["pairs"] == [([1, 2], [3]), ([9], [5])] and scope["group"] == "r/t"


def test_tokens_file_survives_a_torn_last_line(tmp_path: Path) -> None:
    """A killed run leaves a torn record; the next session's records start on a new line and
    the reader skips only the torn one (with a warning)."""
    from agentdata_tui.reader import ReaderWarning
    from agentdata_tui.runner.store import RunStore

    store = RunStore(tmp_path / "x.json")
    store.dir.mkdir()
    (store.dir / "tokens.jsonl").write_text(
        '{"rollout_id": "a", "step": 0, "token_ids": [1]}\n{"rollout_id": "b", "st'
    )
    ids = dict(run_id="r", instance_id="t", sample_index=0, attempt=1)
    store.append_tokens(
        [{"prompt_token_ids": [1], "token_ids": [2], "logprobs": None}, None], rollout_id="c", **ids
    )
    store.close()
    with pytest.warns(ReaderWarning, match="skipped 1 torn line"):
        tokens = load_tokens(store.dir)
    assert sorted(tokens) == ["a", "c"] and sorted(tokens["c"]) == [0, 1]
    assert tokens["c"][0]["token_ids"] == [2] and tokens["c"][1]["token_ids"] is None  # absent stays absent
