"""The generation CLI: generate_single / generate-multi / check, as users call them."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_evaluator_client import FakeEvalServer
from test_runner import scripts_for, write_dataset

from agentdata_tui.cli import main
from agentdata_tui.reader import open_input

KEY = "sk-CLI-secret-77e1b2"
TOKEN = "evaltok-CLI-secret-31aa"


def _run(
    *argv: str, cwd: Path | None = None, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "agentdata_tui", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def _files_contain(root: Path, needle: str) -> list[Path]:
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    return [f for f in files if needle.encode() in f.read_bytes()]


def test_generate_single_from_instance_json(tmp_path: Path) -> None:
    ds = json.loads(write_dataset(tmp_path, 1).read_text())
    inst_file = tmp_path / "instance.json"
    inst_file.write_text(json.dumps(ds[0]))
    out = tmp_path / "one.json"
    log = tmp_path / "gen.log"
    with ModelServer(ScriptedResponder(scripts_for(1))) as server:
        res = _run(
            "generate_single",
            "--instance",
            str(inst_file),
            "--base-url",
            server.base_url,
            "--api-key",
            KEY,
            "--output",
            str(out),
            "--temperature",
            "0.7",
            "--max-tokens",
            "512",
            "--log-file",
            str(log),
        )
        body = server.chat_requests()[0].body
    assert res.returncode == 0, res.stderr
    assert body["temperature"] == 0.7 and body["max_tokens"] == 512 and body["model"] == "test-model"
    assert "run on THIS machine" in res.stderr, "the local sandbox warning"
    assert "\x1b[" not in res.stdout
    src = open_input(out)
    (ex,) = list(src)
    assert ex.success and ex.reward == 1.0 and ex.instance_id == "task-000"
    meta = src.metadata
    assert meta["temperature"] == 0.7 and meta["max_tokens"] == 512 and meta["model_name"] == "test-model"
    assert meta["base_url"] == server.base_url and meta["tool_version"] and meta["config_sha256"]
    assert meta["generator"] == "agentdata-tui generate_single"
    for root in (out, out.with_suffix(".run"), log):
        assert _files_contain(root, KEY) == []
    assert "finished task-000" in log.read_text()


def test_generate_single_rejects_several_instances(tmp_path: Path) -> None:
    res = _run(
        "generate_single", "--instance", str(write_dataset(tmp_path, 2)), "--output", str(tmp_path / "x.json")
    )
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "holds 2 instances" in res.stderr


def _ids(out: Path) -> list[str]:
    return sorted(e.instance_id for e in open_input(out))


def test_selection_flags(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path, 6)
    with ModelServer(ScriptedResponder(scripts_for(6))) as server:
        common = ["--dataset", str(dataset), "--base-url", server.base_url, "--workers", "3"]
        r1 = _run(
            "generate-multi",
            *common,
            "--filter",
            r"task-00[1-4]",
            "--slice",
            "1:3",
            "--output",
            str(tmp_path / "a.json"),
        )
        r2 = _run(
            "generate-multi",
            *common,
            "--instance-ids",
            "task-000, task-005",
            "--output",
            str(tmp_path / "b.json"),
        )
        r3 = _run(
            "generate-multi",
            *common,
            "--shuffle",
            "--seed",
            "3",
            "--max-tasks",
            "2",
            "--samples-per-task",
            "2",
            "--output",
            str(tmp_path / "c.json"),
        )
    for r in (r1, r2, r3):
        assert r.returncode == 0, r.stderr
    assert _ids(tmp_path / "a.json") == ["task-002", "task-003"]
    assert _ids(tmp_path / "b.json") == ["task-000", "task-005"]
    order = [f"task-{i:03d}" for i in range(6)]
    random.Random(3).shuffle(order)
    c = list(open_input(tmp_path / "c.json"))
    assert sorted((e.instance_id, e.sample_index) for e in c) == sorted(
        (i, s) for i in order[:2] for s in (0, 1)
    )


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--slice", "1-3"], "--slice"),
        (["--instance-ids", "nope"], "not in the dataset"),
        (["--filter", "("], "--filter"),
        (["--eval-server", "not a server"], "--eval-server"),
        (["--environment-class", "nosuchmodule.Sandbox"], "environment_class"),
        (["--environment-class", "docker_remote"], "--docker-server"),
        (["--config", "/nonexistent/config.yaml"], "config file not found"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra, needle
) -> None:
    dataset = write_dataset(tmp_path, 2)
    with pytest.raises(SystemExit) if extra[0] == "--workers" else _no_raise():
        code = main(
            ["generate-multi", "--dataset", str(dataset), "--output", str(tmp_path / "o.json"), *extra]
        )
        assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_missing_dataset_and_folder_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate-multi", "--dataset", str(tmp_path / "none.json")]) == 2
    assert "dataset file not found" in capsys.readouterr().err
    dataset = write_dataset(tmp_path, 1)
    assert main(["generate-multi", "--dataset", str(dataset), "--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_model_must_be_chosen_when_server_lists_several(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path, 1)
    with ModelServer(ScriptedResponder(scripts_for(1)), models=("m-a", "m-b")) as server:
        res = _run(
            "generate-multi",
            "--dataset",
            str(dataset),
            "--base-url",
            server.base_url,
            "--output",
            str(tmp_path / "o.json"),
        )
    assert res.returncode == 2 and "m-a, m-b" in res.stderr and "--model" in res.stderr


def test_eval_server_gets_token_and_it_never_reaches_files(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path, 2)
    out = tmp_path / "e.json"
    evs = FakeEvalServer()
    try:
        with ModelServer(ScriptedResponder(scripts_for(2))) as server:
            res = _run(
                "generate-multi",
                "--dataset",
                str(dataset),
                "--base-url",
                server.base_url,
                "--eval-server",
                evs.url.replace("http://", ""),
                "--output",
                str(out),
                env_extra={"AGENTDATA_EVAL_TOKEN": TOKEN, "OPENAI_API_KEY": KEY},
            )
    finally:
        evs.close()
    assert res.returncode == 0, res.stderr
    assert len(evs.requests) == 2 and all(r["auth"] == f"Bearer {TOKEN}" for r in evs.requests)
    sent = json.loads(evs.requests[0]["body"])
    assert sent["instance"]["instance_id"] == sent["instance_id"] and "out.txt" in sent["patch"]
    examples = list(open_input(out))
    assert all(e.reward == 0.75 and e.speedup == 1.8 for e in examples)
    assert open_input(out).metadata["eval_server"] == evs.url
    for root in (out, out.with_suffix(".run")):
        assert _files_contain(root, TOKEN) == [] and _files_contain(root, KEY) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_reports_what_answered(capsys: pytest.CaptureFixture[str]) -> None:
    evs = FakeEvalServer()
    evs.default = (200, "ok")
    try:
        with ModelServer(models=("m-a", "m-b")) as server:
            assert (
                main(["check", "--base-url", server.base_url, "--model", "m-b", "--eval-server", evs.url])
                == 0
            )
            out = capsys.readouterr().out
            assert "m-a, m-b" in out and "'m-b' is served" in out and "healthy" in out
            assert main(["check", "--base-url", server.base_url, "--model", "zzz"]) == 1
            assert "FAIL  model 'zzz'" in capsys.readouterr().out
    finally:
        evs.close()
    down = f"127.0.0.1:{_free_port()}"
    assert main(["check", "--base-url", f"http://{down}/v1", "--eval-server", down]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") >= 2 and "1 check(s) failed" not in out


def test_help_lists_every_generation_flag() -> None:
    res = _run("generate-multi", "--help")
    for flag in (
        "--api-key",
        "--base-url",
        "--model",
        "--docker-server",
        "--eval-server",
        "--eval-token",
        "--environment-class",
        "--output",
        "--config",
        "--workers",
        "--temperature",
        "--max-tokens",
        "--max-tasks",
        "--slice",
        "--instance-ids",
        "--filter",
        "--shuffle",
        "--seed",
        "--samples-per-task",
        "--retry-errors",
        "--resume",
        "--force",
        "--log-file",
    ):
        assert flag in res.stdout, flag
    assert "example" in res.stdout
    alias = _run("generate-training-data", "generate_multi", "--help")
    assert alias.returncode == 0 and "--dataset" in alias.stdout


def test_generate_single_from_a_training_data_file(tmp_path: Path) -> None:
    ds = json.loads(write_dataset(tmp_path, 1).read_text())
    inst_file = tmp_path / "instance.json"
    inst_file.write_text(json.dumps(ds[0]))
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    with ModelServer(ScriptedResponder(scripts_for(1))) as server:
        r1 = _run(
            "generate_single",
            "--instance",
            str(inst_file),
            "--base-url",
            server.base_url,
            "--output",
            str(first),
        )
        r2 = _run(
            "generate_single",
            "--instance",
            str(first),
            "--base-url",
            server.base_url,
            "--output",
            str(second),
        )
        prompt = server.chat_requests()[-1].body["messages"][1]["content"]
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr
    (ex,) = list(open_input(second))
    assert ex.instance_id == "task-000" and ex.attempt == 1 and len(ex.messages) == 5
    assert "Write data-task-000" in prompt


def test_unreachable_model_server_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_dataset(tmp_path, 1)
    base = f"http://127.0.0.1:{_free_port()}/v1"
    code = main(
        [
            "generate-multi",
            "--dataset",
            str(dataset),
            "--base-url",
            base,
            "--model",
            "m",
            "--output",
            str(tmp_path / "o.json"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach" in err and "agentdata-tui check" in err
    assert not (tmp_path / "o.run").exists()
