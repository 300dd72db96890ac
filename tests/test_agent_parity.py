"""Parity with mini-swe-agent itself: replaying a real 2.x trajectory (its own config, its own
replies) through our loop must reproduce the conversation it recorded, message for message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentdata_tui.agent.loop import Agent
from agentdata_tui.config import MSWEA2_ACTION_REGEX, config_from_dict
from agentdata_tui.dataset import Instance
from agentdata_tui.interfaces import ModelResponse, RolloutContext
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox.local import LocalSandbox

SAMPLES = Path(__file__).resolve().parent / "data" / "mini-swe-agent"
UNAME = re.compile(r"<system_information>\n.*?\n</system_information>", re.DOTALL)
TIMING = re.compile(r"Ran (\d+) tests? in [0-9.]+s")


class Replay:
    name = "replay"

    def __init__(self, replies: list[ModelResponse]) -> None:
        self.replies = replies
        self.n = 0

    def query(self, messages, *, tools=None, context=None) -> ModelResponse:
        self.n += 1
        return self.replies[self.n - 1]


def normalise(text: str) -> str:
    return TIMING.sub(r"Ran \1 tests in Xs", UNAME.sub("<system_information/>", text))


def replay(
    name: str, tool_call: bool, tmp_path: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    traj = json.loads((SAMPLES / f"{name}.traj.json").read_text())
    raw = traj["info"]["config"]
    config = config_from_dict({k: raw[k] for k in ("agent", "environment", "model")})
    # mini-swe-agent picks the action mode by model class (its deterministic test models here)
    config.model.model_class = "litellm" if tool_call else "litellm_textbased"
    # The recorded run's cwd (/workspace/r) was its own checkout; here the sandbox's copy is it
    # (an absolute cwd missing from the local sandbox is a SandboxError, never a stand-in).
    config.environment.cwd = ""
    recorded = [m for m in traj["messages"] if m["role"] != "exit"]
    replies = [
        ModelResponse(
            content=m["content"], tool_calls=m.get("tool_calls"), prompt_tokens=1, completion_tokens=1
        )
        for m in recorded
        if m["role"] == "assistant"
    ]
    task = re.search(r"Please solve this issue: (.*?)\n", recorded[1]["content"]).group(1)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    inst = Instance(instance_id=name, problem_statement=task)
    sandbox = LocalSandbox(inst, config.environment, context=SandboxContext(repo_dir=repo))
    sandbox.start()
    try:
        result = Agent(config, Replay(replies), sandbox, instance=inst, context=RolloutContext(name)).run()
    finally:
        sandbox.close()
    assert result.exit_status == traj["info"]["exit_status"]
    return result.messages, recorded, config.action_regex


@pytest.mark.parametrize(("name", "tool_call"), [("sample-text-solved", False), ("sample-tool-solved", True)])
def test_replayed_trajectory_matches_mini_swe_agent(name, tool_call, tmp_path):
    ours, theirs, regex = replay(name, tool_call, tmp_path)
    if not tool_call:
        assert regex == MSWEA2_ACTION_REGEX  # a 2.x config without action_regex: 2.x's block name
    assert [m["role"] for m in ours] == [m["role"] for m in theirs]
    for mine, recorded in zip(ours, theirs, strict=True):
        assert normalise(mine["content"]) == normalise(recorded["content"])
        assert mine.get("tool_call_id") == recorded.get("tool_call_id")
        assert mine.get("tool_calls") == recorded.get("tool_calls")


# -- side by side with mini-swe-agent 2.4 itself ------------------------------------------------
# Both agents run the same task against the same scripted loopback server, from the same
# mini-swe-agent config files (merged with the same -c overrides); every request must match.

from parity.scenario import (  # noqa: E402
    TASK,
    TIMEOUT_S,
    Script,
    make_repo,
    request_params,
    text_script,
    tool_script,
    wire_messages,
)
from servers.model_server import ModelServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEER_KEY = "sk-parity-4e1f0c2b9d"
PARITY_CASES = {
    # name: (config specs relative to mini-swe-agent's config folder, model name, script)
    "mini.yaml": (["mini.yaml"], "openai/test-model", tool_script),
    "mini_textbased.yaml+litellm_textbased": (
        ["mini_textbased.yaml", "model.model_class=litellm_textbased"],
        "openai/test-model",
        lambda: text_script("mswea_bash_command"),
    ),
    "benchmarks/swebench.yaml+local": (
        ["benchmarks/swebench.yaml", "environment.environment_class=local", "environment.cwd="],
        "hosted_vllm/test-model",
        tool_script,
    ),
}


def peer_python(name: str = "mswea-2.4") -> Path:
    """The interpreter of a peer's own venv (made by .ci/peer-setup.sh, cached). Locally a peer
    that cannot be made skips the test; under CI=true it fails."""
    base = Path(os.environ.get("AGENTDATA_PEER_DIR") or Path.home() / ".cache" / "agentdata-tui" / "peers")
    python = base / name / "bin" / "python"

    def works() -> bool:
        if not python.exists():
            return False
        return subprocess.run([str(python), "-c", "import minisweagent"], capture_output=True).returncode == 0

    if not works():
        setup = subprocess.run(
            ["bash", str(REPO / ".ci" / "peer-setup.sh")], capture_output=True, text=True, timeout=1200
        )
        if not works():
            why = f"peer {name} could not be made in {base}: {(setup.stderr or setup.stdout)[-500:]}"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(why)
            pytest.skip(why)
    return python


@pytest.fixture(scope="module")
def mswea2(tmp_path_factory) -> tuple[Path, Path]:
    python = peer_python("mswea-2.4")
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import minisweagent.config as c, minisweagent; print(c.builtin_config_dir); print(minisweagent.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(tmp_path_factory.mktemp("mswea-home")),
    )
    config_dir, version = out.stdout.split()[-2:]
    assert version.startswith("2.4."), version
    return python, Path(config_dir)


def _clean_env(home: Path | None = None) -> dict[str, str]:
    """No model settings from this shell; mini-swe-agent's global config (a .env it loads at
    import) in a folder of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MSWEA_", "LITELLM_"))}
    env["PYTHONPATH"] = str(REPO / "tests")
    env["MSWEA_SILENT_STARTUP"] = "1"
    if home is not None:
        env["MSWEA_GLOBAL_CONFIG_DIR"] = str(home)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_requests_match_mini_swe_agent(case, mswea2, tmp_path):
    python, config_dir = mswea2
    specs, model_name, make_script = PARITY_CASES[case]
    files = [str(config_dir / s) if "=" not in s else s for s in specs]
    script = Script(make_script())
    with ModelServer(script, models=("test-model",)) as server:
        common = [
            f"model.model_name={model_name}",
            f"model.model_kwargs.api_base={server.base_url}",
            f"model.model_kwargs.api_key={PEER_KEY}",
            f"environment.timeout={TIMEOUT_S}",
        ]
        # mini-swe-agent itself
        peer_repo = make_repo(tmp_path / "peer" / "repo")
        subprocess.run(["git", "init", "-q"], cwd=peer_repo, check=True)
        args = {"specs": files + common, "task": TASK, "cwd": str(peer_repo)}
        peer = subprocess.run(
            [str(python), str(REPO / "tests" / "parity" / "mswea_driver.py"), json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=300,
            env=_clean_env(tmp_path / "peer" / "home"),
        )
        assert peer.returncode == 0, peer.stderr[-3000:]
        theirs = json.loads(peer.stdout.strip().splitlines()[-1])
        their_requests = [r.body for r in server.chat_requests()]
        server.requests.clear()
        script.reset()

        # agentdata-tui, through its CLI, with the same layers
        ours_run, out = run_ours(tmp_path / "ours", TASK, files + common)
        our_requests = [r.body for r in server.chat_requests()]
    assert theirs["info"]["exit_status"] == "Submitted"
    data = json.loads(out.read_text())
    example = data["examples"][0]
    assert example["exit_status"] == "Submitted"
    assert len(our_requests) == len(their_requests) == script.n
    compared = 0
    for i, (mine, peer_body) in enumerate(zip(our_requests, their_requests, strict=True)):
        _assert_same_messages(wire_messages(mine["messages"]), wire_messages(peer_body["messages"]), i + 1)
        assert mine.get("tools") == peer_body.get("tools"), f"request {i + 1}: tools"
        assert request_params(mine) == request_params(peer_body), f"request {i + 1}: model and sampling"
        compared += len(mine["messages"])
    print(f"parity {case}: {len(our_requests)} requests, {compared} messages compared")

    # What we recorded is the conversation (the final reply included) and, in tool mode, its tools.
    # Records keep content a string: a reply the server sent with null content is recorded as "".
    assert wire_messages(example["messages"]) == wire_messages(
        _content_as_text(their_requests[-1]["messages"] + [_peer_last_reply(theirs)])
    )
    tool_mode = "tools" in their_requests[0]
    run_json = json.loads((tmp_path / "ours" / "out.run" / "run.json").read_text())
    if tool_mode:
        assert run_json["tools"] == their_requests[0]["tools"]
        assert data["metadata"]["tools"] == their_requests[0]["tools"]
        assert example["metadata"]["tools"] == their_requests[0]["tools"]
    else:
        assert run_json["tools"] is None and "tools" not in example["metadata"]
    assert example["metadata"]["model_name"] == model_name  # the user's string is recorded
    assert run_json["config"]["model"]["model_kwargs"]["api_key"] == "***"
    assert run_json["config"]["environment"]["timeout"] == TIMEOUT_S
    for f in [out, *(tmp_path / "ours" / "out.run").iterdir()]:
        assert PEER_KEY not in f.read_text(errors="replace"), f
    assert "config keys understood but not used here:" in ours_run.stderr


def run_ours(folder: Path, task: str, specs: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    """agentdata-tui on the scenario's task, through its CLI, with these ``-c`` layers."""
    make_repo(folder / "repo")
    inst = folder / "instance.json"
    inst.write_text(json.dumps({"instance_id": "parity", "problem_statement": task, "repo_path": "repo"}))
    out = folder / "out.json"
    cmd = [
        sys.executable,
        "-m",
        "agentdata_tui",
        "generate_single",
        "--instance",
        str(inst),
        "--output",
        str(out),
    ]
    for spec in specs:
        cmd += ["-c", spec]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_clean_env())
    assert run.returncode == 0, run.stderr[-3000:]
    return run, out


def _content_as_text(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**m, "content": m.get("content") or ""} for m in messages]


def _peer_last_reply(theirs: dict[str, Any]) -> dict[str, Any]:
    assistant = [m for m in theirs["messages"] if m.get("role") == "assistant"]
    return {k: v for k, v in assistant[-1].items() if k != "extra"}


def _assert_same_messages(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], n: int) -> None:
    """Equal, or a failure that shows where the first difference is."""
    if ours == theirs:
        return
    for j, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            ca, cb = str(a.get("content")), str(b.get("content"))
            k = next((x for x in range(min(len(ca), len(cb))) if ca[x] != cb[x]), min(len(ca), len(cb)))
            pytest.fail(
                f"request {n}, message {j} ({a.get('role')}/{b.get('role')}) differs at character {k}: "
                f"ours {ca[max(0, k - 80) : k + 80]!r} vs mini-swe-agent {cb[max(0, k - 80) : k + 80]!r}; "
                f"other fields equal: { ({**a, 'content': None} == {**b, 'content': None}) }"
            )
    pytest.fail(f"request {n}: {len(ours)} messages vs mini-swe-agent's {len(theirs)}")


def test_requests_match_a_recorded_mini_swe_agent_1x_conversation(tmp_path):
    """mini-swe-agent 1.17's own mini.yaml (a 1.x layout: text, ```bash blocks, the rejected reply
    kept, 1.x's default timeout_template), recorded by tests/parity/record_mswea1.py."""
    import yaml
    from parity.scenario import machine_placeholders
    from servers.model_server import Reply

    record = json.loads((SAMPLES / "parity-1x.json").read_text())
    config = tmp_path / "mini-1x.yaml"
    config.write_text(yaml.safe_dump(record["config"]))
    script = Script([Reply(**r) for r in record["replies"]])
    with ModelServer(script, models=("test-model",)) as server:
        overrides = [
            o.replace("<BASE_URL>", server.base_url).replace("<API_KEY>", PEER_KEY)
            for o in record["overrides"]
        ]
        _, out = run_ours(tmp_path, record["task"], [str(config), *overrides])
        ours = json.loads(machine_placeholders(json.dumps([r.body for r in server.chat_requests()])))
    theirs = record["requests"]
    assert record["exit_status"] == "Submitted" == json.loads(out.read_text())["examples"][0]["exit_status"]
    assert len(ours) == len(theirs) == 10
    for i, (mine, peer_body) in enumerate(zip(ours, theirs, strict=True)):
        _assert_same_messages(wire_messages(mine["messages"]), wire_messages(peer_body["messages"]), i + 1)
        assert mine.get("tools") is None and peer_body.get("tools") is None
        assert request_params(mine) == request_params(peer_body), f"request {i + 1}: model and sampling"
