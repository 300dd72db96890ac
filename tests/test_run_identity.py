"""Issue 8 items 3-5: readers agree with X.json, every example has its ids, merge by rollout,
mini-swe-agent round trips. Real runs against the loopback model server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_runner import jsonl, make_runner, scripts_for, write_dataset

from agentdata_tui.cli import main
from agentdata_tui.dataset import load_dataset
from agentdata_tui.reader import attempt_key, open_input
from agentdata_tui.records import Example, derived_rollout_id, example_ids
from agentdata_tui.runner.store import attempt_line


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def retried_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 tasks, one worker; the very first model request fails (ModelError) and is retried once."""
    tmp = tmp_path_factory.mktemp("retried")
    ds = load_dataset(write_dataset(tmp, 3))
    out = tmp / "x.json"
    with ModelServer(ScriptedResponder(scripts_for(3))) as server:
        server.add_faults(("error", 400, "invalid request: injected"))
        outcome = make_runner(server, ds, out, workers=1, retry_errors=1).run()
    assert outcome.counts["retried"] == 1
    lines = jsonl(out.with_suffix(".run") / "examples.jsonl")
    assert len(lines) == 4 and [d["exit_status"] for d in lines].count("ModelError") == 1
    return out


def _ids(path: Path, **kw) -> list[tuple[str, str]]:
    return sorted(example_ids(e) for e in open_input(path, **kw))


def test_run_folder_reads_like_its_final_json(retried_run: Path, capsys, tmp_path: Path) -> None:
    """The issue's repro: after one retried ModelError, 4 SFT lines from the folder and 3 from X.json."""
    run_dir = retried_run.with_suffix(".run")
    for name, src in (("json", retried_run), ("dir", run_dir), ("jsonl", run_dir / "examples.jsonl")):
        sft = tmp_path / f"{name}.jsonl"
        code, _, _ = run_cli(capsys, "export_sft", "--input", str(src), "--output", str(sft))
        assert code == 0 and len(sft.read_text().splitlines()) == 3, name
        code, out, _ = run_cli(capsys, "analyze", "--input", str(src), "--json")
        assert json.loads(out)["success_rate"] == 1.0, name
        code, out, _ = run_cli(capsys, "show_example", "--input", str(src), "--index", "3")
        assert code == 2, "three examples: index 3 is out of range"
        filtered = tmp_path / f"{name}.filtered.json"
        run_cli(capsys, "filter_data", "--input", str(src), "--output", str(filtered))
        assert len(list(open_input(filtered))) == 3
    assert _ids(run_dir) == _ids(retried_run) == _ids(run_dir / "examples.jsonl")
    # Every attempt on request, each saying which it is.
    every = list(open_input(run_dir, all_attempts=True))
    assert sorted((e.instance_id, e.attempt) for e in every) == [
        ("task-000", 1),
        ("task-000", 2),
        ("task-001", 1),
        ("task-002", 1),
    ]
    sft = tmp_path / "all.jsonl"
    run_cli(capsys, "export_sft", "--input", str(run_dir), "--output", str(sft), "--all-attempts")
    assert len(sft.read_text().splitlines()) == 3  # the ModelError attempt is left out by default (issue 11)
    run_cli(
        capsys,
        "export_sft",
        "--input",
        str(run_dir),
        "--output",
        str(sft),
        "--all-attempts",
        "--include-errors",
    )
    assert len(sft.read_text().splitlines()) == 4
    code, out, _ = run_cli(capsys, "show_example", "--input", str(run_dir), "--index", "3", "--all-attempts")
    assert code == 0


def test_merge_of_a_run_and_its_folder_keeps_each_rollout_once(retried_run: Path, capsys, tmp_path) -> None:
    out = tmp_path / "m.json"
    code, _, err = run_cli(
        capsys, "merge", str(retried_run), str(retried_run.with_suffix(".run")), "--output", str(out)
    )
    assert code == 0
    assert len(list(open_input(out))) == 3
    assert "took 0 of 3 examples (3 already taken" in err


def test_every_example_carries_its_ids(retried_run: Path) -> None:
    for ex in open_input(retried_run.with_suffix(".run"), all_attempts=True):
        assert ex.metadata["run_id"].startswith("run-")
        assert ex.metadata["rollout_id"]
    assert len(set(_ids(retried_run.with_suffix(".run"), all_attempts=True))) == 4


def test_old_records_get_the_same_derived_ids_from_json_and_folder(retried_run: Path, tmp_path: Path) -> None:
    """Records without ids (older versions): derived from the run id, equal from X.json and X.run/."""
    out = tmp_path / "old.json"
    run_dir = tmp_path / "old.run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text((retried_run.with_suffix(".run") / "run.json").read_text())
    doc = json.loads(retried_run.read_text())
    for ex in doc["examples"]:
        del ex["metadata"]["run_id"], ex["metadata"]["rollout_id"]
    out.write_text(json.dumps(doc, indent=2))
    with open(run_dir / "examples.jsonl", "w") as fh:
        for d in jsonl(retried_run.with_suffix(".run") / "examples.jsonl"):
            del d["metadata"]["run_id"], d["metadata"]["rollout_id"]
            fh.write(json.dumps(d) + "\n")
    from_json, from_dir = _ids(out), _ids(run_dir)
    assert from_json == from_dir and len(from_json) == 3
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    assert {r for r, _ in from_json} == {run_id}
    ex = next(iter(open_input(out)))
    assert ex.metadata["rollout_id"] == derived_rollout_id(
        run_id, ex.instance_id, ex.sample_index, ex.attempt
    )
    # Without any run id: the content hash, stable across reads, different for other content.
    del doc["metadata"]["run_id"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(doc))
    doc["examples"][0]["reward"] = 0.5
    b.write_text(json.dumps(doc))
    assert _ids(a) == _ids(a) and not set(_ids(a)) & set(_ids(b))


def test_merge_of_different_runs_of_one_dataset_keeps_every_rollout(tmp_path: Path, capsys) -> None:
    """The issue's repro: three runs of the same dataset kept 27 of 45 and called 18 'duplicates'."""
    ds = load_dataset(write_dataset(tmp_path, 3))
    outs = []
    with ModelServer(ScriptedResponder(scripts_for(3))) as server:
        for n in range(3):
            out = tmp_path / f"r{n}.json"
            make_runner(server, ds, out, workers=3).run()
            outs.append(out)
    merged = tmp_path / "all.json"
    code, _, err = run_cli(capsys, "merge", *map(str, outs), "--output", str(merged))
    assert code == 0
    assert len(list(open_input(merged))) == 9
    for out in outs:
        assert f"{out}: took 3 of 3 examples" in err
    assert "already taken" not in err


def test_regrade_keeps_the_ids_and_reads_the_latest_attempt(
    retried_run: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "regraded.json"
    ds = retried_run.parent / "dataset.json"
    code, _, err = run_cli(
        capsys,
        "regrade",
        "--input",
        str(retried_run.with_suffix(".run")),
        "--output",
        str(out),
        "--dataset",
        str(ds),
    )
    assert code == 0, err
    assert _ids(out) == _ids(retried_run)
    assert all(e.success for e in open_input(out))


def test_mini_swe_agent_export_reads_back_with_our_fields(retried_run: Path, tmp_path: Path, capsys) -> None:
    """The issue's repro: read back, the export lost reward, success, speedup and sample_index."""
    folder = tmp_path / "trajs"
    code, _, _ = run_cli(
        capsys,
        "export_trajectory",
        "--input",
        str(retried_run),
        "--output",
        str(folder),
        "--format",
        "mini-swe-agent",
    )
    assert code == 0
    original = {e.instance_id: e for e in open_input(retried_run)}
    back = list(open_input(folder))
    assert len(back) == 3
    for ex in back:
        want = original[ex.instance_id]
        for key in ("reward", "success", "speedup", "sample_index", "attempt", "evaluation_info", "error"):
            assert getattr(ex, key) == getattr(want, key), key
        assert example_ids(ex) == example_ids(want)
        assert ex.problem_statement == want.problem_statement
    code, out, _ = run_cli(capsys, "analyze", "--input", str(folder), "--json")
    assert json.loads(out)["successful"] == 3
    # mini-swe-agent's own fields are where its inspector looks for them.
    data = json.loads(next(folder.glob("*.traj.json")).read_text())
    assert data["info"]["exit_status"] == "Submitted" and data["messages"][-1]["role"] == "exit"


def test_attempt_key_reads_the_head_of_a_store_line_as_a_full_parse_would() -> None:
    ex = Example(
        instance_id='we"ird\\id ✓',
        messages=[{"role": "user", "content": '"sample_index":9,"attempt":9'}],
        sample_index=2,
        attempt=3,
        metadata={"x": 1, "rollout_id": "r1", "run_id": 'run-"1"'},
    )
    line = json.dumps(attempt_line(ex), ensure_ascii=False, separators=(",", ":")).encode()
    assert line.startswith(b'{"instance_id":')
    assert attempt_key(line) == (('run-"1"', 'we"ird\\id ✓', 2), 3)
    pretty = json.dumps(ex.to_dict()).encode()  # another layout: parsed
    assert attempt_key(pretty) == (('run-"1"', 'we"ird\\id ✓', 2), 3)
    assert attempt_key(b'{"no": "example"}') is None
