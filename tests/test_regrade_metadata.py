"""regrade without --dataset: the data's metadata names its dataset (issue 9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_runner import make_runner, scripts_for, write_dataset

from agentdata_tui.dataset import load_dataset
from agentdata_tui.errors import UserError
from agentdata_tui.reader import open_input
from agentdata_tui.records import Example
from agentdata_tui.regrade import datasets_from_metadata
from agentdata_tui.writer import write_training_data


def _cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agentdata_tui", "regrade", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _wrong(iid: str) -> dict:
    return {
        "[" + iid + "]": [
            "THOUGHT: guess.\n\n```bash\necho nope > out.txt\n```",
            scripts_for(1)["[task-000]"][-1],
        ]
    }


def test_regrade_without_dataset_reproduces_a_runs_statuses_and_rewards(tmp_path: Path) -> None:
    """Reproduced on main: without --dataset all 3 regraded examples failed with 400 → reward 0."""
    ds = load_dataset(write_dataset(tmp_path / "data", 3))
    scripts = {**scripts_for(3), **_wrong("task-001")}
    out = tmp_path / "run" / "out.json"
    with ModelServer(ScriptedResponder(scripts)) as server:
        make_runner(server, ds, out, workers=2).run()
    before = sorted(open_input(out), key=lambda e: e.instance_id)
    assert [e.reward for e in before] == [1.0, 0.0, 1.0]
    assert all(e.metadata["dataset_sha256"] == ds.sha256 for e in before)  # each example names its dataset
    regraded = tmp_path / "regraded.json"
    r = _cli("--input", str(out), "--output", str(regraded), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    after = sorted(json.loads(regraded.read_text())["examples"], key=lambda e: e["instance_id"])
    for a, b in zip(after, before, strict=True):
        assert a["evaluation_info"]["status"] == b.evaluation_info["status"]
        assert (a["reward"], a["success"]) == (b.reward, b.success)
        assert a["error"] is None
    meta = json.loads(regraded.read_text())["metadata"]["regrade"]
    assert meta["datasets_from_metadata"] == [str(ds.path)] and meta["dataset_file"] is None


def _data(tmp_path: Path, dataset_file: str, sha: str, examples: list[Example]) -> Path:
    path = tmp_path / "train.json"
    write_training_data(path, examples, {"dataset_file": dataset_file, "dataset_sha256": sha})
    return path


def _ex(iid: str, patch: str, **kw) -> Example:
    return Example(
        instance_id=iid, problem_statement="p", messages=[], git_diff=patch, exit_status="Submitted",
        reward=0.0, success=False, **kw,
    )  # fmt: skip


FIX = "--- /dev/null\n+++ b/out.txt\n@@ -0,0 +1 @@\n+data-task-000\n"


def test_relative_dataset_file_moved_changed_missing(tmp_path: Path) -> None:
    folder = tmp_path / "moved"
    ds = load_dataset(write_dataset(folder, 1))
    data = _data(folder, "dataset.json", ds.sha256, [_ex("task-000", FIX)])
    # Relative to the data file's folder, whatever the current folder is.
    found = datasets_from_metadata(data)
    assert found is not None and found.default is not None and found.default.path == ds.path
    out = tmp_path / "o.json"
    r = _cli("--input", str(data), "--output", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (ex,) = json.loads(out.read_text())["examples"]
    assert ex["reward"] == 1.0 and ex["evaluation_info"]["status"] == "correct"
    # The dataset changed since: refused at once, one line, nothing written.
    (folder / "dataset.json").write_text((folder / "dataset.json").read_text().replace("data-", "DATA-"))
    out.unlink()
    r = _cli("--input", str(data), "--output", str(out), cwd=tmp_path)
    assert r.returncode == 2 and "not the dataset the data was made with" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    # Gone: one line naming where it looked.
    (folder / "dataset.json").unlink()
    with pytest.raises(UserError, match="dataset_file 'dataset.json' is not found"):
        datasets_from_metadata(data)


def test_an_instance_missing_from_the_recorded_dataset_fails_at_once(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 1))
    data = _data(tmp_path, str(ds.path), ds.sha256, [_ex("task-000", FIX), _ex("task-999", FIX)])
    r = _cli("--input", str(data), "--output", str(tmp_path / "o.json"))
    assert r.returncode == 2 and "instance 'task-999' not in the dataset" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_merged_file_regrades_each_example_against_its_own_dataset(tmp_path: Path) -> None:
    a = load_dataset(write_dataset(tmp_path / "a", 1))
    b_path = write_dataset(tmp_path / "b", 1)
    items = json.loads(b_path.read_text())
    items[0]["eval"]["test_command"] = "grep -q other out.txt"
    b_path.write_text(json.dumps(items))
    b = load_dataset(b_path)
    other = "--- /dev/null\n+++ b/out.txt\n@@ -0,0 +1 @@\n+other\n"
    examples = [
        _ex("task-000", FIX, metadata={"dataset_file": str(a.path), "dataset_sha256": a.sha256}),
        _ex(
            "task-000",
            other,
            sample_index=1,
            metadata={"dataset_file": str(b.path), "dataset_sha256": b.sha256},
        ),
    ]
    data = tmp_path / "merged.json"
    write_training_data(data, examples, {"merged_from": ["a", "b"]})
    out = tmp_path / "o.json"
    r = _cli("--input", str(data), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert [e["reward"] for e in json.loads(out.read_text())["examples"]] == [1.0, 1.0]


def test_errored_attempts_keep_their_result_unless_regrade_errors(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 1))
    errored = _ex("task-000", FIX, error="model server failed", evaluation_info={"status": "not_evaluated"})
    errored.exit_status = "ModelError"
    data = _data(tmp_path, str(ds.path), ds.sha256, [errored, _ex("task-000", FIX, sample_index=1)])
    out = tmp_path / "o.json"
    r = _cli("--input", str(data), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "1 kept" in r.stdout
    kept, graded = json.loads(out.read_text())["examples"]
    assert kept["reward"] == 0.0 and kept["evaluation_info"] == {"status": "not_evaluated"}
    assert kept["error"] == "model server failed" and graded["reward"] == 1.0
    r = _cli("--input", str(data), "--output", str(out), "--regrade-errors")
    assert r.returncode == 0, r.stderr
    kept, _ = json.loads(out.read_text())["examples"]
    assert kept["reward"] == 1.0 and kept["evaluation_info"]["status"] == "correct"


def test_regrade_takes_layered_configs_as_generate_does(tmp_path: Path) -> None:
    """-c is repeatable (files and key.path=value overrides, merged in order), as for generate."""
    dataset = write_dataset(tmp_path / "data", 1)
    data = _data(tmp_path, "", "", [_ex("task-000", FIX)])
    base = Path(__file__).resolve().parents[1] / "configs" / "mini.yaml"
    r = _cli(
        "--input", str(data), "--output", str(tmp_path / "o.json"), "--dataset", str(dataset),
        "-c", str(base), "-c", "environment.environment_class=nope_pkg.sandbox:Cls",
    )  # fmt: skip
    assert r.returncode == 2
    assert "cannot import nope_pkg.sandbox:Cls" in r.stderr and "Traceback" not in r.stderr
