"""Runs mini-swe-agent itself on one task: its ``DefaultAgent`` + ``LocalEnvironment`` + litellm
model, built from ``-c``-style specs as its ``mini`` command builds them (2.x), without the
confirmation prompt of ``mini``. Works with 2.x and 1.x (1.x has no layered specs: they are
merged here the same way).

Run with the *peer's* interpreter (its own venv), never the project's:

    PEER/bin/python tests/parity/mswea_driver.py '{"specs": [...], "task": "...", "cwd": "..."}'

Prints one JSON line: the exit info, the messages mini-swe-agent recorded, the model class.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _spec(spec: str) -> dict:
    import yaml

    if "=" in spec and not Path(spec).is_file():
        key, value = spec.split("=", 1)
        with contextlib.suppress(ValueError):
            value = json.loads(value)
        node: dict = {}
        out = node
        keys = key.split(".")
        for k in keys[:-1]:
            node[k] = {}
            node = node[k]
        node[keys[-1]] = value
        return out
    return yaml.safe_load(Path(spec).read_text(encoding="utf-8"))


def main() -> int:
    args = json.loads(sys.argv[1])
    os.environ["MSWEA_COST_TRACKING"] = "ignore_errors"
    os.environ["MSWEA_SILENT_STARTUP"] = "1"
    os.environ["MSWEA_CONFIGURED"] = "true"
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # litellm must not fetch its price list
    os.chdir(args["cwd"])  # LocalEnvironment runs in the process's cwd when the config's is empty

    from minisweagent.agents.default import AgentConfig, DefaultAgent
    from minisweagent.environments import get_environment
    from minisweagent.models import get_model

    config: dict = {}
    for spec in args["specs"]:
        config = _merge(config, _spec(spec))
    model = get_model(config=config.get("model", {}))
    env = get_environment(config.get("environment", {}), default_type="local")
    agent_cfg = dict(config.get("agent", {}))
    if dataclasses.is_dataclass(AgentConfig):  # 1.x: a dataclass, unknown keys (mode, ...) refused
        names = {f.name for f in dataclasses.fields(AgentConfig)}
        agent_cfg = {k: v for k, v in agent_cfg.items() if k in names}
    agent = DefaultAgent(model, env, **agent_cfg)
    info = agent.run(args["task"])
    if isinstance(info, tuple):  # 1.x: (exit_status, message)
        info = {"exit_status": info[0], "submission": info[1]}
    print(
        json.dumps(
            {
                "info": info,
                "messages": agent.messages,
                "model_class": f"{type(model).__module__}.{type(model).__name__}",
            },
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
