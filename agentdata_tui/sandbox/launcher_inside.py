"""The launcher that runs *inside* a local sandbox's bubblewrap namespace (see ``launcher.py``).

This file is not imported by the runner: its source is handed to the sandbox's own Python
(``python3 -I -S -c BOOT SRC_FD SOCKET_FD``: the source comes on a pipe), so it uses only
modules built into the interpreter (starting it costs ~10 ms of CPU, not the ~25 ms that
``json`` and ``socket`` would add) and runs on Python ≥ 3.9.

It is the namespace's init. It starts the commands the runner sends over a unix socket, one at
a time, each a fresh process in its own session with the output pipes the runner passed along;
it reports the pid and the exit status, kills the command's group on request and, once the
command has exited, kills every other process left in the namespace (``kill(-1)``: only this
namespace's processes are visible), so nothing a command starts outlives it. It is not dumpable
(no ptrace, no ``/proc/PID/mem`` or ``environ`` for the commands), and it exits when the
runner's end of the socket closes; the kernel then kills whatever is left in the namespace.

Messages, one per packet, fields separated by NUL bytes. In: ``run CWD ARGC ARG... ENV...``
(``KEY=VALUE`` entries) with one or two file descriptors (stdout, and stderr if separate), and
``kill``. Out: ``hello PID UNDUMPABLE``, ``pid PID`` or ``error TEXT``, ``exit CODE``
(negative: killed by that signal).
"""

import _signal
import _socket
import os
import select
import sys

_SIGDEF = [getattr(_signal, n) for n in ("SIGPIPE", "SIGXFSZ", "SIGXFZ") if hasattr(_signal, n)]


def _undumpable():
    """prctl(PR_SET_DUMPABLE, 0) through ``_ctypes`` directly (``ctypes`` itself costs ~2 ms
    more to import, which every sandbox would pay)."""
    try:
        import _ctypes

        class Int(_ctypes._SimpleCData):
            _type_ = "i"

        class Func(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = Int

        class Libc:
            _handle = _ctypes.dlopen(None, 2)  # RTLD_NOW: this process's own libc

        prctl = Func(("prctl", Libc()))
        return prctl(4, 0, 0, 0, 0) == 0 and prctl(3, 0, 0, 0, 0) == 0  # SET_DUMPABLE 0; GET → 0
    except Exception:
        return False


def _recv(sock):
    """One packet and the descriptors it carries (close-on-exec); (None, []) at end of stream."""
    size = sock.recv_into(bytearray(1), 1, _socket.MSG_PEEK | _socket.MSG_TRUNC)  # its length
    msg, ancdata, _flags, _addr = sock.recvmsg(
        max(size, 1), _socket.CMSG_LEN(4 * 4), _socket.MSG_CMSG_CLOEXEC
    )
    fds = []
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [
                int.from_bytes(data[i : i + 4], sys.byteorder, signed=True)
                for i in range(0, len(data) - 3, 4)
            ]
    for fd in fds:
        os.set_inheritable(fd, False)
    if not msg:
        for fd in fds:
            os.close(fd)
        return None, []
    return msg.split(b"\0"), fds


def _reap_others():
    """Kill everything else in this namespace (the command's background jobs, daemons, escaped
    sessions: ``kill(-1)`` from its init reaches all of them and nothing outside), and reap
    them: as init, orphans are ours to wait for."""
    while True:
        try:  # noqa: SIM105 (contextlib would cost the start-up time)
            os.kill(-1, _signal.SIGKILL)
        except OSError:  # ESRCH: nobody left to signal
            pass
        try:
            os.waitpid(-1, 0)  # SIGKILLed: each dies promptly
        except ChildProcessError:
            return  # no child left at all


def _which(name, path):
    """The PATH search done here, before the spawn: failed execs in the child cost ~0.5 ms each,
    a stat here microseconds. Same rules as execvp (a name with a slash is taken as is)."""
    if b"/" in name:
        return name
    for folder in (path or os.defpath.encode()).split(b":"):
        candidate = os.path.join(folder or b".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return name  # not found: posix_spawn reports it


def _run(sock, fields, fds):
    out = fds[0]
    err = fds[1] if len(fds) > 1 else fds[0]
    try:
        cwd, argc = fields[1], int(fields[2])
        argv = fields[3 : 3 + argc]
        env = dict(e.split(b"=", 1) for e in fields[3 + argc :] if b"=" in e)
        os.chdir(cwd)
        # posix_spawn: a vfork and exec, no copy of this process's page tables; its own session
        # (so its own process group), the signals Python ignores back to their defaults.
        pid = os.posix_spawn(
            _which(argv[0], env.get(b"PATH")),
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, err, 2),
            ],
            setsid=True,
            setsigdef=_SIGDEF,
        )
    except (OSError, ValueError, IndexError) as exc:
        sock.send(b"error\0" + str(getattr(exc, "strerror", None) or exc).encode())
        return True
    finally:
        for fd in set(fds):
            os.close(fd)
    sock.send(b"pid\0%d" % pid)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(sock.fileno(), select.POLLIN)
    try:
        while True:
            ready = [fd for fd, _ev in poller.poll()]
            if pidfd in ready:
                _, status = os.waitpid(pid, 0)
                _reap_others()
                sock.send(b"exit\0%d" % os.waitstatus_to_exitcode(status))
                return True
            req, extra = _recv(sock)
            for fd in extra:
                os.close(fd)
            if req is None:  # the runner is gone: so is everything here
                _reap_others()
                return False
            if req[0] == b"kill":
                try:  # noqa: SIM105
                    os.killpg(pid, _signal.SIGKILL)
                except OSError:
                    pass
    finally:
        os.close(pidfd)


def main(fd):
    # As the namespace's init, a signal without a handler is dropped when a command sends it;
    # Python's own SIGINT handler would let one end us (and with us, the namespace).
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    os.set_inheritable(fd, False)  # never a command's: it would talk to the runner directly
    sock = _socket.socket(fileno=fd)
    if not hasattr(os, "pidfd_open"):
        return 3
    sock.send(b"hello\0%d\0%d" % (os.getpid(), 1 if _undumpable() else 0))
    while True:
        req, fds = _recv(sock)
        if req is None:
            return 0
        if req[0] != b"run" or not fds:
            for fd_ in fds:
                os.close(fd_)
            continue
        if not _run(sock, req, fds):
            return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[2])))  # argv[1]: the source's pipe, read and closed by the boot line
