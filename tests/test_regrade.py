"""Regrade: recorded patches evaluated again (local sandboxes, real evaluator, real eval server)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from demo_patches import DEMO, PAGER, PAGER_FIX

from agentdata_tui.dataset import load_dataset
from agentdata_tui.evaluation import BuiltinEvaluator, EvalServerClient
from agentdata_tui.evaluation.server import EvalHTTPServer, EvalService
from agentdata_tui.records import Example
from agentdata_tui.regrade import regrade
from agentdata_tui.sandbox import SandboxContext, make_sandbox
from agentdata_tui.writer import write_training_data


def _example(instance_id: str, patch: str, reward: float, **extra) -> Example:
    return Example(
        instance_id=instance_id,
        problem_statement="p",
        messages=[{"role": "user", "content": "fix"}],
        git_diff=patch,
        exit_status="Submitted",
        reward=reward,
        success=reward > 0,
        evaluation_info={"status": "correct" if reward else "tests_failed"},
        custom_field="kept",
        **extra,
    )


def _local_evaluator(dataset):
    def factory(inst):
        ctx = SandboxContext(run_id="rg", repo_dir=dataset.repo_dir(inst), environment_class="local")
        from agentdata_tui.config import EnvironmentConfig

        return make_sandbox(inst, EnvironmentConfig(), ctx)

    return BuiltinEvaluator(factory)


def test_regrade_keeps_previous_isolates_failures_and_streams_in_order(tmp_path):
    ds_path = tmp_path / "dataset.json"
    instances = json.loads((DEMO / "dataset.json").read_text())
    broken = dict(instances[0], instance_id="broken", repo_path=str(tmp_path / "no-such-repo"))
    for inst in instances:
        inst["repo_path"] = str(DEMO / inst["repo_path"])
    ds_path.write_text(json.dumps([*instances, broken]))
    dataset = load_dataset(ds_path)
    examples = [
        _example(PAGER, PAGER_FIX, 1.0),
        _example(PAGER, "", 1.0, sample_index=1),  # recorded as solved, the empty patch is not
        _example("unknown-task", PAGER_FIX, 1.0),
        _example("broken", PAGER_FIX, 0.0, error="evaluation failed: earlier"),
        _example(PAGER, PAGER_FIX, 0.0, sample_index=2, error="evaluation failed: eval server down"),
    ]
    src = tmp_path / "in.json"
    write_training_data(src, examples, {"model_name": "m", "note": "from the run"})
    seen = []
    stats = regrade(
        src,
        tmp_path / "out.json",
        _local_evaluator(dataset),
        dataset,
        workers=2,
        progress=lambda s: seen.append(s.total),
    )
    out = json.loads((tmp_path / "out.json").read_text())
    got = out["examples"]
    assert [(e["instance_id"], e["sample_index"]) for e in got] == [
        (e.instance_id, e.sample_index) for e in examples
    ]
    assert [e["reward"] for e in got] == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert got[0]["evaluation_info"]["status"] == "correct" and got[0]["custom_field"] == "kept"
    assert got[0]["evaluation_info"]["previous"] == {
        "reward": 1.0,
        "success": True,
        "speedup": None,
        "error": None,
        "evaluation_info": {"status": "correct"},
    }
    assert got[1]["evaluation_info"]["status"] == "no_patch"
    assert "not in the dataset" in got[2]["error"] and got[2]["evaluation_info"]["status"] == "error"
    assert "evaluation failed" in got[3]["error"] and got[3]["metadata"]["error_kind"] == "evaluation"
    assert got[4]["error"] is None and got[4]["success"] is True  # an earlier eval failure is resolved
    assert (stats.total, stats.changed, stats.failed, stats.missing_instance) == (5, 2, 2, 1)
    assert (
        out["metadata"]["note"] == "from the run"
        and out["metadata"]["regrade"]["dataset_sha256"] == dataset.sha256
    )
    assert out["summary"]["total_examples"] == 5 and out["summary"]["successful"] == 2
    assert seen == [1, 2, 3, 4, 5]


def test_regrade_through_an_eval_server_with_its_own_dataset(tmp_path):
    dataset = load_dataset(DEMO / "dataset.json")
    service = EvalService(sandbox="local", dataset=dataset, workers=2)
    httpd = EvalHTTPServer(("127.0.0.1", 0), service, token="t0k3n").start_background()
    try:
        run = tmp_path / "x.run"
        run.mkdir()
        with open(run / "examples.jsonl", "w") as fh:  # a run folder as input
            for ex in (_example(PAGER, PAGER_FIX, 0.0), _example(PAGER, "", 0.0, sample_index=1)):
                fh.write(json.dumps(ex.to_dict()) + "\n")
        client = EvalServerClient(httpd.url, "t0k3n", retries=0)
        stats = regrade(
            run, tmp_path / "out.json", client, None, workers=2, settings={"evaluator": httpd.url}
        )
    finally:
        httpd.stop()
    out = json.loads((tmp_path / "out.json").read_text())
    assert [e["reward"] for e in out["examples"]] == [1.0, 0.0]
    assert stats.changed == 1 and service.served == 2
    assert "t0k3n" not in (tmp_path / "out.json").read_text()


@pytest.mark.slow
def test_cli_regrade_reproduces_the_rewards_of_a_real_run(tmp_path):
    """The demo's run regraded with the same evaluator: the same outcome for every unchanged patch."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentdata_tui",
            "demo",
            "--headless",
            "--output",
            str(tmp_path / "demo.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentdata_tui",
            "regrade",
            "--input",
            str(tmp_path / "demo.json"),
            "--output",
            str(tmp_path / "re.json"),
            "--dataset",
            str(DEMO / "dataset.json"),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "regraded 5 examples" in r.stdout and "0 failed" in r.stdout
    before = json.loads((tmp_path / "demo.json").read_text())["examples"]
    after = json.loads((tmp_path / "re.json").read_text())["examples"]
    assert [e["instance_id"] for e in before] == [e["instance_id"] for e in after]
    for b, a in zip(before, after, strict=True):
        assert a["git_diff"] == b["git_diff"]
        assert a["success"] == b["success"], a["instance_id"]
        assert a["evaluation_info"]["status"] == b["evaluation_info"]["status"]
        if b["speedup"] is None:  # pass/fail tasks: exactly the same reward
            assert a["reward"] == b["reward"]
        else:  # a benchmark is timed again: same verdict, a speedup of the same order
            assert 0.5 < a["speedup"] / b["speedup"] < 2.0
        assert a["evaluation_info"]["previous"]["reward"] == b["reward"]


def test_cli_regrade_needs_a_dataset_for_local_evaluation(tmp_path):
    """Data whose metadata names no dataset: local evaluation has nothing to grade against."""
    write_training_data(tmp_path / "x.json", [_example(PAGER, PAGER_FIX, 1.0)], {"model_name": "m"})
    r = subprocess.run(
        [sys.executable, "-m", "agentdata_tui", "regrade", "--input", "x.json", "--output", "y.json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (
        r.returncode == 2
        and "names no dataset_file: pass --dataset" in r.stderr
        and "Traceback" not in r.stderr
    )
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "y.json").exists()
