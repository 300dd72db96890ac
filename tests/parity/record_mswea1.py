"""Records the requests mini-swe-agent 1.x sends on the parity scenario (its bundled mini.yaml,
text mode), for tests/test_agent_parity.py to compare agentdata-tui's with.

mini-swe-agent 1.x is not installed by CI (its litellm pins differ from 2.x's; one peer venv is
enough per CI run), so its conversation is recorded once and committed. To re-record:

    python3 -m venv /tmp/mswea1 && /tmp/mswea1/bin/pip install 'mini-swe-agent>=1.17,<2'
    PYTHONPATH=tests .venv/bin/python tests/parity/record_mswea1.py /tmp/mswea1/bin/python

It writes tests/data/mini-swe-agent/parity-1x.json: the merged config (with the server address
and key as placeholders), the task, the scripted replies, and every request body, with this
machine's uname replaced by placeholders.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from servers.model_server import ModelServer

from parity.scenario import TASK, Script, machine_placeholders, make_repo, text_script

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "data" / "mini-swe-agent" / "parity-1x.json"
KEY = "sk-parity-1x"
TIMEOUT_S = 2
SLOW = "sleep 4"  # 1.x kills only the shell on a timeout, then waits for the pipe to close


def main() -> int:
    python = sys.argv[1]
    info = subprocess.run(
        [
            python,
            "-c",
            "import minisweagent, minisweagent.config as c; print(minisweagent.__version__); print(c.builtin_config_dir)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MSWEA_SILENT_STARTUP": "1"},
    ).stdout.split()
    version, config_dir = info[-2], info[-1]
    script = Script(text_script("bash", slow=SLOW))
    with tempfile.TemporaryDirectory() as tmp, ModelServer(script, models=("test-model",)) as server:
        repo = make_repo(Path(tmp) / "repo")
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        overrides = [
            "model.model_name=openai/test-model",
            f"model.model_kwargs.api_base={server.base_url}",
            f"model.model_kwargs.api_key={KEY}",
            f"environment.timeout={TIMEOUT_S}",
        ]
        args = {"specs": [str(Path(config_dir) / "mini.yaml"), *overrides], "task": TASK, "cwd": str(repo)}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MSWEA_", "LITELLM_"))}
        env |= {"MSWEA_SILENT_STARTUP": "1", "MSWEA_GLOBAL_CONFIG_DIR": str(Path(tmp) / "home")}
        peer = subprocess.run(
            [python, str(REPO / "tests" / "parity" / "mswea_driver.py"), json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        if peer.returncode != 0:
            print(peer.stderr[-3000:], file=sys.stderr)
            return 1
        result = json.loads(peer.stdout.strip().splitlines()[-1])
        bodies = [r.body for r in server.chat_requests()]
        url = server.base_url
    import yaml

    config = yaml.safe_load((Path(config_dir) / "mini.yaml").read_text())
    text = json.dumps(bodies).replace(url, "<BASE_URL>").replace(KEY, "<API_KEY>")
    record = {
        "made_with": f"mini-swe-agent {version} (tests/parity/record_mswea1.py)",
        "config": config,
        "overrides": [o.replace(url, "<BASE_URL>").replace(KEY, "<API_KEY>") for o in overrides],
        "task": TASK,
        "replies": [dataclasses.asdict(r) for r in script.replies],
        "exit_status": result["info"]["exit_status"],
        "requests": json.loads(machine_placeholders(text)),
    }
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{OUT}: {len(bodies)} requests, exit {record['exit_status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
