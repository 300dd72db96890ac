"""One bubblewrap namespace per local sandbox, and its commands started inside it.

Why: a fresh bubblewrap per command costs a new PID and mount namespace each time (their setup
and teardown are serialised in the kernel: ~230 commands/s is all two cores give, ~8 ms of
machine CPU each), which at hundreds of concurrent rollouts — and ~7 commands per evaluation —
was the runner's bottleneck. Instead the sandbox starts one namespace, with the same bubblewrap
settings as before (``isolation.bwrap_prefix``: own PID namespace and ``/proc``, no capabilities,
the system read-only, only the sandbox's folders writable), running a small launcher
(``launcher_inside.py``) on the sandbox's own Python. Each command is then a fork and exec
inside that namespace, started from the runner by a message on a unix socket that carries the
command's output pipes; the runner reads them exactly as it reads a local process's.

What a command sees is what it saw with a namespace of its own: nothing it starts outlives it
(the launcher kills every other process of the namespace once the command has exited), its own
session and process group (a timeout kills the group), no capabilities, no runner process or
secret in ``/proc``. The launcher is the namespace's init (``--as-pid-1``), so a command can
neither kill nor stop it (the kernel drops such signals from inside), and it is not dumpable, so
a command cannot trace it or read its memory. Should it die anyway (an operator, the OOM
killer), the command in flight ends as killed by SIGKILL, the kernel kills the rest of the
namespace, and the next command gets a new one (the sandbox's files are on disk and stay).
When the runner dies, its end of the socket closes, the launcher exits and the kernel kills
what is left in the namespace. Where the sandbox has no Python ≥ 3.9 (or ``AGENTDATA_LAUNCHER=0``), commands run
each under their own bubblewrap as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger("agentdata_tui.sandbox")

_SOURCE = (Path(__file__).with_name("launcher_inside.py")).read_bytes()
# The source comes through a pipe (fd argv[1]), so the launcher's command line stays short.
_BOOT = "import sys; exec(compile(open(int(sys.argv[1]), 'rb').read(), 'agentdata-launcher', 'exec'))"
HELLO_TIMEOUT_S = 60.0  # hundreds of sandboxes starting at once on two cores
KILL_GRACE_S = 5.0  # a kill request unanswered this long: the namespace is killed from outside


class LauncherUnavailable(Exception):
    """The launcher could not start (no suitable Python inside, or it did not answer)."""


def launcher_enabled() -> bool:
    return os.environ.get("AGENTDATA_LAUNCHER", "1").strip().lower() not in ("0", "false", "no", "off")


class Launcher:
    """A sandbox's namespace and the launcher in it. ``spawn`` one command at a time."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket, info_fd: int, python: str) -> None:
        self._proc = proc
        self._sock = sock
        self._info_fd: int | None = info_fd  # bubblewrap's report, read at the first command
        self._python = python
        self._init_pid: int | None = None  # the namespace's pid 1 (the launcher), as this machine numbers it
        self._lock = threading.Lock()  # one command at a time
        self.dead = False
        self.answered = False  # it said hello: it works in this sandbox (a later death is replaced)

    @classmethod
    def start(cls, bwrap_argv: list[str], python: str, env: dict[str, str]) -> Launcher:
        """``bwrap_argv``: bubblewrap's command line up to and including ``--``."""
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as exc:  # e.g. out of descriptors: one bubblewrap per command needs none
            raise LauncherUnavailable(str(exc)) from exc
        try:
            info_r, info_w = os.pipe()
            src_r, src_w = os.pipe()
        except OSError as exc:
            ours.close()
            theirs.close()
            raise LauncherUnavailable(str(exc)) from exc
        os.write(src_w, _SOURCE)  # a few KB: within the pipe's buffer
        os.close(src_w)
        assert bwrap_argv[-1] == "--"
        # --as-pid-1: the launcher is the namespace's init. A command can neither kill nor stop it
        # (the kernel drops signals to an init from inside its namespace that it does not
        # handle), and should it end, the kernel kills everything in the namespace at once.
        argv = [
            *bwrap_argv[:-1],
            "--as-pid-1",
            "--info-fd",
            str(info_w),
            "--",
            python,
            "-I",
            "-S",
            "-c",
            _BOOT,
        ]
        argv += [str(src_r), str(theirs.fileno())]
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(), info_w, src_r),
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            os.close(info_r)
            raise LauncherUnavailable(f"cannot run bubblewrap: {exc}") from exc
        finally:
            theirs.close()
            os.close(info_w)
            os.close(src_r)
        # No waiting here for it to come up (the interpreter's start): the sandbox's start goes on,
        # and the first command reads the hello (_handshake), long after, behind a model call.
        return cls(proc, ours, info_r, python)

    def _handshake(self) -> None:
        """bubblewrap's report and the launcher's hello, once (under the command lock)."""
        if self.answered:
            return
        try:
            assert self._info_fd is not None
            self._init_pid = _read_info(self._info_fd, HELLO_TIMEOUT_S)
            try:
                hello = _recv(self._sock, HELLO_TIMEOUT_S)
            except TimeoutError:
                hello = None
            if not hello or hello[0] != b"hello" or len(hello) != 3:
                raise LauncherUnavailable(f"the launcher did not start on {self._python}")
            if hello[2] != b"1":
                raise LauncherUnavailable("the launcher could not make itself undumpable")
        except BaseException:
            self.close()
            raise
        finally:
            if self._info_fd is not None:
                os.close(self._info_fd)
                self._info_fd = None
        self.answered = True

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str, *, separate_stderr: bool = False
    ) -> Launched:
        """Start ``argv`` inside; its output comes on the returned pipes. Holds the launcher until
        the command's exit status is read (``Launched.wait``) or it is given up (``release``)."""
        if self.dead:
            raise LauncherUnavailable("the launcher is gone")
        self._lock.acquire()
        fds: list[int] = []
        ours: list[int] = []
        try:
            self._handshake()
            out_r, out_w = os.pipe()
            fds.append(out_w)
            ours.append(out_r)
            if separate_stderr:
                err_r, err_w = os.pipe()
                fds.append(err_w)
                ours.append(err_r)
            msg = _run_message(argv, env, cwd)
            try:
                socket.send_fds(self._sock, [msg], fds)
            except (BrokenPipeError, ConnectionResetError):  # it died while idle: a new one
                self._died()
                raise LauncherUnavailable("the launcher is gone") from None
            finally:
                for fd in fds:
                    os.close(fd)
            reply = _recv(self._sock, HELLO_TIMEOUT_S)
            if reply is None:
                self._died()
                raise LauncherUnavailable("the launcher is gone")
            if reply[0] == b"error":
                why = b" ".join(reply[1:]).decode("utf-8", "replace")
                raise OSError(f"cannot run {argv[0]!r}: {why}")
            if reply[0] != b"pid" or len(reply) != 2:
                self._died()
                raise LauncherUnavailable("the launcher answered out of turn")
            pid = int(reply[1])
        except BaseException:
            for fd in ours:
                os.close(fd)
            self._lock.release()
            raise
        return Launched(self, pid, ours[0], ours[1] if separate_stderr else None)

    def _died(self) -> None:
        self.dead = True
        self.close()

    def close(self) -> None:
        """Kill the namespace (everything in it) and the launcher. Idempotent. Closing our end of
        the socket alone ends a launcher that never answered: it exits at its first read."""
        self.dead = True
        with contextlib.suppress(OSError):
            self._sock.close()
        if self._init_pid is None and self._info_fd is not None:  # it may be up: end it now
            with contextlib.suppress(LauncherUnavailable, OSError):
                self._init_pid = _read_info(self._info_fd, 0.0)
        _stop(self._proc, self._init_pid)
        if self._info_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._info_fd)
            self._info_fd = None


class Launched:
    """A command started by the launcher: the subset of ``subprocess.Popen`` the sandbox uses."""

    def __init__(self, launcher: Launcher, pid: int, out_fd: int, err_fd: int | None) -> None:
        self.launcher = launcher
        self.pid = pid  # inside the namespace
        self.stdout = os.fdopen(out_fd, "rb", buffering=0)
        self.stderr = os.fdopen(err_fd, "rb", buffering=0) if err_fd is not None else None
        self.returncode: int | None = None
        self._held = True

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self.launcher._sock
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                reply = _recv(sock, remaining)
            except TimeoutError:
                raise subprocess.TimeoutExpired("launched command", timeout or 0) from None
            except OSError:  # the socket is closed: the sandbox is closing
                reply = None
            if reply is None:  # the launcher died (a command killed it) or was closed
                self.returncode = -signal.SIGKILL
                self.launcher._died()
                break
            if reply[0] == b"exit" and len(reply) == 2:
                self.returncode = int(reply[1])
                break
            self.returncode = -signal.SIGKILL  # out of turn: never trust that namespace again
            self.launcher._died()
            break
        self.release()
        return self.returncode

    def kill_group(self) -> None:
        """SIGKILL the command's process group (the launcher does it inside); the namespace is
        killed from outside when the launcher does not answer."""
        if self.returncode is not None:
            return
        try:
            self.launcher._sock.send(b"kill")
        except OSError:
            self.launcher._died()
            return
        try:
            self.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:  # stopped or stuck: end the whole namespace
            log.warning("sandbox launcher did not answer a kill: its namespace is killed")
            self.launcher._died()
            self.returncode = -signal.SIGKILL
            self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self.launcher._lock.release()


def _run_message(argv: list[str], env: dict[str, str], cwd: str) -> bytes:
    """``run CWD ARGC ARG... KEY=VALUE...``, NUL-separated (what execve takes cannot hold a NUL)."""
    fields = [b"run", os.fsencode(cwd), b"%d" % len(argv), *map(os.fsencode, argv)]
    fields += [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    if any(b"\0" in f for f in fields):
        raise ValueError("embedded null byte")
    return b"\0".join(fields)


def _recv(sock: socket.socket, timeout: float | None) -> list[bytes] | None:
    """One reply, split into its fields; None when the launcher is gone."""
    if timeout is not None and not _readable(sock.fileno(), timeout):
        raise TimeoutError
    data = sock.recv(1 << 16)
    return data.split(b"\0") if data else None


def _readable(fd: int, timeout: float | None) -> bool:
    """poll, not select: with a thousand sandboxes, descriptors pass select's limit of 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))


def _read_info(fd: int, timeout: float) -> int:
    """bubblewrap's ``--info-fd`` JSON: the namespace's pid 1 as this machine numbers it."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        if not _readable(fd, max(0.0, deadline - time.monotonic())):
            raise LauncherUnavailable("bubblewrap did not report its child")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise LauncherUnavailable("bubblewrap exited before starting the launcher")
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except (ValueError, KeyError):
            continue


def _stop(proc: subprocess.Popen[bytes], init_pid: int | None) -> None:
    if proc.poll() is None and init_pid:
        # pid 1 of the namespace: its death takes every process inside with it. Only while
        # bubblewrap still runs (it waits for that child), so the pid cannot have been reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(init_pid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
