"""Is a process alive? The one answer every part of the tool uses (runs, dashboards, cleanup)."""

from __future__ import annotations

import os


def pid_alive(pid: int | None, *, cmdline_contains: bytes | None = None) -> bool:
    """True when ``pid`` names a running process (not a zombie).

    ``cmdline_contains``: also require this in its command line, so that another program that
    got the pid later is not taken for ours. Someone else's process (``EPERM``) counts as alive.
    """
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[-1].split()[0]
        if state in (b"Z", b"X"):
            return False
        if cmdline_contains is not None:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return cmdline_contains in fh.read()
    except (OSError, IndexError):
        return True
    return True
