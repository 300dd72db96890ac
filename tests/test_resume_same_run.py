"""Issue 8 item 6: a resume is the same run — the recorded task selection, a retry budget per
invocation, and an attempt whose only failure was its evaluation re-graded from its patch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from servers.model_server import ModelServer, ScriptedResponder
from test_runner import jsonl, make_runner, scripts_for, write_dataset

from agentdata_tui.dataset import load_dataset
from agentdata_tui.reader import open_input

REPO = Path(__file__).resolve().parents[1]


def _run(dataset: Path, server: ModelServer, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    cmd = [sys.executable, "-m", "agentdata_tui", "generate-multi", "--dataset", str(dataset)]
    cmd += ["--base-url", server.base_url, "--model", "test-model", "--output", str(out), "--workers", "2"]
    return subprocess.run([*cmd, *extra], capture_output=True, text=True, env=env, timeout=300)


def test_shuffle_without_seed_then_resume_runs_the_same_tasks(tmp_path: Path) -> None:
    """The issue's repro: `--shuffle --max-tasks 2` without `--seed`, then `--resume`, ran new tasks."""
    ds = write_dataset(tmp_path, 12)
    out = tmp_path / "sh.json"
    with ModelServer(ScriptedResponder(scripts_for(12))) as server:
        res = _run(ds, server, out, "--shuffle", "--max-tasks", "2")
        assert res.returncode == 0, res.stderr
        first = sorted(e.instance_id for e in open_input(out))
        run_json = json.loads((tmp_path / "sh.run" / "run.json").read_text())
        assert isinstance(run_json["selection"]["seed"], int), "the drawn seed is recorded"
        asked = len(server.chat_requests())
        res = _run(ds, server, out, "--resume", "--shuffle", "--max-tasks", "2")  # the same command
        assert res.returncode == 0, res.stderr
        assert len(server.chat_requests()) == asked, "nothing new ran"
        assert sorted(e.instance_id for e in open_input(out)) == first
        res = _run(ds, server, out, "--resume")  # the whole dataset: another selection
        assert res.returncode == 2 and "shuffle=True" in res.stderr, res.stderr
        # another selection is refused, in one line, unless --force
        res = _run(ds, server, out, "--resume", "--max-tasks", "3")
        assert res.returncode == 2 and "task selection" in res.stderr and "--force" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        res = _run(ds, server, out, "--resume", "--force", "--max-tasks", "3")
        assert res.returncode == 0, res.stderr
        assert len(list(open_input(out))) == 3 + 2 - len(set(first) & {f"task-{i:03d}" for i in range(3)})


def test_retry_errors_is_a_budget_per_invocation(tmp_path: Path) -> None:
    """The issue's repro: after an outage, `--resume --retry-errors 1` retried nothing."""
    ds = load_dataset(write_dataset(tmp_path, 2))
    out = tmp_path / "outage.json"
    with ModelServer(ScriptedResponder(scripts_for(2))) as server:
        server.add_faults(*[("error", 400, "invalid request: outage")] * 4)  # every attempt of the run
        first = make_runner(server, ds, out, workers=1, retry_errors=1).run()
        assert first.counts["errors"] == 4 and first.counts["retried"] == 2
        again = make_runner(server, ds, out, workers=1, retry_errors=1, resume=True).run()
    assert again.counts["finished"] == 2 and again.counts["errors"] == 0
    final = list(open_input(out))
    assert [(e.attempt, e.success) for e in final] == [(3, True), (3, True)]
    assert len(jsonl(tmp_path / "outage.run" / "examples.jsonl")) == 6


class FlakyEvaluator:
    """The real evaluator, failing its first ``fail`` calls as an unreachable eval server would."""

    def __init__(self, inner: Any, fail: int) -> None:
        self.inner, self.fail, self.calls = inner, fail, 0

    def evaluate(self, *args: Any, **kwargs: Any):
        self.calls += 1
        if self.calls <= self.fail:
            raise ConnectionError("eval server unreachable")
        return self.inner.evaluate(*args, **kwargs)


def test_an_evaluation_failure_is_regraded_from_its_patch_not_rerun(tmp_path: Path) -> None:
    """The issue's repro: an attempt whose only failure was the evaluation re-ran the whole agent."""
    ds = load_dataset(write_dataset(tmp_path, 2))
    out = tmp_path / "ev.json"
    with ModelServer(ScriptedResponder(scripts_for(2))) as server:
        runner = make_runner(server, ds, out, workers=1)
        runner.evaluator = FlakyEvaluator(runner.evaluator, fail=1)
        runner.run()
        asked = len(server.chat_requests())
        lines = jsonl(tmp_path / "ev.run" / "examples.jsonl")
        failed = [d for d in lines if d["metadata"]["error_kind"] == "evaluation"]
        assert len(failed) == 1
        # in the same invocation too: --retry-errors grades the patch again
        in_session = make_runner(server, ds, tmp_path / "ev2.json", workers=1, retry_errors=1)
        in_session.evaluator = FlakyEvaluator(in_session.evaluator, fail=1)
        in_session.run()
        asked2 = len(server.chat_requests())
        resumed = make_runner(server, ds, out, workers=1, retry_errors=1, resume=True).run()
        assert len(server.chat_requests()) == asked2, "no model call: the agent did not run again"
    assert asked2 - asked == asked, "the in-session regrade asked the model nothing either"
    assert resumed.counts["finished"] == 1
    by_id = {e.instance_id: e for e in open_input(out)}
    again = by_id[failed[0]["instance_id"]]
    assert again.attempt == 2 and again.success and again.error is None
    assert again.metadata["regraded_from"] == failed[0]["metadata"]["rollout_id"]
    assert again.messages == failed[0]["messages"] and again.git_diff == failed[0]["git_diff"]
    assert all(
        e.success and e.attempt == (2 if e.metadata.get("regraded_from") else 1)
        for e in open_input(tmp_path / "ev2.json")
    )


def test_with_several_workers_too_retry_errors_regrades_and_budgets_per_invocation(tmp_path: Path) -> None:
    """workers > 1 grades in the evaluation pool, which queued retries by attempt number and
    without the patch: an evaluation failure ran the agent again, and on resume the budget
    counted from attempt 1 (attempt 3 < 1 + 2: no retry)."""
    ds = load_dataset(write_dataset(tmp_path, 1))
    out = tmp_path / "pool.json"
    with ModelServer(ScriptedResponder(scripts_for(1))) as server:
        first = make_runner(server, ds, out, workers=2, retry_errors=1)
        first.evaluator = FlakyEvaluator(first.evaluator, fail=2)
        assert first.run().counts["retried"] == 1  # attempts 1 and 2 failed their evaluation
        second = make_runner(server, ds, out, workers=2, retry_errors=2, resume=True)
        second.evaluator = FlakyEvaluator(second.evaluator, fail=1)
        outcome = second.run()
        chats = len(server.chat_requests())
    assert chats == 2, "the agent ran once: every later attempt regraded its patch"
    assert outcome.exit_code == 0 and outcome.counts["retried"] == 1  # attempt 3 failed, 4 was graded
    attempts = sorted(jsonl(tmp_path / "pool.run" / "examples.jsonl"), key=lambda d: d["attempt"])
    assert [(d["attempt"], d["success"]) for d in attempts] == [(1, False), (2, False), (3, False), (4, True)]
    assert attempts[1]["metadata"]["regraded_from"] == attempts[0]["metadata"]["rollout_id"]
    assert all(d["metadata"]["regraded_from"] for d in attempts[1:])
    assert all(d["git_diff"] == attempts[0]["git_diff"] for d in attempts)
