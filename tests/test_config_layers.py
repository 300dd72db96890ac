"""Configs as mini-swe-agent users write them (issue 10 §1, §4, §5): the action mode from
``model.model_class``, layered ``-c`` files and ``key.path=value`` overrides, model settings from
the config (api_base / api_key / a litellm model name), keys understood but unused listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_runner import scripts_for, write_dataset

from agentdata_tui.config import (
    DEFAULT_ACTION_REGEX,
    MSWEA2_ACTION_REGEX,
    bundled_config_path,
    config_from_dict,
    launch_defaults,
    load_config,
    load_configs,
)
from agentdata_tui.errors import InputError, UserError
from agentdata_tui.model.client import served_model_name, strip_provider

KEY = "sk-LAYER-secret-9d1e77"


def _v2(tmp_path: Path, name: str = "v2.yaml", **model) -> Path:
    p = tmp_path / name
    model_yaml = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in model.items())
    p.write_text(
        "agent:\n  system_template: sys\n  instance_template: 'Do {{task}}'\n  mode: confirm\n"
        "environment:\n  env: {PAGER: cat}\n"
        "model:\n  observation_template: 'OBS {{output.output}}'\n  model_kwargs: {drop_params: true}\n"
        + model_yaml
    )
    return p


@pytest.mark.parametrize(
    ("model_class", "mode"),
    [
        (None, "tool_call"),
        ("litellm", "tool_call"),
        ("openrouter", "tool_call"),
        ("portkey", "tool_call"),
        ("requesty", "tool_call"),
        ("minisweagent.models.litellm_model.LitellmModel", "tool_call"),
        ("litellm_textbased", "text"),
        ("openrouter_textbased", "text"),
        ("minisweagent.models.litellm_textbased_model.LitellmTextbasedModel", "text"),
    ],
)
def test_action_mode_follows_model_class(model_class, mode):
    """Reproduced: model.model_class was dropped, so mini-swe-agent's own mini.yaml ran as text
    (no tools sent, every tool call a format error)."""
    model = {"observation_template": "x"} | ({"model_class": model_class} if model_class else {})
    cfg = config_from_dict({"model": model})
    assert cfg.action_mode == mode
    assert cfg.action_regex == MSWEA2_ACTION_REGEX
    cfg.agent.action_format = "text" if mode == "tool_call" else "tool_call"  # still overrides
    assert cfg.action_mode != mode


def test_1x_layout_is_text_with_the_bash_block():
    cfg = config_from_dict({"agent": {"action_observation_template": "{{output.output}}"}})
    assert cfg.layout == 1 and cfg.action_mode == "text" and cfg.action_regex == DEFAULT_ACTION_REGEX
    assert cfg.timeout_template is not None  # 1.x's default one
    assert load_config().action_mode == "text"


@pytest.mark.parametrize(
    "bad", ["litellm_response", "portkey_response", "mypkg.models.Custom", "deterministic"]
)
def test_unsupported_model_class_is_one_line_naming_the_classes(tmp_path, bad):
    with pytest.raises(InputError) as err:
        load_configs([str(_v2(tmp_path)), f"model.model_class={bad}"])
    text = str(err.value)
    assert "\n" not in text and bad in text and "litellm_textbased" in text and "model.model_class" in text


def test_layers_merge_in_order_and_overrides_parse_as_json(tmp_path):
    base = _v2(tmp_path, model_name="hosted_vllm/a")
    extra = tmp_path / "extra.yaml"
    extra.write_text("agent:\n  step_limit: 7\nmodel:\n  model_kwargs: {temperature: 0.2}\n")
    cfg = load_configs(
        [
            str(base),
            str(extra),
            "model.model_class=litellm_textbased",
            "agent.step_limit=9",
            "environment.cwd=",
            "model.model_kwargs.top_p=0.5",
            "environment.env.N=1",
        ]
    )
    assert cfg.agent.step_limit == 9 and cfg.agent.system_template == "sys"
    assert cfg.model.model_kwargs == {"drop_params": True, "temperature": 0.2, "top_p": 0.5}
    assert cfg.environment.env == {"PAGER": "cat", "N": "1"} and cfg.environment.cwd == ""
    assert cfg.action_mode == "text" and cfg.model.model_name == "hosted_vllm/a"
    assert cfg.sources[-1] == "environment.env.N=1" and cfg.sources[0] == str(base.resolve())
    assert cfg.model_dump_public()["agent"]["step_limit"] == 9
    # overrides alone apply to the bundled config
    alone = load_configs(["agent.step_limit=4"])
    assert alone.agent.step_limit == 4 and alone.agent.system_template == load_config().agent.system_template


def test_layer_errors_name_their_layer(tmp_path):
    base = _v2(tmp_path)
    with pytest.raises(
        InputError, match=r"--config agent\.stepp_limit=\.\.\.: unknown key 'agent\.stepp_limit'"
    ):
        load_configs([str(base), "agent.stepp_limit=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  step_limit: -1\n")
    with pytest.raises(InputError, match=r"bad\.yaml: 'agent\.step_limit'"):
        load_configs([str(base), str(bad)])
    with pytest.raises(UserError, match="empty key"):
        load_configs([str(base), "agent..x=1"])
    with pytest.raises(InputError, match="config file not found"):
        load_configs([str(tmp_path / "nope.yaml")])


def test_unused_keys_line_and_secret_free_dump(tmp_path):
    """Reproduced: Config.ignored_keys was computed and never shown."""
    cfg = load_configs([str(_v2(tmp_path)), f"model.model_kwargs.api_key={KEY}", "agent.timeout_template=T"])
    line = cfg.unused_keys_line()
    assert line.startswith("config keys understood but not used here: ")
    assert (
        "agent.mode" in line and "model.model_kwargs.drop_params" in line and "agent.timeout_template" in line
    )
    assert KEY not in json.dumps(cfg.model_dump_public()) and KEY not in " ".join(cfg.sources)


def test_model_name_sent_as_listed_else_without_the_provider_prefix():
    assert served_model_name("hosted_vllm/Qwen/Qwen3-8B", ["Qwen/Qwen3-8B"]) == "Qwen/Qwen3-8B"
    assert (
        served_model_name("hosted_vllm/Qwen/Qwen3-8B", ["hosted_vllm/Qwen/Qwen3-8B"])
        == "hosted_vllm/Qwen/Qwen3-8B"
    )
    assert served_model_name("openai/gpt-x", None) == "gpt-x"
    assert served_model_name("Qwen/Qwen3-8B", []) == "Qwen/Qwen3-8B"  # Qwen is no provider
    assert strip_provider("hosted_vllm") == "hosted_vllm"


def test_launch_defaults_prefill_from_the_config(tmp_path):
    cfg = load_configs(
        [
            str(_v2(tmp_path, model_name="hosted_vllm/Qwen/Qwen3-8B")),
            "model.model_kwargs.api_base=http://gpu1:8000/v1",
        ]
        + [
            "model.model_kwargs.temperature=0.6",
            "model.model_kwargs.max_tokens=900",
            f"model.model_kwargs.api_key={KEY}",
        ]
    )
    assert launch_defaults(cfg) == {
        "model": "hosted_vllm/Qwen/Qwen3-8B",
        "base_url": "http://gpu1:8000/v1",
        "api_key": KEY,
        "temperature": 0.6,
        "max_tokens": 900,
        "environment_class": "local",
    }


def _run(*argv: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "agentdata_tui", *argv], capture_output=True, text=True, env=env, timeout=300
    )


def test_api_base_api_key_and_model_prefix_from_the_config(tmp_path):
    """Reproduced: a config with api_base and model_name hosted_vllm/Qwen/Qwen3-8B sent requests
    to localhost:8000 with the prefix. Now: the config's server and key, the served name, the
    user's string recorded; a flag still wins over the config, the config over the environment."""
    dataset = write_dataset(tmp_path, 1)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"model:\n  model_name: hosted_vllm/Qwen/Qwen3-8B\n  model_kwargs:\n    drop_params: true\n    api_key: {KEY}\n"
    )
    with ModelServer(ScriptedResponder(scripts_for(1)), models=("Qwen/Qwen3-8B",)) as server:
        out = tmp_path / "o.json"
        res = _run(
            "generate-multi", "--dataset", str(dataset), "--output", str(out),
            "-c", str(bundled_config_path()), "-c", str(cfg), "-c", f"model.model_kwargs.api_base={server.base_url}",
            env_extra={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-env-loses"},
        )  # fmt: skip
        chat = server.chat_requests()
    assert res.returncode == 0, res.stderr
    assert chat and all(r.body["model"] == "Qwen/Qwen3-8B" for r in chat)
    assert all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in chat)
    assert (
        "drop_params" not in chat[0].body and "api_key" not in chat[0].body and "api_base" not in chat[0].body
    )
    data = json.loads(out.read_text())
    assert data["metadata"]["model_name"] == "hosted_vllm/Qwen/Qwen3-8B"
    assert data["metadata"]["served_model_name"] == "Qwen/Qwen3-8B"
    assert data["examples"][0]["metadata"]["model_name"] == "hosted_vllm/Qwen/Qwen3-8B"
    assert res.stderr.count("config keys understood but not used here:") == 1
    run_json = json.loads((tmp_path / "o.run" / "run.json").read_text())
    assert run_json["config"]["model"]["model_name"] == "hosted_vllm/Qwen/Qwen3-8B"
    assert run_json["tools"] is None and run_json["config"]["agent"]["action_format"] == "text"
    for f in [out, *(tmp_path / "o.run").iterdir()]:
        assert KEY not in f.read_text(errors="replace"), f

    # --api-key and --base-url win over the config
    with ModelServer(ScriptedResponder(scripts_for(1)), models=("Qwen/Qwen3-8B",)) as other:
        res = _run(
            "generate-multi", "--dataset", str(dataset), "--output", str(tmp_path / "p.json"),
            "-c", str(bundled_config_path()), "-c", str(cfg), "-c", "model.model_kwargs.api_base=http://127.0.0.1:9/v1",
            "--base-url", other.base_url, "--api-key", "sk-flag-wins",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert other.chat_requests()[0].headers["Authorization"] == "Bearer sk-flag-wins"
