"""Fixtures for the docker-marked tests: a reachable engine, the test image, a second daemon.

Without an engine these tests skip with a reason; with ``CI=true`` they fail instead (CI
must show them passing: ``.ci/docker-setup.sh`` starts dockerd and builds the image).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerutil import IMAGE, TCP_SERVER, api, free_port, unavailable, wait_for


@pytest.fixture(scope="session")
def docker_api():
    """An APIClient on the local daemon, with the test images present (else skip / fail in CI)."""
    try:
        client = api()
        client.ping()
    except Exception as exc:
        unavailable(f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:120]})")
    for image in (IMAGE,):
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


TINY_IMAGE = "agentdata-tui-test:tiny"
TINY_TOOLS = ("bash", "sh", "timeout", "sleep", "mkdir", "mktemp", "cp", "head", "cat", "rm", "env", "git")


def _ldd(path: str) -> list[str]:
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    return [w for line in out.splitlines() for w in line.split() if w.startswith("/")]


def tiny_rootfs() -> bytes:
    """A few MB image of this machine's own bash, coreutils and git (+ their libraries).

    The dying-daemon test needs a daemon of its own; loading the 200 MB test image into it (and
    vfs-copying it for the container) would cost more than everything else the test does.
    """
    wanted: set[str] = set()
    for tool in TINY_TOOLS:
        path = shutil.which(tool)
        if path is None:
            unavailable(f"'{tool}' is not installed on this machine (needed for the tiny image)")
        wanted.add(path)
        wanted.update(_ldd(path))
    buf = io.BytesIO()
    added: set[str] = set()

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        if not name or name in added:
            return
        add_dir(tar, os.path.dirname(name))
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)
        added.add(name)

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for top in ("bin", "sbin", "lib", "lib64"):  # usr-merged machines: keep the links
            if os.path.islink(f"/{top}"):
                info = tarfile.TarInfo(top)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(f"/{top}")
                tar.addfile(info)
                added.add(top)
        add_dir(tar, "tmp", 0o1777)
        add_dir(tar, "root", 0o700)
        for path in sorted(wanted):
            real = os.path.realpath(path)
            name = real.lstrip("/")
            if name not in added:
                add_dir(tar, os.path.dirname(name))
                tar.add(real, arcname=name)
                added.add(name)
            alias = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)).lstrip("/")
            if alias != name and alias not in added:
                add_dir(tar, os.path.dirname(alias))
                info = tarfile.TarInfo(alias)
                info.type, info.linkname = tarfile.SYMTYPE, real
                tar.addfile(info)
                added.add(alias)
    return buf.getvalue()


@pytest.fixture
def second_daemon(docker_api) -> Iterator[SecondDaemon]:
    """A second dockerd (root only) with a tiny image imported; stopped and removed afterwards."""
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
        api(f"tcp://{server}", timeout=120).import_image_from_data(
            tiny_rootfs(), repository=TINY_IMAGE.split(":")[0], tag=TINY_IMAGE.split(":")[1]
        )
        yield daemon
    finally:
        daemon.stop()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


# -- CI evidence: the docker tests by name, with their outcome, at the end of the run ----------

_RESULTS: dict[str, str] = {}
_MARKED: set[str] = set()


def pytest_itemcollected(item) -> None:
    if item.get_closest_marker("docker") is not None:
        _MARKED.add(item.nodeid)


def pytest_runtest_logreport(report) -> None:
    if report.nodeid not in _MARKED:
        return
    if report.when == "call" or report.outcome != "passed":
        _RESULTS[report.nodeid] = report.outcome if not hasattr(report, "wasxfail") else "xfail"


def pytest_terminal_summary(terminalreporter) -> None:
    if not _RESULTS:
        return
    terminalreporter.section("docker tests (real Docker engine)")
    for nodeid, outcome in _RESULTS.items():
        terminalreporter.write_line(f"{outcome.upper():8} {nodeid}")
    passed = sum(1 for o in _RESULTS.values() if o == "passed")
    terminalreporter.write_line(f"{passed} of {len(_RESULTS)} docker tests passed")
