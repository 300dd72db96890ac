"""Docker engines: endpoints, API clients, images, pre-flight and cleanup (DESIGN §4).

The sandbox itself is in :mod:`agentdata_tui.sandbox.docker`; this module holds what is
per server rather than per container:
- one :class:`DockerServer` per endpoint, process-wide, with its API clients (one per request
  timeout: calls made while a command runs get short ones) and the count of our containers
  on it, so rollouts go to the least busy server;
- images made present per the pull policy (one pull per image and server at a time);
- ``preflight`` (each server answers, each image is there or may be pulled: one clear error
  naming the server or the image) and ``cleanup`` (our labelled containers that killed
  processes left behind).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.errors import UserError
from agentdata_tui.interfaces import SandboxError
from agentdata_tui.procs import pid_alive

log = logging.getLogger("agentdata_tui.sandbox.docker")

LABEL = "agentdata-tui"  # every container of ours carries it (value "1")
LABEL_RUN = "agentdata-tui.run_id"
LABEL_INSTANCE = "agentdata-tui.instance_id"
LABEL_ROLLOUT = "agentdata-tui.rollout_id"
LABEL_OWNER = "agentdata-tui.owner"  # hostname:pid of the process that created it

# Request timeouts (seconds). A daemon that stops answering must end a rollout within its
# command timeout, so the calls made while a command runs get short ones.
CONTROL_TIMEOUT = 300.0  # create/start a container, pull: a loaded vfs daemon can take a while
EXEC_TIMEOUT = 30.0  # create/start an exec
REMOVE_TIMEOUT = 60.0  # remove a container (close() must not hang on a dead daemon)
PROBE_TIMEOUT = 10.0  # exec/container inspect, ping


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- servers ------------------------------------------------------------------------------


def server_url(server: str | None) -> str | None:
    """``HOST:PORT`` → ``tcp://HOST:PORT``; full URLs pass through; None = the local daemon."""
    if not server:
        return None
    server = server.strip()
    if "://" in server:
        return server
    return f"tcp://{server}"


def parse_servers(text: str | Iterable[str] | None) -> list[str]:
    """``--docker-server a:1,b:2`` (or a list of such strings) → ``["a:1", "b:2"]``."""
    if not text:
        return []
    parts = [text] if isinstance(text, str) else list(text)
    out: list[str] = []
    for part in parts:
        out.extend(s.strip() for s in part.split(",") if s.strip())
    return out


@dataclass
class DockerServer:
    """One Docker endpoint, shared process-wide: API clients and the count of our containers on it."""

    name: str  # what the user wrote ("local" for the local daemon)
    url: str | None  # None: from the environment (DOCKER_HOST or the unix socket)
    in_use: int = 0
    _clients: dict[float, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _version: str | None = None
    pulled: set[str] = field(default_factory=set)
    _pull_locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)

    def client(self, timeout: float = CONTROL_TIMEOUT):
        """A ``docker.APIClient`` with this request timeout (created once per timeout value)."""
        with self._lock:
            api = self._clients.get(timeout)
            if api is not None:
                return api
            import docker
            from docker.utils import kwargs_from_env

            kwargs: dict[str, Any] = kwargs_from_env()
            if self.url is not None:
                kwargs["base_url"] = self.url
                if kwargs.get("tls") and self.url.startswith("tcp://"):
                    kwargs["base_url"] = "https://" + self.url[len("tcp://") :]
            if self._version is None:
                # Ask the API version once, with a short timeout (a silent server must not hold
                # a rollout for minutes); every client after that is made without a request.
                try:
                    probe = docker.APIClient(version="1.24", timeout=PROBE_TIMEOUT, **kwargs)
                    probe.trust_env = False  # a direct connection to the engine, never a proxy
                    self._version = str(probe.version(api_version=False)["ApiVersion"])
                    probe.close()
                except Exception as exc:  # DockerException, requests errors: the daemon does not answer
                    raise SandboxError(f"docker server {self.name} does not answer: {_short(exc)}") from exc
            api = docker.APIClient(version=self._version, timeout=timeout, max_pool_size=32, **kwargs)
            api.trust_env = False
            self._clients[timeout] = api
            return api

    def pull_lock(self, image: str) -> threading.Lock:
        with self._lock:
            return self._pull_locks.setdefault(image, threading.Lock())

    def reset(self) -> None:
        """Forget the clients (after connection errors a fresh pool is cheaper than a stale one)."""
        with self._lock:
            for api in self._clients.values():
                with contextlib.suppress(Exception):
                    api.close()
            self._clients.clear()


_SERVERS: dict[str, DockerServer] = {}
_SERVERS_LOCK = threading.Lock()


def get_server(server: str | None) -> DockerServer:
    key = server or "local"
    with _SERVERS_LOCK:
        srv = _SERVERS.get(key)
        if srv is None:
            srv = _SERVERS[key] = DockerServer(name=key, url=server_url(server))
        return srv


def acquire_server(servers: list[str]) -> DockerServer:
    """The least busy of ``servers`` (ties: the first listed), its in-use count taken."""
    pool = [get_server(s) for s in servers] if servers else [get_server(None)]
    with _SERVERS_LOCK:
        best = min(pool, key=lambda s: s.in_use)
        best.in_use += 1
        return best


def release_server(srv: DockerServer) -> None:
    with _SERVERS_LOCK:
        srv.in_use = max(0, srv.in_use - 1)


# -- images, pre-flight, cleanup ---------------------------------------------------------------


def ensure_image(server: DockerServer, image: str, pull_policy: str) -> None:
    """Make ``image`` present on ``server`` per the pull policy (``always``: once per process)."""
    api = server.client()
    present = _image_present(api, image)
    if pull_policy == "never":
        if not present:
            raise SandboxError(f"image {image} is not on docker server {server.name} (pull_policy: never)")
        return
    if present and (pull_policy == "if-missing" or image in server.pulled):
        return
    with server.pull_lock(image):  # one pull per image and server, however many rollouts start
        if image in server.pulled or (pull_policy == "if-missing" and _image_present(api, image)):
            return
        _pull(server, api, image, present)


def _pull(server: DockerServer, api: Any, image: str, present: bool) -> None:
    repo, tag = _split_image(image)
    try:
        # The engine answers 200 and reports failures inside the progress stream: read it all.
        for event in api.pull(repo, tag=tag, stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                raise SandboxError(str(event["error"]))
    except Exception as exc:
        if present:  # 'always' but the registry is unreachable: the local copy will do
            log.warning(
                "could not pull %s on %s, using the present copy: %s", image, server.name, _short(exc)
            )
            server.pulled.add(image)  # tried once; do not try again for every rollout
            return
        raise SandboxError(
            f"cannot pull image {image} on docker server {server.name}: {_short(exc)}"
        ) from exc
    server.pulled.add(image)


def _image_present(api: Any, image: str) -> bool:
    try:
        api.inspect_image(image)
    except Exception as exc:
        if _is_not_found(exc):
            return False
        raise
    return True


def _split_image(image: str) -> tuple[str, str | None]:
    if "@" in image:
        return image, None
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return image, "latest"


def images_needed(instances: Iterable[Instance], env_config: EnvironmentConfig) -> list[str]:
    """The images a dataset needs; a UserError names the first instance that has none."""
    out: list[str] = []
    for inst in instances:
        image = inst.image or env_config.image
        if not image:
            raise UserError(
                f"instance {inst.instance_id} has no 'image' and the config's environment.image is not set"
            )
        if image not in out:
            out.append(image)
    return out


def preflight(servers: list[str] | None, images: Iterable[str], pull_policy: str = "if-missing") -> None:
    """Each server answers a ping and has (or may pull) every image; else one UserError naming it."""
    images = list(images)
    for srv in [get_server(s) for s in servers] if servers else [get_server(None)]:
        try:
            api = srv.client(PROBE_TIMEOUT)
            api.ping()
        except SandboxError as exc:
            raise UserError(str(exc)) from None
        except Exception as exc:
            srv.reset()
            raise UserError(f"docker server {srv.name} does not answer: {_short(exc)}") from None
        for image in images:
            try:
                present = _image_present(api, image)
            except Exception as exc:
                raise UserError(
                    f"docker server {srv.name}: cannot look up image {image}: {_short(exc)}"
                ) from None
            if present:
                continue
            if pull_policy == "never":
                raise UserError(
                    f"image {image} is not on docker server {srv.name} and pull_policy is 'never'"
                )
            try:
                srv.client().inspect_distribution(image)
            except Exception as exc:
                raise UserError(
                    f"image {image} is not on docker server {srv.name} and cannot be pulled: {_short(exc)}"
                ) from None


@dataclass
class CleanupReport:
    server: str
    removed: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def cleanup(
    servers: list[str] | None, run_id: str | None = None, *, include_live: bool = False
) -> list[CleanupReport]:
    """Remove our labelled containers; by default not those of a process still alive on this host."""
    reports: list[CleanupReport] = []
    filters = [f"{LABEL}=1"] + ([f"{LABEL_RUN}={run_id}"] if run_id else [])
    host = socket.gethostname()
    for srv in [get_server(s) for s in servers] if servers else [get_server(None)]:
        rep = CleanupReport(server=srv.name)
        reports.append(rep)
        try:
            api = srv.client()
            found = api.containers(all=True, filters={"label": filters})
        except SandboxError as exc:
            raise UserError(str(exc)) from None
        except Exception as exc:
            raise UserError(f"docker server {srv.name} does not answer: {_short(exc)}") from None
        for c in found:
            cid = c["Id"]
            owner = (c.get("Labels") or {}).get(LABEL_OWNER, "")
            o_host, _, o_pid = owner.rpartition(":")
            if not include_live and o_host == host and o_pid.isdigit() and pid_alive(int(o_pid)):
                rep.skipped_live.append(cid[:12])
                continue
            try:
                api.remove_container(cid, force=True, v=True)
                rep.removed.append(cid[:12])
            except Exception as exc:
                if _is_not_found(exc):
                    continue
                rep.failed.append(f"{cid[:12]}: {_short(exc)}")
    return reports


def gpu_request(spec: str):
    """``gpus: all`` / ``gpus: 2`` / ``gpus: "0,1"`` → a docker DeviceRequest (like ``--gpus``)."""
    from docker.types import DeviceRequest

    spec = str(spec).strip()
    if spec == "all":
        return DeviceRequest(count=-1, capabilities=[["gpu"]])
    if spec.isdigit():
        return DeviceRequest(count=int(spec), capabilities=[["gpu"]])
    ids = spec.removeprefix("device=").split(",")
    return DeviceRequest(device_ids=[i.strip() for i in ids if i.strip()], capabilities=[["gpu"]])


# -- helpers -------------------------------------------------------------------------------------


def _is_not_found(exc: BaseException) -> bool:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status == 404 or type(exc).__name__ in ("NotFound", "ImageNotFound")


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_TIMEOUT = re.compile(r"(Read timed out|Connection timed out|timed out)")


def _short(exc: BaseException) -> str:
    """One line of an exception, without the request URL noise (``Connection refused``)."""
    if isinstance(exc, SandboxError):
        return str(exc)
    text = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    m = _ERRNO.search(text) or _TIMEOUT.search(text)
    if m and ("HTTPConnectionPool" in text or "HTTPSConnectionPool" in text or "fetching server API" in text):
        return m.group(1).strip()
    return text[:300]
