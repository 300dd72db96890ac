"""Docker sandboxes: one container per rollout, on the local daemon or on remote Docker servers.

Why it looks like this (DESIGN §4, issue 4):
- ``environment_class: docker`` talks to the local daemon (``DOCKER_HOST`` or the unix
  socket), ``docker_remote`` to the ``--docker-server HOST:PORT`` endpoints (TLS from
  ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``). With several servers a rollout goes to the one
  with the fewest containers of this process in use.
- The container only sleeps; every command is an exec of the interpreter, wrapped in
  ``timeout -s KILL`` inside the container (the Engine API cannot kill an exec) and bounded on
  the client too: the exec socket is read with a deadline, so a daemon that stops answering or
  a backgrounded process holding the stream open never hangs a rollout.
- The diff base is the tree after ``setup_command``, written with ``git add -A && git
  write-tree`` through a private index (no commit; the agent's git view is untouched).
- Containers are removed whatever happens: ``close()`` is idempotent, live sandboxes sit in a
  registry that :func:`close_all` drains (the runner's SIGTERM/Ctrl+C path, and ``atexit``),
  and ``agentdata-tui cleanup`` finds what a killed process left behind by label.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import math
import select
import shlex
import struct
import tarfile
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.interfaces import DiffUnavailable, ExecResult, SandboxError
from agentdata_tui.sandbox.docker_engine import (  # re-exported: the CLI, runner and TUI use them from here
    CONTROL_TIMEOUT,
    EXEC_TIMEOUT,
    LABEL,
    LABEL_INSTANCE,
    LABEL_OWNER,
    LABEL_ROLLOUT,
    LABEL_RUN,
    PROBE_TIMEOUT,
    REMOVE_TIMEOUT,
    CleanupReport,
    DockerServer,
    _is_not_found,
    _short,
    acquire_server,
    cleanup,
    ensure_image,
    get_server,
    gpu_request,
    images_needed,
    owner_tag,
    parse_servers,
    preflight,
    release_server,
    server_url,
)
from agentdata_tui.sandbox.local import (
    DIFF_EXCLUDES,
    DIFF_LIMIT,
    OUTPUT_HEAD,
    OUTPUT_TAIL,
    cut_patch,
    timeout_result,
)

__all__ = [
    "CONTROL_TIMEOUT",
    "EXEC_TIMEOUT",
    "LABEL",
    "LABEL_INSTANCE",
    "LABEL_OWNER",
    "LABEL_ROLLOUT",
    "LABEL_RUN",
    "PROBE_TIMEOUT",
    "REMOVE_TIMEOUT",
    "CleanupReport",
    "DockerSandbox",
    "DockerServer",
    "acquire_server",
    "cleanup",
    "close_all",
    "ensure_image",
    "get_server",
    "gpu_request",
    "images_needed",
    "live_sandboxes",
    "owner_tag",
    "parse_servers",
    "preflight",
    "release_server",
    "server_url",
]

log = logging.getLogger(__name__)

CLIENT_GRACE = 5.0  # the client-side bound is the in-container timeout plus this
SETUP_TIMEOUT_MIN = 600.0
KEEPALIVE = ["sleep", "2147483647"]  # ~68 years; GNU and busybox sleep both accept it


# -- the live-container registry -------------------------------------------------------------

_LIVE: dict[int, DockerSandbox] = {}
_LIVE_LOCK = threading.Lock()


def live_sandboxes() -> list[DockerSandbox]:
    with _LIVE_LOCK:
        return list(_LIVE.values())


def close_all(max_workers: int = 16) -> int:
    """Remove every container this process still has (shutdown paths). Returns how many."""
    boxes = live_sandboxes()
    if not boxes:
        return 0
    with ThreadPoolExecutor(max_workers=min(max_workers, len(boxes))) as pool:
        list(pool.map(lambda b: b.close(), boxes))
    return len(boxes)


atexit.register(close_all)

# -- the sandbox ---------------------------------------------------------------------------------


class DockerSandbox:
    """One container per rollout; see the module docstring for the why."""

    kind = "docker"

    def __init__(self, instance: Instance, env_config: EnvironmentConfig, context=None) -> None:
        self.instance = instance
        self.config = env_config
        self.context = context
        self.environment_class = (
            getattr(context, "environment_class", None) or env_config.environment_class or "docker"
        )
        self.servers: list[str] = list(getattr(context, "docker_servers", None) or [])
        self.run_id: str = getattr(context, "run_id", "") or ""
        self.rollout_id: str = getattr(context, "rollout_id", "") or uuid.uuid4().hex[:12]
        self.image: str | None = instance.image or env_config.image
        self.cwd: str = instance.cwd or env_config.cwd or ""
        self.server: DockerServer | None = None
        self.container_id: str | None = None
        self.base_tree: str | None = None
        self._tmp: str | None = None  # our scratch folder inside the container
        self._top: str | None = None  # the git work tree the diff is taken in
        self._closed = False
        self._close_lock = threading.Lock()
        self._put: set[str] = set()  # names put_file wrote

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if not self.image:
            raise SandboxError(
                f"instance {self.instance.instance_id} has no 'image' and environment.image is not set"
            )
        if self.environment_class == "docker_remote" and not self.servers:
            raise SandboxError("environment_class docker_remote needs --docker-server HOST:PORT")
        servers = self.servers if self.environment_class == "docker_remote" else []
        self.server = acquire_server(servers)
        with _LIVE_LOCK:
            _LIVE[id(self)] = self
        api = self.server.client()
        self._call(
            "prepare the image", lambda: ensure_image(self.server, self.image, self.config.pull_policy)
        )
        # Read now, not at construction: the runner may tag the context with its run id after making us.
        self.run_id = getattr(self.context, "run_id", "") or self.run_id
        labels = {
            LABEL: "1",
            LABEL_RUN: self.run_id,
            LABEL_INSTANCE: self.instance.instance_id,
            LABEL_ROLLOUT: self.rollout_id,
            LABEL_OWNER: owner_tag(),
        }
        host_config = api.create_host_config(**self._host_options())
        name = f"agentdata-{_slug(self.instance.instance_id)}-{uuid.uuid4().hex[:8]}"
        created = self._call(
            "create a container",
            lambda: api.create_container(
                self.image,
                entrypoint=[KEEPALIVE[0]],
                command=KEEPALIVE[1:],
                labels=labels,
                host_config=host_config,
                name=name,
                detach=True,
            ),
        )
        self.container_id = created["Id"]
        if self._closed:  # close_all() ran while the container was being created
            self._remove_container()
            raise SandboxError("the sandbox was closed while starting")
        self._call("start the container", lambda: api.start(self.container_id))
        if not self.cwd:
            info = self._call("inspect the container", lambda: api.inspect_container(self.container_id))
            self.cwd = (info.get("Config") or {}).get("WorkingDir") or "/"
        # Our scratch folder (private index, excludes). The cwd must exist in the image: an empty
        # stand-in would run the agent, and the tests, somewhere else.
        cwd = shlex.quote(self.cwd)
        for attempt in (1, 2):  # its path must come back: never "" (our files would land in /)
            self._tmp = self._run_internal(
                f'{{ [ -d {cwd} ] || {{ echo "cwd {cwd} does not exist in the image" >&2; exit 3; }}; }} && '
                "mktemp -d /tmp/agentdata-tui.XXXXXX",
                f"checking cwd {self.cwd} of {self.instance.instance_id}",
                workdir="/",
            ).strip()
            if self._tmp.startswith("/tmp/agentdata-tui."):
                break
            if attempt == 2:
                raise SandboxError(f"creating a scratch folder in the container gave {self._tmp[-200:]!r}")
        if self.instance.setup_command:
            res = self.execute(
                self.instance.setup_command, timeout=max(SETUP_TIMEOUT_MIN, self.config.timeout)
            )
            if res.timed_out or res.returncode != 0:
                why = "timed out" if res.timed_out else f"exited with {res.returncode}"
                raise SandboxError(
                    f"setup_command of {self.instance.instance_id} {why}: {res.output[-500:].strip()}"
                )
        if getattr(self.context, "diff_base", True):  # an evaluation's sandbox is never diffed
            self._init_diff_base()

    def _host_options(self) -> dict[str, Any]:
        cfg = self.config
        opts: dict[str, Any] = {"network_mode": cfg.network or "none"}
        if cfg.cpus:
            opts["nano_cpus"] = int(cfg.cpus * 1e9)
        if cfg.memory:
            opts["mem_limit"] = cfg.memory
        if cfg.pids_limit:
            opts["pids_limit"] = cfg.pids_limit
        if cfg.devices:
            opts["devices"] = [d if ":" in d else f"{d}:{d}:rwm" for d in cfg.devices]
        if cfg.gpus:
            opts["device_requests"] = [gpu_request(cfg.gpus)]
        return opts

    def close(self) -> None:
        """Remove the container (idempotent, never raises; failures are left for ``cleanup``)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._remove_container()
        finally:
            with _LIVE_LOCK:
                _LIVE.pop(id(self), None)
            if self.server is not None:
                release_server(self.server)

    def _remove_container(self) -> None:
        if not self.container_id or self.server is None:
            return
        cid = self.container_id
        try:
            self.server.client(REMOVE_TIMEOUT).remove_container(cid, force=True, v=True)
        except Exception as exc:
            if not _is_not_found(exc) and "already in progress" not in str(exc):
                log.warning(
                    "could not remove container %s on %s (agentdata-tui cleanup removes it): %s",
                    cid[:12],
                    self.server.name,
                    _short(exc),
                )

    def __enter__(self) -> DockerSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands ------------------------------------------------------------------------
    def execute(self, command: str, timeout: float | None = None) -> ExecResult:
        if self._closed or self.container_id is None:
            raise SandboxError("the sandbox is closed or was never started")
        timeout = self.config.timeout if timeout is None else timeout
        argv = ["sh", "-c", _RUN_TIMED, "sh", *self.config.effective_interpreter(), command]
        t0 = time.monotonic()
        out = _Output(keep_stderr=False)
        exit_code, timed_out = self._exec(argv, timeout, out)
        elapsed = time.monotonic() - t0
        measured = _measured_time(out.stderr_text())
        if timed_out or (exit_code == 137 and elapsed >= timeout - 0.5):
            return timeout_result(
                command, timeout, out.text(), exec_time_s=round(elapsed, 4), output_truncated=out.truncated
            )
        if exit_code is None or exit_code == 137:
            self._check_alive()
        return ExecResult(
            output=out.text(),
            returncode=-1 if exit_code is None else exit_code,
            exec_time_s=round(measured if measured is not None else elapsed, 4),
            output_truncated=out.truncated,
        )

    def put_file(self, name: str, data: bytes) -> str:
        """Write ``data`` to a new file in our private folder in the container (removed with the
        container, never part of the repo) and return its path there. One Engine API call
        (put_archive), no exec: no shell, no command line to fit the data in."""
        if self._closed or self.container_id is None or self._tmp is None or self.server is None:
            raise SandboxError("the sandbox is closed or was never started")
        if not name or "/" in name or name.startswith(".") or "\0" in name:
            raise ValueError(f"put_file: a plain file name is expected, got {name!r}")
        if name in self._put:
            raise SandboxError(f"cannot write {name} into the sandbox: it exists")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        api = self.server.client(EXEC_TIMEOUT)
        done = self._call(
            f"write {name} into the container",
            lambda: api.put_archive(self.container_id, self._tmp, buf.getvalue()),
        )
        if done is False:
            raise SandboxError(f"docker server {self.server.name}: cannot write {name} into the container")
        self._put.add(name)
        return f"{self._tmp.rstrip('/')}/{name}"

    def _exec(
        self, argv: list[str], timeout: float, out: _Output, *, workdir: str | None = None
    ) -> tuple[int | None, bool]:
        """Run ``argv`` under ``timeout -s KILL`` in the container; returns (exit code, timed out)."""
        assert self.server is not None and self.container_id is not None
        api = self.server.client(EXEC_TIMEOUT)
        probe = self.server.client(PROBE_TIMEOUT)
        wrapped = ["timeout", "-s", "KILL", str(max(1, math.ceil(timeout))), *argv]
        exec_id = self._call(
            "start a command",
            lambda: api.exec_create(
                self.container_id,
                wrapped,
                workdir=workdir or self.cwd,
                environment=dict(self.config.env),
                stdout=True,
                stderr=True,
                stdin=False,
                tty=False,
            )["Id"],
        )
        sock = self._call("start a command", lambda: api.exec_start(exec_id, socket=True))
        deadline = time.monotonic() + timeout + CLIENT_GRACE
        try:
            timed_out = self._pump(sock, exec_id, probe, deadline, out)
        finally:
            _close_socket(sock)
        if timed_out:
            return None, True
        while True:  # the stream ended; the exit code is there once the exec has finished
            info = self._call("read a command's exit code", lambda: probe.exec_inspect(exec_id))
            if not info.get("Running"):
                return info.get("ExitCode"), False
            if time.monotonic() >= deadline:
                return None, True
            time.sleep(0.05)

    def _pump(self, sock: Any, exec_id: str, probe: Any, deadline: float, out: _Output) -> bool:
        """Read the multiplexed exec stream until EOF, exec exit (+ a short drain) or the deadline.

        Returns True when the deadline passed. The daemon keeps the stream open while a
        backgrounded child holds stdout; when the stream is idle we ask whether the exec ended.
        """
        raw = getattr(sock, "_sock", sock)
        frames = _Demux(out)
        frames.feed(_buffered(sock, raw))  # output that came with the response's headers
        finished_at: float | None = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                return True
            if finished_at is not None and now - finished_at > 0.3:
                return False
            wait = min(deadline - now, 1.0 if finished_at is None else 0.1)
            pending = getattr(raw, "pending", lambda: 0)()
            try:
                ready = pending or select.select([raw], [], [], wait)[0]
            except (OSError, ValueError) as exc:
                raise self._lost(exc) from exc
            if not ready:
                if finished_at is None:
                    info = self._call("poll a command", lambda: probe.exec_inspect(exec_id))
                    if not info.get("Running"):
                        finished_at = time.monotonic()
                continue
            try:
                chunk = raw.recv(65536)
            except (TimeoutError, BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise self._lost(exc) from exc
            if not chunk:
                return False
            frames.feed(chunk)

    def _check_alive(self) -> None:
        """A SIGKILL exit may mean the container itself was killed from outside: look (briefly)."""
        assert self.server is not None
        probe = self.server.client(PROBE_TIMEOUT)
        end = time.monotonic() + 1.0
        while True:
            try:
                state = probe.inspect_container(self.container_id).get("State") or {}
            except Exception as exc:
                if _is_not_found(exc):
                    raise SandboxError(
                        f"container {self.container_id[:12]} was removed from outside"
                    ) from None
                raise self._lost(exc) from exc
            if not state.get("Running"):
                raise SandboxError(
                    f"container {self.container_id[:12]} on {self.server.name} stopped "
                    f"(status {state.get('Status')}, exit {state.get('ExitCode')}): killed from outside?"
                )
            if time.monotonic() >= end:
                return
            time.sleep(0.1)

    # -- diff ----------------------------------------------------------------------------
    def _git_script(self, body: str) -> str:
        """``body`` with ``git()`` running git on our own git directory ``<tmp>/base.git`` (its
        index and objects outside the working tree: the agent's ``git gc`` or ``rm -rf .git``
        cannot drop the diff base) and ``xgit()`` on the container's repository as it is."""
        tmp = shlex.quote(self._tmp or "/tmp")
        top = shlex.quote(self._top) if self._top else '"$top"'
        opts = (
            # checkStat=minimal / trustctime=false: files copied into a container keep their
            # mtimes but not their inodes, so the image's index still tells what is unchanged
            # and a large repository is not re-hashed whole.
            "-c safe.directory='*' -c core.quotepath=off -c core.checkStat=minimal -c core.trustctime=false "
            f"-c core.excludesFile={tmp}/excludes"
        )
        return (
            f'xgit() {{ command git {opts} "$@"; }}; '
            f"git() {{ GIT_DIR={tmp}/base.git GIT_WORK_TREE={top} GIT_INDEX_FILE={tmp}/index "
            f'command git {opts} -c core.bare=false "$@"; }}; {body}'
        )

    def _run_internal(
        self, script: str, what: str, *, limit: int | None = None, workdir: str | None = None
    ) -> str:
        """Our own bookkeeping command (sh, stdout only); a failure is a SandboxError."""
        out = _Output(head=limit or OUTPUT_HEAD, tail=0 if limit else OUTPUT_TAIL, keep_stderr=False)
        timeout = max(SETUP_TIMEOUT_MIN, self.config.timeout)
        code, timed_out = self._exec(["sh", "-c", script], timeout, out, workdir=workdir)
        if timed_out or code != 0:
            why = "timed out" if timed_out else f"exited with {code}"
            raise SandboxError(f"{what} in the container {why}: {out.stderr_text()[-300:].strip()}")
        return out.text()

    def _init_diff_base(self) -> None:
        tmp = shlex.quote(self._tmp)
        excludes = shlex.quote(DIFF_EXCLUDES)
        script = self._git_script(
            f"set -e; printf %s {excludes} > {tmp}/excludes; "
            # Not a repository: make one in cwd — but never index a whole filesystem.
            'top=$(xgit rev-parse --show-toplevel 2>/dev/null) || { [ "$(pwd)" != / ] || '
            '{ echo "cwd / is not in a git repository: set the instance\'s cwd or environment.cwd" >&2; '
            'exit 3; }; xgit init -q; top=$(pwd); }; cd "$top"; '
            # Our git directory borrows the repository's objects only while the base is recorded
            # (the image's index spares re-hashing unchanged files), then keeps its own copy.
            'objs=$(xgit rev-parse --git-path objects); case "$objs" in /*) ;; *) objs="$top/$objs";; esac; '
            'idx=$(xgit rev-parse --git-path index); case "$idx" in /*) ;; *) idx="$top/$idx";; esac; '
            f"command git init -q --bare {tmp}/base.git >&2; "
            f'[ ! -d "$objs" ] || echo "$objs" > {tmp}/base.git/objects/info/alternates; '
            f'[ ! -f "$idx" ] || cp "$idx" {tmp}/index; '
            "git add -A -- . >&2; tree=$(git write-tree); "
            f'git rev-list --objects "$tree" | git pack-objects -q {tmp}/base.git/objects/pack/pack >/dev/null; '
            f"rm -f {tmp}/base.git/objects/info/alternates; "
            'echo "$top"; echo "$tree"'
        )
        lines = [ln for ln in self._run_internal(script, "recording the diff base").splitlines() if ln]
        if len(lines) < 2:
            raise SandboxError("recording the diff base in the container gave no tree")
        self._top, self.base_tree = lines[-2], lines[-1]

    def diff(self) -> tuple[str, bool]:
        """The patch from the post-setup tree to now, new files included; cut at 1 MB."""
        if self._closed or self.base_tree is None or self._top is None:
            raise SandboxError("the sandbox is closed or was never started")
        tmp = shlex.quote(self._tmp or "/tmp")
        # The patch goes to a file first: a failing `git diff` is an error, never an empty patch
        # (a pipe into head would hide its exit status; sh has no pipefail).
        script = self._git_script(
            f"set -e; cd {shlex.quote(self._top)}; git add -A -- . >&2; "
            f"git diff --cached --binary --no-color --no-ext-diff {self.base_tree} > {tmp}/patch; "
            f"head -c {DIFF_LIMIT + 1} {tmp}/patch; rm -f {tmp}/patch"
        )
        try:
            out = self._run_internal(script, "git diff", limit=DIFF_LIMIT + 1)
        except SandboxError:
            self._check_base()
            raise
        return cut_patch(out)

    def _check_base(self) -> None:
        """After a failing diff: was the base destroyed (the agent's doing) rather than the sandbox broken?"""
        try:
            self._run_internal(
                self._git_script(f"git cat-file -e {self.base_tree}^{{tree}}"), "checking the diff base"
            )
        except SandboxError as exc:
            if "exited with" not in str(exc):  # the container itself is gone: a sandbox error
                raise
            raise DiffUnavailable(
                f"the diff base of {self.instance.instance_id} is gone (the agent's commands removed "
                f"{self._tmp}/base.git): no patch can be taken"
            ) from None

    # -- errors --------------------------------------------------------------------------
    def _call(self, what: str, fn):
        """Run one Engine API call; any failure becomes a SandboxError naming the server."""
        try:
            return fn()
        except SandboxError:
            raise
        except Exception as exc:
            name = self.server.name if self.server else "docker"
            if _is_not_found(exc) and self.container_id:
                raise SandboxError(f"container {self.container_id[:12]} on {name} is gone") from None
            if "is not running" in str(exc):
                raise SandboxError(
                    f"container {(self.container_id or '')[:12]} on {name} is not running (killed from outside?)"
                ) from None
            raise SandboxError(f"docker server {name}: cannot {what}: {_short(exc)}") from exc

    def _lost(self, exc: BaseException) -> SandboxError:
        name = self.server.name if self.server else "docker"
        return SandboxError(f"docker server {name}: lost the command's stream: {_short(exc)}")


# The wrapper of every agent/evaluation command: its stderr joins stdout inside the container,
# so the observation keeps the exact order of both (the two exec streams are copied by
# separate goroutines and may interleave); our stderr carries only the command's own start and
# end times, so exec_time_s (benchmarks!) does not include the Engine API's round trips.
_RUN_TIMED = (
    'a=$(date +%s%N 2>/dev/null); "$@" 2>&1; rc=$?; '
    'echo "agentdata-time $a $(date +%s%N 2>/dev/null)" >&2; exit $rc'
)


def _measured_time(stderr: str) -> float | None:
    """Seconds between the wrapper's two timestamps; None when absent (killed) or unparsable."""
    for line in reversed(stderr.splitlines()):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "agentdata-time" and parts[1].isdigit() and parts[2].isdigit():
            return max(0.0, (int(parts[2]) - int(parts[1])) / 1e9)
    return None


# -- exec stream ---------------------------------------------------------------------------------


class _Output:
    """Bounded capture of a command's output: the head and the tail, the middle of a flood dropped."""

    def __init__(self, head: int = OUTPUT_HEAD, tail: int = OUTPUT_TAIL, keep_stderr: bool = True) -> None:
        self.head_limit, self.tail_limit, self.keep_stderr = head, tail, keep_stderr
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.dropped = 0
        self.stderr = bytearray()  # internal commands only: the last bit, for error messages

    def add(self, stream: int, data: bytes) -> None:
        if stream == 2 and not self.keep_stderr:
            self.stderr = (self.stderr + data)[-4096:]
            return
        if len(self.head) < self.head_limit:
            take = self.head_limit - len(self.head)
            self.head += data[:take]
            data = data[take:]
        if not data:
            return
        if not self.tail_limit:
            self.dropped += len(data)
            return
        self.tail.append(data)
        self.tail_len += len(data)
        while self.tail and self.tail_len - len(self.tail[0]) >= self.tail_limit:
            self.dropped += len(self.tail[0])
            self.tail_len -= len(self.tail[0])
            self.tail.popleft()

    @property
    def truncated(self) -> bool:
        return self.dropped > 0 or self.tail_len > self.tail_limit

    def text(self) -> str:
        body = bytes(self.head)
        rest = b"".join(self.tail)
        dropped = self.dropped
        if len(rest) > self.tail_limit:
            dropped += len(rest) - self.tail_limit
            rest = rest[-self.tail_limit :] if self.tail_limit else b""
        if dropped and self.tail_limit:
            body += f"\n[... {dropped} bytes of output dropped ...]\n".encode()
        return (body + rest).decode("utf-8", "replace")

    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")


class _Demux:
    """Docker's multiplexed stream: frames of (stream type, 3 zero bytes, big-endian length)."""

    def __init__(self, out: _Output) -> None:
        self.out = out
        self.buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        while len(self.buf) >= 8:
            stream, size = struct.unpack(">BxxxL", self.buf[:8])
            if len(self.buf) < 8 + size:
                return
            self.out.add(stream, bytes(self.buf[8 : 8 + size]))
            del self.buf[: 8 + size]


def _buffered(sock: Any, raw: Any) -> bytes:
    """The bytes the HTTP client read past exec_start's response headers: docker-py hands out the
    socket *beneath* its buffered reader (docker-py issue 3332), so a command's first output,
    arriving with the headers, would be lost — an empty output, e.g. no scratch folder path.
    Read without waiting: what the buffer holds, else nothing (or what the socket has now)."""
    resp = getattr(sock, "_response", None)
    fp = getattr(getattr(getattr(resp, "raw", None), "_fp", None), "fp", None)
    if fp is None or not hasattr(fp, "read1"):
        return b""
    try:
        timeout = raw.gettimeout()
    except Exception:
        return b""
    try:
        raw.settimeout(0)
        return fp.read1(1 << 20) or b""
    except Exception:  # nothing buffered and the socket would block (TLS says so its own way)
        return b""
    finally:
        with contextlib.suppress(Exception):
            raw.settimeout(timeout)


def _close_socket(sock: Any) -> None:
    with contextlib.suppress(Exception):
        sock.close()
    resp = getattr(sock, "_response", None)
    if resp is not None:
        with contextlib.suppress(Exception):
            resp.close()


# -- helpers -------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "_.-" else "-" for c in text.lower())
    return keep.strip("-._")[:40] or "rollout"
