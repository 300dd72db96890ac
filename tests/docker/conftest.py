"""Fixtures for the docker-marked tests: a reachable engine, the test image, a second daemon.

Without an engine these tests skip with a reason; with ``CI=true`` they fail instead (CI
must show them passing: ``.ci/docker-setup.sh`` starts dockerd and builds the image).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerutil import BASE_IMAGE, IMAGE, TCP_SERVER, api, free_port, unavailable, wait_for


@pytest.fixture(scope="session")
def docker_api():
    """An APIClient on the local daemon, with the test images present (else skip / fail in CI)."""
    try:
        client = api()
        client.ping()
    except Exception as exc:
        unavailable(f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:120]})")
    for image in (IMAGE, BASE_IMAGE):
        try:
            client.inspect_image(image)
        except Exception:
            unavailable(f"test image {image} is missing (bash tests/docker/build_image.sh builds it)")
    return client


@pytest.fixture(scope="session")
def docker_tcp(docker_api) -> str:
    """The daemon's TCP endpoint (``docker_remote`` tests), as HOST:PORT."""
    try:
        api(f"tcp://{TCP_SERVER}", timeout=5).ping()
    except Exception as exc:
        unavailable(f"the Docker engine does not listen on tcp://{TCP_SERVER} ({type(exc).__name__})")
    return TCP_SERVER


@dataclass
class SecondDaemon:
    """A throwaway dockerd with its own data root, exec root, pidfile and TCP port."""

    server: str
    proc: subprocess.Popen
    root: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def second_daemon(docker_api) -> Iterator[SecondDaemon]:
    """A second dockerd (root only) with the base image loaded; stopped and removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        unavailable("a second dockerd needs root and the dockerd binary")
    root = Path(tempfile.mkdtemp(prefix="agentdata-dockerd-"))
    server = f"127.0.0.1:{free_port()}"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - the daemon writes to it until the end
    proc = subprocess.Popen(
        [
            "dockerd",
            "--storage-driver=vfs",
            "--iptables=false",
            "--bridge=none",
            "--shutdown-timeout=1",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'docker.pid'}",
            "-H",
            f"tcp://{server}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    daemon = SecondDaemon(server=server, proc=proc, root=root)
    try:

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"second dockerd exited: {(root / 'dockerd.log').read_text()[-500:]}")
            with contextlib.suppress(Exception):
                api(f"tcp://{server}", timeout=2).ping()
                return True
            return False

        wait_for(answers, 60, "the second dockerd", interval=0.2)
        api(f"tcp://{server}", timeout=120).load_image(docker_api.get_image(BASE_IMAGE))
        yield daemon
    finally:
        daemon.stop()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
