"""Helpers of the docker-marked tests (imported by the tests and the fixtures in conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "agentdata_tui" / "demo" / "data"
IMAGE = "agentdata-tui-test:demo"
BASE_IMAGE = "agentdata-tui-test-base:bookworm"
TCP_SERVER = "127.0.0.1:2375"


def unavailable(reason: str) -> None:
    """Skip with a reason, or fail loudly under CI=true (CI must show the docker tests passing)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}: run 'bash .ci/docker-setup.sh'", pytrace=False)
    pytest.skip(reason)


def api(base_url: str | None = None, timeout: float = 30):
    import docker
    from docker.utils import kwargs_from_env

    kwargs = kwargs_from_env()
    if base_url:
        kwargs["base_url"] = base_url
    return docker.APIClient(version="auto", timeout=timeout, **kwargs)


def containers_with(client, **labels: str) -> list[dict]:
    filters = ["agentdata-tui=1"] + [f"agentdata-tui.{k}={v}" for k, v in labels.items()]
    return client.containers(all=True, filters={"label": filters})


def docker_dataset(path: Path, ids: list[str] | None = None, **extra) -> Path:
    """The bundled demo dataset, pointed at the repos baked into the test image under /app."""
    instances = json.loads((DEMO / "dataset.json").read_text())
    out = []
    for inst in instances:
        if ids and inst["instance_id"] not in ids:
            continue
        repo = Path(inst.pop("repo_path")).name
        inst.update({"image": IMAGE, "cwd": f"/app/{repo}"}, **extra)
        out.append(inst)
    path.write_text(json.dumps(out, indent=1))
    return path


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (conditions, not fixed sleeps)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
