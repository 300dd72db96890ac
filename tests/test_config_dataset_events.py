"""Config loading (mini-swe-agent 1.x/2.x layouts), datasets, and the event log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentdata_tui.config import DEFAULT_ACTION_REGEX, bundled_config_path, load_config
from agentdata_tui.dataset import load_dataset
from agentdata_tui.errors import InputError
from agentdata_tui.events import EventTail, EventWriter, run_dir_for

REPO = Path(__file__).resolve().parents[1]


def test_bundled_config_is_mirrored_and_has_seed_keys() -> None:
    assert bundled_config_path().read_text() == (REPO / "configs" / "mini.yaml").read_text()
    cfg = load_config()
    assert "{{task}}" in cfg.agent.instance_template
    assert cfg.agent.step_limit == 0 and cfg.agent.cost_limit == 3.0
    assert cfg.environment.timeout == 60
    assert cfg.model.model_kwargs == {"temperature": 0.0, "drop_params": True}
    assert cfg.agent.action_format == "text" and cfg.action_regex == DEFAULT_ACTION_REGEX


def test_all_shipped_configs_load() -> None:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("agent:\n  system_template: hi\n  stepp_limit: 3\n")
    with pytest.raises(InputError, match=r"unknown key 'agent.stepp_limit'"):
        load_config(p)


def test_yaml_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("agent:\n  system_template: [unclosed\n")
    with pytest.raises(InputError, match=r"c.yaml: line \d+"):
        load_config(p)


def test_mini_swe_agent_2x_layout(tmp_path: Path) -> None:
    p = tmp_path / "v2.yaml"
    p.write_text(
        "agent:\n  system_template: s\n  instance_template: 'Do {{task}}'\n  step_limit: 5\n  agent_class: default\n"
        "environment:\n  environment_class: local\n  env: {PAGER: cat, N: 1}\n"
        "model:\n  model_name: foo\n  observation_template: 'OBS {{output.output}}'\n"
        "  format_error_template: 'FMT'\n  action_regex: '```mswea_bash_command\\s*\\n(.*?)\\n```'\n"
        "  model_kwargs: {temperature: 0.5, drop_params: true}\n  multimodal_regex: ''\n"
    )
    cfg = load_config(p)
    assert cfg.observation_template == "OBS {{output.output}}"
    assert cfg.format_error_template == "FMT"
    assert "mswea_bash_command" in cfg.action_regex
    assert cfg.environment.env == {"PAGER": "cat", "N": "1"}
    assert "agent.agent_class" in cfg.ignored_keys and "model.multimodal_regex" in cfg.ignored_keys


def test_dataset_formats_and_errors(tmp_path: Path) -> None:
    inst = [
        {"instance_id": "a", "problem_statement": "x", "foo": 1},
        {"instance_id": "b", "problem_statement": "y"},
    ]
    (tmp_path / "arr.json").write_text(json.dumps(inst))
    (tmp_path / "obj.json").write_text(json.dumps({"instances": inst}))
    (tmp_path / "lines.jsonl").write_text("\n".join(json.dumps(i) for i in inst) + "\n")
    for name in ("arr.json", "obj.json", "lines.jsonl"):
        ds = load_dataset(tmp_path / name)
        assert [i.instance_id for i in ds.instances] == ["a", "b"]
        assert ds.instances[0].model_extra == {"foo": 1}
    (tmp_path / "dup.json").write_text(json.dumps(inst + inst[:1]))
    with pytest.raises(InputError, match="duplicate instance_id 'a'"):
        load_dataset(tmp_path / "dup.json")
    (tmp_path / "bad.json").write_text(json.dumps([{"instance_id": "a"}]))
    with pytest.raises(InputError, match="instance 0 \\(a\\) lacks required field 'problem_statement'"):
        load_dataset(tmp_path / "bad.json")


def test_event_tail_reads_in_batches_and_waits_for_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    tail = EventTail(path)
    assert tail.read() == []
    w.emit("run_started", run_id="r", total=2, workers=1, settings={})
    w.emit("rollout_started", rollout_id="x", instance_id="a", sample_index=0, attempt=1, worker=0)
    got = tail.read()
    assert [e["type"] for e in got] == ["run_started", "rollout_started"]
    assert got[0]["v"] == 1 and isinstance(got[0]["t"], float)
    with open(path, "a") as fh:  # a writer caught mid-line
        fh.write('{"v": 1, "t": 1, "type": "st')
    assert tail.read() == []
    with open(path, "a") as fh:
        fh.write('ep", "rollout_id": "x", "step": 1}\n')
    assert [e["type"] for e in tail.read()] == ["step"]
    w.close()


def test_run_dir_for() -> None:
    assert run_dir_for("/x/out.json") == Path("/x/out.run")
    assert run_dir_for("/x/out.run/examples.jsonl") == Path("/x/out.run")
