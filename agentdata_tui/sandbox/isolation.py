"""Isolation of the local sandbox's commands (DESIGN §6): bubblewrap, rlimits, and the opt-in.

A model-written command runs on this machine. What keeps it from the runner's secrets and files:

- a PID namespace of its own with a fresh ``/proc`` (``--unshare-pid --proc /proc``): no
  ``/proc/*/environ`` or ``/proc/*/cmdline`` of the runner (its ``--api-key``, its
  ``OPENAI_API_KEY``, ``AGENTDATA_EVAL_TOKEN``) or of any other process is there to read.
  ``unshare --pid --mount-proc`` alone is not isolation: as root, ``umount /proc`` inside
  reveals the host's. Hence ``--cap-drop ALL`` when running as root (bwrap as root keeps its
  capabilities otherwise): then neither ``umount`` nor ``mount -t proc`` is allowed;
- a read-only view of the system folders only (``/usr``, ``/etc``, ``/bin``, ``/lib``..., as
  mini-swe-agent's bubblewrap environment binds them): the caller's home (``~/.bashrc``,
  ``.env``, credentials), the run folder (``examples.jsonl``, where a reward could be
  rewritten) and other sandboxes are not there at all;
- writable: the sandbox's own folder (the repo copy and a private home) and a private ``/tmp``
  kept for the sandbox's life;
- ``--die-with-parent`` and ``--new-session``: nothing outlives its runner, and no terminal
  input can be injected;
- resource limits from the config as rlimits (``prlimit``): ``memory`` → address space,
  ``pids_limit`` → processes (counted per user: as root, all of root's processes count),
  ``file_size_limit`` → the size of any one file written.

The environment is built by the sandbox from scratch (never the caller's), and nothing secret is
ever on a command line: bubblewrap gets its settings as arguments, the environment by inheritance.

Where bubblewrap is missing, a real model with the local sandbox is refused unless the user opts
in (``--allow-unisolated-local``); the demo's scripted model runs either way.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.errors import UserError

OPT_IN_FLAG = "--allow-unisolated-local"
PACKAGE = "bubblewrap"
# System folders bound read-only (those that exist); usr-merged links are recreated as links.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def bwrap_path() -> str | None:
    """The bubblewrap executable, if installed (``AGENTDATA_BWRAP`` names another one)."""
    explicit = os.environ.get("AGENTDATA_BWRAP")
    if explicit is not None:
        return shutil.which(explicit) if explicit else None  # "" = behave as if missing
    return shutil.which("bwrap")


def parse_size(value: str | None, what: str) -> int | None:
    """``"4g"`` → bytes (k, m, g, t are powers of 1024; a bare number is bytes)."""
    if value is None or str(value).strip() == "":
        return None
    m = _SIZE.match(str(value))
    if not m:
        raise UserError(f"environment.{what}: expected a size like 512m or 4g, got '{value}'")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def rlimit_prefix(config: EnvironmentConfig) -> list[str]:
    """``prlimit --as=.. --nproc=.. --fsize=.. --`` for the configured limits (empty: none)."""
    limits: list[str] = []
    memory = parse_size(config.memory, "memory")
    if memory:
        limits.append(f"--as={memory}")
    if config.pids_limit:
        limits.append(f"--nproc={int(config.pids_limit)}")
    fsize = parse_size(config.file_size_limit, "file_size_limit")
    if fsize:
        limits.append(f"--fsize={fsize}")
    if not limits:
        return []
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise UserError("environment resource limits need 'prlimit' (Debian package util-linux)")
    return [prlimit, *limits, "--"]


def bwrap_prefix(bwrap: str, root: Path, tmp: Path, cwd: Path, *, die_with_parent: bool = True) -> list[str]:
    """The bubblewrap command line that runs a command inside the sandbox rooted at ``root``.

    ``die_with_parent=False`` for the sandbox's long-lived namespace (``launcher.py``): the kernel
    takes "parent" to mean the *thread* that started it, and a pooled thread may end while the
    sandbox lives on; that namespace ends when the runner's end of its socket closes instead."""
    argv = [bwrap, *(["--die-with-parent"] if die_with_parent else []), "--unshare-pid", "--new-session"]
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
    for name in SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), str(host)]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--bind", str(tmp), "/tmp"]
    argv += ["--bind", str(root), str(root)]
    argv += ["--chdir", str(cwd), "--"]
    return argv


def visible_inside(path: Path, root: Path) -> bool:
    """Whether a host path is bound into the isolated sandbox rooted at ``root``."""
    parts = path.parts
    return (len(parts) > 1 and parts[1] in SYSTEM_DIRS) or path.is_relative_to(root)


def check_isolation(environment_class: str, *, real_model: bool, allow_unisolated: bool) -> None:
    """Refuse a real model's commands in an unisolated local sandbox, unless opted in (one line)."""
    if environment_class != "local" or not real_model or allow_unisolated or bwrap_path():
        return
    raise UserError(
        f"the local sandbox needs bubblewrap to keep a real model's commands away from this machine's "
        f"secrets (install the Debian package '{PACKAGE}'), or use a docker sandbox, "
        f"or pass {OPT_IN_FLAG} to run them unisolated"
    )
