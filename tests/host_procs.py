"""What runs on this machine, seen from outside every sandbox (for tests that check nothing
a sandboxed command started is left behind)."""

from __future__ import annotations

from pathlib import Path


def host_pids_with(arg: str) -> list[int]:
    """Live (not zombie) processes with ``arg`` as one of their command-line arguments."""
    pids = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (p / "cmdline").read_bytes().split(b"\0")
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if arg.encode() in cmdline and state not in ("Z", "X"):
            pids.append(int(p.name))
    return pids
