"""The runner against the loopback model server: workers, failure isolation, events, run store."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from servers.model_server import ModelServer, ScriptedResponder

from agentdata_tui.config import load_config
from agentdata_tui.dataset import Dataset, Instance, load_dataset
from agentdata_tui.errors import UserError
from agentdata_tui.events import EventTail
from agentdata_tui.interfaces import SandboxError
from agentdata_tui.model.client import OpenAIModel
from agentdata_tui.reader import open_input
from agentdata_tui.records import Example
from agentdata_tui.runner import Runner, RunSpec
from agentdata_tui.runner.components import evaluator_for, sandbox_maker

SUBMIT = "THOUGHT: done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"
STEP_FIELDS = {
    "rollout_id",
    "step",
    "command",
    "returncode",
    "prompt_tokens",
    "completion_tokens",
    "model_latency_s",
    "exec_time_s",
    "assistant",
    "observation",
}


def write_dataset(folder: Path, n: int, *, extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """``n`` tasks ``task-000``...: each asks for a file holding ``data-<id>``; the eval checks it."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        iid = f"task-{i:03d}"
        item = {
            "instance_id": iid,
            "problem_statement": f"Write data-{iid} into out.txt. [{iid}]",
            "eval": {"test_command": f"grep -q data-{iid} out.txt", "timeout": 30},
        }
        item.update((extra or {}).get(iid, {}))
        items.append(item)
    path = folder / "dataset.json"
    path.write_text(json.dumps(items, indent=1))
    return path


def scripts_for(n: int, steps: int = 1) -> dict[str, list[str]]:
    """Per task: ``steps - 1`` harmless commands, the file write, then submit."""
    out = {}
    for i in range(n):
        iid = f"task-{i:03d}"
        filler = [f"THOUGHT: look around.\n\n```bash\nls -la && echo step{k}\n```" for k in range(steps - 1)]
        out[f"[{iid}]"] = [
            *filler,
            f"THOUGHT: write it.\n\n```bash\necho data-{iid} > out.txt\n```",
            SUBMIT,
        ]
    return out


def make_runner(
    server: ModelServer,
    dataset: Dataset,
    output: Path,
    *,
    workers: int = 2,
    model_name: str = "test-model",
    make=None,
    **spec_kw: Any,
) -> Runner:
    config = load_config()
    model = OpenAIModel(server.base_url, "sk-runner-test-key", model_name, config.model, pool_size=workers)
    maker = make or sandbox_maker(dataset, config)
    metadata = {
        "model_name": model_name,
        "config_sha256": config.sha256,
        "dataset_sha256": dataset.sha256,
        "dataset_file": str(dataset.path),
    }
    spec = RunSpec(
        dataset=dataset,
        instances=spec_kw.pop("instances", dataset.instances),
        config=config,
        output=output,
        workers=workers,
        metadata=metadata,
        secrets=["sk-runner-test-key"],
        **spec_kw,
    )
    return Runner(spec, model=model, evaluator=evaluator_for("local", maker), make_sandbox=maker)


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    return EventTail(run_dir / "events.jsonl").read()


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_records_everything(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 4))
    out = tmp_path / "out" / "train.json"
    with ModelServer(ScriptedResponder(scripts_for(4, steps=2)), latency=0.05) as server:
        outcome = make_runner(server, ds, out, workers=3, samples_per_task=2).run()
        assert server.max_in_flight >= 2, "workers run rollouts at once"
    assert not outcome.stopped and outcome.exit_code == 0
    assert outcome.written == 8 and outcome.counts["finished"] == 8 and outcome.counts["successful"] == 8

    src = open_input(out)
    examples = list(src)
    assert sorted((e.instance_id, e.sample_index) for e in examples) == [
        (f"task-{i:03d}", s) for i in range(4) for s in range(2)
    ]
    for ex in examples:
        assert ex.reward == 1.0 and ex.success and ex.exit_status == "Submitted" and ex.error is None
        assert ex.attempt == 1 and ex.model_calls == 3 and len(ex.steps) == 3
        assert ex.steps[1].command and ex.steps[1].returncode == 0 and ex.steps[0].prompt_tokens
        assert "out.txt" in ex.git_diff and ex.evaluation_info["status"] == "correct"
        meta = ex.metadata
        assert meta["rollout_id"] and meta["worker"] in (0, 1, 2) and meta["timings"]["total_s"] > 0
    assert src.metadata["model_name"] == "test-model" and src.metadata["run_id"].startswith("run-")
    assert src.metadata["dataset_sha256"] == ds.sha256

    run_dir = out.with_suffix(".run")
    assert len(jsonl(run_dir / "examples.jsonl")) == 8
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["status"] == "finished" and run_json["pid"] == os.getpid() and run_json["total"] == 8

    events = read_events(run_dir)
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"
    assert events[0]["total"] == 8 and events[0]["workers"] == 3 and events[0]["pid"] == os.getpid()
    assert all(e["v"] == 1 and isinstance(e["t"], float) for e in events)
    started = {e["rollout_id"]: e for e in events if e["type"] == "rollout_started"}
    finished = {e["rollout_id"]: e for e in events if e["type"] == "rollout_finished"}
    assert set(started) == set(finished) and len(started) == 8
    assert {"instance_id", "sample_index", "attempt", "worker"} <= set(next(iter(started.values())))
    fin = next(iter(finished.values()))
    assert {"exit_status", "reward", "speedup", "success", "model_calls", "error"} <= set(fin)
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 8 * 3 and all(set(s) >= STEP_FIELDS for s in steps)
    assert events[-1]["counts"]["finished"] == 8 and events[-1]["stopped"] is False


def test_one_failure_never_stops_the_others(tmp_path: Path) -> None:
    extra = {"task-002": {"setup_command": "echo setup-broke; exit 1"}}
    ds = load_dataset(write_dataset(tmp_path, 5, extra=extra))
    config = load_config()
    base = sandbox_maker(ds, config)

    def make(inst: Instance, rollout_id: str):
        if inst.instance_id == "task-003":
            raise RuntimeError("exploded while building the sandbox")
        return base(inst, rollout_id)

    out = tmp_path / "iso.json"
    with ModelServer(ScriptedResponder(scripts_for(5))) as server:
        server.add_faults(("error", 400, "invalid request: bad things"))  # the first request: task-000
        outcome = make_runner(server, ds, out, workers=1, make=make).run()
    by_id = {e.instance_id: e for e in open_input(out)}
    assert len(by_id) == 5 and outcome.exit_code == 0
    assert by_id["task-000"].exit_status == "ModelError" and "bad things" in by_id["task-000"].error
    assert by_id["task-002"].exit_status == "SandboxError" and "setup-broke" in by_id["task-002"].error
    assert by_id["task-003"].exit_status == "Error" and "exploded" in by_id["task-003"].error
    for iid in ("task-000", "task-002", "task-003"):
        assert by_id[iid].reward == 0.0 and by_id[iid].evaluation_info["status"] == "not_evaluated"
    for iid in ("task-001", "task-004"):
        assert by_id[iid].success and by_id[iid].reward == 1.0


def test_retry_errors_keeps_every_attempt(tmp_path: Path, unisolated) -> None:
    marker = tmp_path / "first-attempt-done"
    setup = f"test -e {marker} || {{ touch {marker}; echo flaky; exit 1; }}"
    ds = load_dataset(write_dataset(tmp_path, 2, extra={"task-001": {"setup_command": setup}}))
    out = tmp_path / "retry.json"
    with ModelServer(ScriptedResponder(scripts_for(2))) as server:
        outcome = make_runner(server, ds, out, retry_errors=2).run()
    assert outcome.counts["retried"] == 1
    lines = [d for d in jsonl(out.with_suffix(".run") / "examples.jsonl") if d["instance_id"] == "task-001"]
    assert [d["attempt"] for d in lines] == [1, 2]
    assert lines[0]["exit_status"] == "SandboxError" and lines[1]["success"] is True
    final = {e.instance_id: e for e in open_input(out)}
    assert final["task-001"].attempt == 2 and final["task-001"].success


def test_without_retry_errored_attempt_stays(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 1, extra={"task-000": {"setup_command": "exit 1"}}))
    out = tmp_path / "noretry.json"
    with ModelServer(ScriptedResponder(scripts_for(1))) as server:
        outcome = make_runner(server, ds, out).run()
    assert outcome.exit_code == 1, "a run where every rollout errored says so"
    assert len(jsonl(out.with_suffix(".run") / "examples.jsonl")) == 1


def test_resume_runs_only_what_is_missing_and_checks_identity(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 6))
    out = tmp_path / "res.json"
    with ModelServer(ScriptedResponder(scripts_for(6))) as server:
        make_runner(server, ds, out, instances=ds.instances[:3]).run()
        first = len(server.chat_requests())
        with pytest.raises(UserError, match="--resume"):
            make_runner(server, ds, out).run()
        with pytest.raises(UserError, match="model_name"):
            make_runner(server, ds, out, resume=True, model_name="other-model").run()
        outcome = make_runner(server, ds, out, resume=True).run()
        assert len(server.chat_requests()) == first * 2, "only the 3 missing tasks ran"
    assert outcome.counts["finished"] == 3
    examples = list(open_input(out))
    assert sorted(e.instance_id for e in examples) == [f"task-{i:03d}" for i in range(6)]
    run_json = json.loads((out.with_suffix(".run") / "run.json").read_text())
    assert len(run_json["resumes"]) == 1


def test_force_starts_over_keeping_the_old_folder(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 1))
    out = tmp_path / "f.json"
    with ModelServer(ScriptedResponder(scripts_for(1))) as server:
        make_runner(server, ds, out).run()
        make_runner(server, ds, out, force=True).run()
    kept = list(tmp_path.glob("f.run.old-*"))
    assert len(kept) == 1 and (kept[0] / "examples.jsonl").exists()
    assert len(jsonl(out.with_suffix(".run") / "examples.jsonl")) == 1


class _FirstFinish:
    """A listener that signals the first finished rollout (no sleeping in tests)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def run_started(self, total: int, pending: int, done_before: int) -> None: ...

    def rollout_finished(self, example: Example, elapsed_s: float) -> None:
        self.event.set()

    def run_finished(self, counts: dict[str, Any], elapsed_s: float, stopped: bool) -> None: ...


def test_graceful_stop_writes_output_and_resume_completes(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 8))
    out = tmp_path / "stop.json"
    scripts = scripts_for(8, steps=4)
    scripts["[task-000]"] = [scripts["[task-000]"][-2], SUBMIT]  # one quick rollout
    with ModelServer(ScriptedResponder(scripts), latency=0.1) as server:
        runner = make_runner(server, ds, out, workers=2)
        first = _FirstFinish()
        runner.listeners.append(first)
        result: dict[str, Any] = {}
        t = threading.Thread(target=lambda: result.setdefault("outcome", runner.run()))
        t.start()
        assert first.event.wait(60)
        runner.request_stop()
        t.join(60)
        outcome = result["outcome"]
        assert outcome.stopped and outcome.exit_code == 130
        assert outcome.counts["cancelled"] >= 1
        recorded = list(open_input(out))
        assert 1 <= len(recorded) < 8
        assert json.loads((out.with_suffix(".run") / "run.json").read_text())["status"] == "stopped"
        assert read_events(out.with_suffix(".run"))[-1]["stopped"] is True
        again = make_runner(server, ds, out, workers=2, resume=True).run()
    assert again.counts["finished"] == 8 - len(recorded)
    final = list(open_input(out))
    assert sorted(e.instance_id for e in final) == [f"task-{i:03d}" for i in range(8)]


def test_cancelled_rollout_cleans_its_sandbox(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 1))
    config = load_config()
    base = sandbox_maker(ds, config)
    made: list[Any] = []

    def make(inst: Instance, rollout_id: str):
        sb = base(inst, rollout_id)
        made.append(sb)
        return sb

    out = tmp_path / "c.json"
    scripts = scripts_for(1, steps=50)
    with ModelServer(ScriptedResponder(scripts)) as server:
        runner = make_runner(server, ds, out, make=make)
        stop_at = threading.Event()
        result: dict[str, Any] = {}

        def watch_steps() -> None:
            # Stop once the rollout has really started (its sandbox exists and a step happened).
            tail = EventTail(out.with_suffix(".run") / "events.jsonl")
            while not stop_at.is_set():
                if any(e["type"] == "step" for e in tail.read()):
                    runner.request_stop()
                    return
                stop_at.wait(0.02)

        w = threading.Thread(target=watch_steps)
        w.start()
        result["outcome"] = runner.run()
        stop_at.set()
        w.join(10)
    assert result["outcome"].stopped and result["outcome"].counts["cancelled"] == 1
    assert made and all(sb.root is None for sb in made), "the sandbox folder was removed"
    assert list(open_input(out)) == []


def test_sandbox_error_during_start_is_recorded(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 1))

    class Broken:
        def __init__(self, *a: Any, **k: Any) -> None: ...

        def start(self) -> None:
            raise SandboxError("no space left for the sandbox")

        def close(self) -> None: ...

    out = tmp_path / "b.json"
    with ModelServer(ScriptedResponder(scripts_for(1))) as server:
        make_runner(server, ds, out, make=lambda inst, rid: Broken()).run()
    (ex,) = list(open_input(out))
    assert ex.exit_status == "SandboxError" and "no space" in ex.error
    assert ex.metadata["error_kind"] == "sandbox"


def test_eval_server_down_records_error_and_run_goes_on(tmp_path: Path) -> None:
    import socket

    from agentdata_tui.evaluation.client import EvalServerClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ds = load_dataset(write_dataset(tmp_path, 3))
    out = tmp_path / "evaldown.json"
    with ModelServer(ScriptedResponder(scripts_for(3))) as server:
        runner = make_runner(server, ds, out)
        runner.evaluator = EvalServerClient(f"http://127.0.0.1:{port}", "tok", retries=1, backoff=0.01)
        outcome = runner.run()
    examples = list(open_input(out))
    assert len(examples) == 3 and outcome.counts["finished"] == 3
    for ex in examples:
        assert ex.exit_status == "Submitted" and ex.reward == 0.0 and not ex.success
        assert ex.error.startswith("evaluation failed") and ex.metadata["error_kind"] == "evaluation"
        assert "out.txt" in ex.git_diff, "the rollout itself is kept"


def test_broken_store_stops_the_run_with_an_error(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 6))
    out = tmp_path / "full.json"
    with ModelServer(ScriptedResponder(scripts_for(6))) as server:
        runner = make_runner(server, ds, out, workers=2)
        at_failure: list[int] = []

        def no_space(example: Example) -> None:
            at_failure.append(len(server.chat_requests()))
            raise OSError(28, "No space left on device")

        runner.store.append = no_space  # type: ignore[method-assign]
        outcome = runner.run()
    assert outcome.fatal and "No space left" in outcome.fatal
    assert outcome.exit_code == 1 and outcome.stopped
    # With the evaluation overlapping the next rollouts, other agents may have run before the first
    # write failed; after it, no rollout starts and each in flight makes at most the call it is in.
    assert at_failure, "the store was written to"
    assert len(server.chat_requests()) - at_failure[0] <= 2, "no new rollouts after the failure"


def test_model_faults_end_rollouts_as_recorded_statuses(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 3))
    out = tmp_path / "faults.json"
    with ModelServer(ScriptedResponder(scripts_for(3))) as server:
        runner = make_runner(server, ds, out, workers=1, retry_errors=2)
        runner.model.backoff_base = 0.01  # type: ignore[attr-defined]
        # task-000: a context-length 400 (not retried: a new attempt would hit it again);
        # task-001: 429 then 500, retried inside the client, the rollout succeeds.
        server.add_faults(("context_length",), ("status", 429, {"Retry-After": "0"}), ("status", 500))
        outcome = runner.run()
    by_id = {e.instance_id: e for e in open_input(out)}
    assert by_id["task-000"].exit_status == "ContextLengthExceeded" and by_id["task-000"].attempt == 1
    assert by_id["task-000"].metadata["error_kind"] is None
    assert by_id["task-001"].success and by_id["task-002"].success
    assert outcome.counts["retried"] == 0
