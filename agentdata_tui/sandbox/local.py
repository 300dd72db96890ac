"""The local sandbox: a rollout's commands run on this machine, in a throwaway copy of the repo.

Why it looks like this (DESIGN §4, §6):
- each rollout gets a fresh temporary copy of the instance's ``repo_path`` (or an empty
  folder), git-initialised when it is not a repository already, so ``git diff`` works for the
  agent and for us. The copy is made from the run's template of that ``repo_path`` (made when
  its first sandbox starts, out of every sandbox's reach): one ``cp`` instead of a shell and four
  git processes per sandbox, and without a ``setup_command`` the diff base is hashed once;
- the diff base is the *tree after* ``setup_command``, recorded with ``git add -A &&
  git write-tree`` in a git directory of our own *outside* the working tree (``base.git``
  beside the copy, with its own index and objects): no commit is made, the agent's own ``git``
  view is untouched, its ``git gc --prune=now`` or ``rm -rf .git`` cannot drop the base, new
  files show up in the final diff and setup artefacts do not;
- every command is a fresh interpreter process (``bash -c`` by default: a login shell costs
  ~150 ms of CPU per command here) in its own session, so a timeout kills the whole process
  group, backgrounded children included;
- the environment is built from scratch (PATH, HOME = a temporary home, LANG, TERM and the
  config's ``env``): the caller's variables — API keys above all — never reach a command;
- with bubblewrap installed every command — the agent's, the evaluation's, and our own git
  bookkeeping once the copy exists (a repo's ``.git/config`` or ``.gitattributes`` can name
  commands git runs) — runs isolated (``isolation.py``): its own PID namespace and ``/proc``, no
  capabilities, the system read-only, only the copy, its home and its ``/tmp`` writable,
  rlimits from the config. ``isolated`` says whether it did. The sandbox keeps one such
  namespace for its life, and a small launcher inside it starts each command (``launcher.py``):
  a fork and exec instead of a namespace per command, with nothing of a command outliving it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from pathlib import Path

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.errors import UserError
from agentdata_tui.interfaces import DiffUnavailable, ExecResult, SandboxError
from agentdata_tui.sandbox.isolation import bwrap_path, bwrap_prefix, rlimit_prefix, visible_inside
from agentdata_tui.sandbox.launcher import Launched, Launcher, LauncherUnavailable, launcher_enabled

log = logging.getLogger("agentdata_tui.sandbox")

PREFIX = "agentdata-sbx-"
DIFF_LIMIT = 1_000_000  # bytes of patch kept; larger diffs are cut and flagged
# The one cut of a command's output (every sandbox's collector uses it): a memory bound, not a
# prompt policy. Templates get the output raw and truncate it themselves, as in mini-swe-agent;
# only a flood past 1 MiB loses its middle (flagged ``output_truncated``).
OUTPUT_HEAD = 512 * 1024  # bytes of command output kept from the start ...
OUTPUT_TAIL = 512 * 1024  # ... and from the end; the middle of a flood is dropped
SETUP_TIMEOUT_MIN = 600.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Interpreter caches that running tests leaves behind: never part of a patch.
DIFF_EXCLUDES = "__pycache__/\n*.py[cod]\n.pytest_cache/\n.mypy_cache/\n.ruff_cache/\n"


def scrubbed_env(home: str | os.PathLike[str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment a sandboxed command sees: never the caller's variables."""
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": str(home),
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "TERM": "dumb",
    }
    env.update(extra or {})
    return env


def timeout_result(command: str, timeout: float, output: str, **fields) -> ExecResult:
    """A timed-out command as mini-swe-agent 2.x reports it: returncode -1 and ``exception_info``
    (its observation templates show it); the partial output is kept."""
    seconds = int(timeout) if float(timeout).is_integer() else timeout
    info = f"An error occurred while executing the command: Command '{command}' timed out after {seconds} seconds"
    return ExecResult(output=output, returncode=-1, timed_out=True, exception_info=info, **fields)


# Shell startup files a config names for its container image (mini-swe-agent's swebench.yaml:
# BASH_ENV=/root/.bashrc for conda). Locally they would be this machine's own rc files, whose
# noise lands in every output (a submission then never counts); mini-swe-agent's local
# environment runs ``sh``, which never reads BASH_ENV, so the local sandbox leaves them out.
LOCAL_UNSET_ENV = ("BASH_ENV", "ENV")


def local_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in LOCAL_UNSET_ENV}


class LocalSandbox:
    """A temporary copy of the instance's repo; see the module docstring for the why."""

    kind = "local"

    def __init__(self, instance: Instance, env_config: EnvironmentConfig, context=None) -> None:
        self.instance = instance
        self.config = env_config
        self.context = context
        self.repo_src: Path | None = getattr(context, "repo_dir", None)
        self.root: Path | None = None  # the temporary folder holding everything
        self.work: Path | None = None  # the copy of the repo
        self.cwd: Path | None = None
        self.base_tree: str | None = None
        self._env: dict[str, str] = {}
        self._git_env: dict[str, str] = {}
        self._pgids: set[int] = set()
        self._closed = False
        self._wrap: list[str] = []  # bubblewrap's command line (empty: not isolated)
        self._limits: list[str] = []  # prlimit's, for the commands (not our bookkeeping)
        self._launcher: Launcher | None = None  # the sandbox's one namespace (launcher.py)
        self._launcher_spec: tuple[list[str], str, dict[str, str]] | None = None
        self.isolated = False

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except SandboxError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise SandboxError(f"local sandbox for {self.instance.instance_id}: {exc}") from exc

    def _start(self) -> None:
        # The pid in the name lets a later run remove what a killed one left (sweep_orphans).
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        with _LIVE_LOCK:
            _LIVE.add(self)
        self.work = self.root / "repo"
        home = self.root / "home"
        if self.repo_src is not None and not self.repo_src.is_dir():
            raise SandboxError(f"repo_path of {self.instance.instance_id} is not a folder: {self.repo_src}")
        self._env = scrubbed_env(home, local_env(self.config.env))
        # git for our own bookkeeping: no system/global config of the caller; the g() helper
        # (see _sh) points at our own git directory, base.git, outside the working tree.
        self._git_env = bookkeeping_env(home, self.root)
        snapshot_now = not self.instance.setup_command
        want_base = getattr(self.context, "diff_base", True)
        # The copy, git-initialised, with base.git (and the diff base when no setup_command
        # changes the tree first): from the run's template of a small repo_path (one copy
        # command instead of a shell and four git processes, the base hashed once), made here
        # for a large one (a template would be one more copy of it on disk).
        snapshot = snapshot_now and want_base
        if templated(self.repo_src):
            template = _template(self.repo_src, snapshot=snapshot)
            template.copy_to(self.root)
            base = template.base_tree
        else:
            base = prepare_tree(self.root, self.repo_src, snapshot=snapshot, bare=want_base)
        self.cwd = self._resolve_cwd()
        self._isolate()
        if not snapshot_now:
            timeout = max(SETUP_TIMEOUT_MIN, self.config.timeout)
            res = self.execute(self.instance.setup_command or "", timeout=timeout)
            if res.timed_out or res.returncode != 0:
                why = "timed out" if res.timed_out else f"exited with {res.returncode}"
                tail = res.output[-500:].strip()
                raise SandboxError(f"setup_command of {self.instance.instance_id} {why}: {tail}")
            if want_base:
                out = self._sh(f'cd "$ROOT/repo" && {_SNAPSHOT}')
                self.base_tree = out.decode().strip().splitlines()[-1]
        elif want_base:
            self.base_tree = base

    def _resolve_cwd(self) -> Path:
        """The folder commands run in: it must exist in the copy, never a silent stand-in."""
        assert self.work is not None
        rel = self.instance.cwd or self.config.cwd or ""
        if not rel:
            return self.work
        iid = self.instance.instance_id
        work = self.work.resolve()
        cwd = (work / rel).resolve()  # an absolute rel stays itself
        if not cwd.is_relative_to(work):
            if os.path.isabs(rel):
                raise SandboxError(
                    f"cwd '{rel}' of {iid} does not exist in the local sandbox (a copy of repo_path): "
                    "an absolute cwd names a folder in a container image; use a docker sandbox, or set "
                    "the instance's cwd / environment.cwd relative to the repository ('' = its root)"
                )
            raise SandboxError(f"cwd '{rel}' of {iid} leaves the repository")
        if not cwd.is_dir():
            raise SandboxError(
                f"cwd '{rel}' of {iid} does not exist in the local sandbox's copy of the repository"
            )
        return cwd

    def _isolate(self) -> None:
        """From here on every command runs under bubblewrap (when installed) and the rlimits."""
        assert self.root is not None and self.cwd is not None
        try:
            self._limits = rlimit_prefix(self.config)
        except UserError as exc:
            raise SandboxError(str(exc)) from None
        bwrap = bwrap_path()
        if bwrap:
            # Only the folders that exist inside: the caller's venv or ~/.pyenv are not there.
            inside = [
                d for d in self._env.get("PATH", "").split(":") if d and visible_inside(Path(d), self.root)
            ]
            self._env["PATH"] = ":".join(inside) or DEFAULT_PATH
        interpreter = self.config.effective_interpreter()[0]
        if shutil.which(interpreter, path=self._env["PATH"]) is None:
            raise SandboxError(
                f"cannot run {interpreter!r}: not found in the sandbox (environment.interpreter)"
            )
        if bwrap:
            self._wrap = bwrap_prefix(bwrap, self.root, self.root / "tmp", self.cwd)
            self.isolated = True
            python = shutil.which("python3", path=self._env["PATH"]) if launcher_enabled() else None
            if python and visible_inside(Path(python), self.root):
                held = bwrap_prefix(bwrap, self.root, self.root / "tmp", self.cwd, die_with_parent=False)
                env = {"PATH": self._env["PATH"], "LANG": "C.UTF-8"}
                self._launcher_spec = (held, python, env)
                self._launcher = self._new_launcher()

    def _new_launcher(self) -> Launcher | None:
        """The sandbox's namespace with its launcher; None: commands each get their own bubblewrap."""
        if self._launcher_spec is None or self._closed:
            return None
        try:
            return Launcher.start(*self._launcher_spec)
        except LauncherUnavailable as exc:
            log.info("local sandbox of %s: one bubblewrap per command (%s)", self.instance.instance_id, exc)
            self._launcher_spec = None
            return None

    def _launch(
        self, argv: list[str], env: dict[str, str], *, separate_stderr: bool = False
    ) -> Launched | None:
        """Start a command in the sandbox's namespace (a new one if a command killed the last);
        None when there is none (the caller runs it under its own bubblewrap)."""
        for _ in range(2):
            launcher = self._launcher
            if launcher is None or self.cwd is None:
                return None
            if launcher.dead:
                self._launcher = launcher = self._new_launcher()
                if launcher is None:
                    return None
            try:
                return launcher.spawn(argv, env, str(self.cwd), separate_stderr=separate_stderr)
            except LauncherUnavailable as exc:
                if not launcher.answered:  # it never came up here: one bubblewrap per command
                    log.info(
                        "local sandbox of %s: one bubblewrap per command (%s)", self.instance.instance_id, exc
                    )
                    self._launcher = self._launcher_spec = None
                    return None
                continue  # it died between two commands: once more with a new one
            except OSError as exc:
                raise SandboxError(str(exc)) from exc
        raise SandboxError(f"the local sandbox of {self.instance.instance_id} keeps losing its namespace")

    def close(self) -> None:
        """Kill whatever the commands left running, then remove the folder. Idempotent."""
        self._closed = True
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self._launcher is not None:  # its namespace, and every process in it
            self._launcher.close()
        for pgid in list(self._pgids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self._pgids.clear()
        if self.root is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["rm", "-rf", str(self.root)], stdin=subprocess.DEVNULL, capture_output=True, timeout=600
                )
            if self.root.exists():  # rm missing or refused: the slow way
                shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> LocalSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def template_env(self) -> dict[str, str]:
        """The environment variables templates see: the commands' own, scrubbed ones."""
        return dict(self._env or scrubbed_env("", self.config.env))

    # -- commands ------------------------------------------------------------------
    def execute(self, command: str, timeout: float | None = None) -> ExecResult:
        if self._closed or self.cwd is None:
            raise SandboxError("the sandbox is closed or was never started")
        timeout = self.config.timeout if timeout is None else timeout
        core = [*self._limits, *self.config.effective_interpreter(), command]
        t0 = time.monotonic()
        proc: subprocess.Popen[bytes] | Launched | None = self._launch(core, self._env)
        if proc is None:
            argv = [*self._wrap, *core]
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=self.cwd,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group (and session): a timeout kills them all
                    close_fds=True,
                )
            except OSError as exc:
                raise SandboxError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from exc
            self._pgids.add(proc.pid)
        try:
            output, truncated, timed_out = _collect(proc, t0 + timeout)
        finally:
            if proc.returncode is None:
                _kill(proc)
                proc.wait()
        if isinstance(proc, subprocess.Popen) and (timed_out or not _group_alive(proc.pid)):
            # The group is gone; nothing of it needs killing at close().
            self._pgids.discard(proc.pid)
        elapsed = round(time.monotonic() - t0, 4)
        if timed_out:
            return timeout_result(command, timeout, output, exec_time_s=elapsed, output_truncated=truncated)
        return ExecResult(
            output=output, returncode=proc.returncode, exec_time_s=elapsed, output_truncated=truncated
        )

    def put_file(self, name: str, data: bytes) -> str:
        """Write ``data`` to a new file in the sandbox's private folder (removed with the sandbox,
        never part of the repo) and return its path as the sandbox's commands see it. A plain
        host-side write: no command runs."""
        if self._closed or self.root is None:
            raise SandboxError("the sandbox is closed or was never started")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"put_file: a plain file name is expected, got {name!r}")
        path = self.root / name
        try:
            with open(path, "xb") as fh:
                fh.write(data)
        except OSError as exc:
            raise SandboxError(f"cannot write {name} into the sandbox: {exc.strerror or exc}") from exc
        return str(path)  # the root is bound at the same path inside the isolation

    # -- diff ----------------------------------------------------------------------
    def _sh(self, script: str, **env: str) -> bytes:
        """Run a bookkeeping script (``sh -c``, git env); its stdout, or SandboxError."""
        argv = ["sh", "-c", _G + script]
        full_env = {**self._git_env, **env}
        try:
            launched = self._launch(argv, full_env, separate_stderr=True)
            if launched is not None:
                res = _communicate(launched, 600)
            else:
                res = subprocess.run(
                    [*self._wrap, *argv],
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=600,
                )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(f"local sandbox of {self.instance.instance_id}: {exc}") from exc
        if res.returncode != 0:
            msg = res.stderr.decode("utf-8", "replace").strip()[-300:]
            raise SandboxError(
                f"local sandbox of {self.instance.instance_id}: {msg or f'exit {res.returncode}'}"
            )
        return res.stdout

    def diff(self) -> tuple[str, bool]:
        """The patch from the post-setup tree to now, new files included; cut at 1 MB."""
        if self._closed or self.base_tree is None:
            raise SandboxError("the sandbox is closed or was never started")
        try:
            out = self._sh(
                'cd "$ROOT/repo" && g add -A -- . && g diff --cached --binary --no-color --no-ext-diff "$BASE"',
                BASE=self.base_tree,
            )
        except SandboxError:
            self._check_base()
            raise
        return cut_patch(out.decode("utf-8", "replace"))

    def _check_base(self) -> None:
        """After a failing diff: was the base destroyed (the agent's doing) rather than the sandbox broken?"""
        try:
            self._sh('g cat-file -e "$BASE^{tree}"', BASE=self.base_tree or "")
        except SandboxError:
            raise DiffUnavailable(
                f"the diff base of {self.instance.instance_id} is gone (the agent's commands removed "
                f"{self.root}/base.git): no patch can be taken"
            ) from None


# The tree after setup, recorded in our own git directory (no commit is made).
_SNAPSHOT = "g add -A -- . && g write-tree"
# Our git bookkeeping's helper: our own git directory, base.git, beside the copy.
_G = (
    'g() { GIT_DIR="$ROOT/base.git" GIT_WORK_TREE="$ROOT/repo" '
    'git -c "core.excludesFile=$ROOT/diff-excludes" -c core.quotepath=off -c core.bare=false "$@"; }; '
)


def bookkeeping_env(home: str | os.PathLike[str], root: str | os.PathLike[str]) -> dict[str, str]:
    """Our own git's environment: no system or global config of the caller's."""
    env = scrubbed_env(home)
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "ROOT": str(root)})
    return env


class _Template:
    """What every sandbox of one ``repo_path`` starts as: ``repo/`` (the copy, git-initialised
    when it is not a repository: a ``.git`` *file*, pointing into another repository, is
    removed, never written through), ``home/``, ``tmp/``, ``diff-excludes`` and ``base.git``
    (with ``snapshot``: the diff base recorded in it, ``base_tree``). Made once per run from
    the trusted source, outside every sandbox (no sandbox binds it), then copied."""

    def __init__(self, src: Path | None, snapshot: bool) -> None:
        self.src = src
        self.snapshot = snapshot
        self.path: Path | None = None
        self.base_tree: str | None = None
        self.users = 0  # copies in progress (an evicted template goes once they are done)
        self.evicted = False
        self._ready = threading.Event()
        self.error: SandboxError | None = None

    def build(self) -> None:
        try:
            path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-template-"))
            self.path = path
            self.base_tree = prepare_tree(path, self.src, snapshot=self.snapshot)
        except SandboxError as exc:
            self.error = exc
            self.remove()
        finally:
            self._ready.set()

    def copy_to(self, root: Path) -> None:
        """The template's contents into ``root`` (an empty folder): one ``cp`` process."""
        self._ready.wait()
        if self.error is not None:
            raise SandboxError(str(self.error))
        assert self.path is not None
        try:
            _host_run(
                ["cp", "-a", "--reflink=auto", f"{self.path}/.", f"{root}/"],
                f"copying {self._what} into the sandbox",
            )
        finally:
            _release(self)

    @property
    def _what(self) -> str:
        return str(self.src) if self.src is not None else "an empty repo"

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def prepare_tree(root: Path, src: Path | None, *, snapshot: bool, bare: bool = True) -> str | None:
    """Into the empty folder ``root``: ``repo/`` (a copy of ``src``, git-initialised when it is not
    a repository: a ``.git`` *file*, pointing into another repository, is removed, never written
    through), ``home/``, ``tmp/``, ``diff-excludes``, ``base.git`` (``bare``) and with ``snapshot``
    the diff base recorded in it, whose tree id is returned. One shell: with hundreds of worker
    threads each Python-level file operation waits for the GIL, a script's steps do not."""
    script = (
        'mkdir "$ROOT/home" "$ROOT/repo" "$ROOT/tmp"'
        # "$SRC/." copies the folder's contents even when repo_path is a symlink to it.
        # --reflink=auto: a copy-on-write clone where the file system can (btrfs, xfs).
        + (' && cp -a --reflink=auto "$SRC/." "$ROOT/repo/"' if src is not None else "")
        + ' && printf "%s" "$EXCLUDES" > "$ROOT/diff-excludes" && cd "$ROOT/repo"'
        + " && { [ ! -f .git ] || rm -f .git; } && { [ -d .git ] || git init -q --template=; }"
        + (' && git init -q --bare --template= "$ROOT/base.git"' if bare or snapshot else "")
        + (" && " + _SNAPSHOT if snapshot else "")
    )
    env = {
        **bookkeeping_env(root / "home", root),
        "SRC": str(src.resolve()) if src is not None else "",
        "EXCLUDES": DIFF_EXCLUDES,
    }
    out = _host_run(["sh", "-c", _G + script], f"preparing the copy of {src or 'an empty repo'}", env)
    return out.decode().strip().splitlines()[-1] if snapshot else None


# A repo_path this small is copied from a template (the process start-up of git and the shell
# is what a sandbox's start costs then); a larger one is copied straight into each sandbox, as a
# template would be one more copy of it on disk for each repo in use.
TEMPLATE_MAX_ENTRIES = 2000
TEMPLATE_MAX_BYTES = 64 << 20
_SMALL: dict[str, bool] = {}


def templated(src: Path | None) -> bool:
    """Whether sandboxes of ``src`` start from a template: no src (an empty repo), or a small one
    (counted once per run, stopping at the limits)."""
    if src is None:
        return True
    key = str(src.resolve())
    known = _SMALL.get(key)
    if known is not None:
        return known
    entries = size = 0
    small = True
    for folder, dirs, files in os.walk(key):
        entries += len(dirs) + len(files)
        for name in files:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(folder, name)).st_size
        if entries > TEMPLATE_MAX_ENTRIES or size > TEMPLATE_MAX_BYTES:
            small = False
            break
    _SMALL[key] = small
    return small


def _host_run(argv: list[str], what: str, env: dict[str, str] | None = None) -> bytes:
    """One of our own commands on the host (never a sandbox's): its stdout, or a SandboxError
    saying ``what`` failed and how."""
    try:
        res = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"{what}: {exc}") from exc
    if res.returncode != 0:
        msg = res.stderr.decode("utf-8", "replace").strip()[-300:]
        raise SandboxError(f"{what}: {msg or f'exit {res.returncode}'}")
    return res.stdout


# The run's templates, most recently used last; a few are kept (each is a copy of its repo).
TEMPLATES_KEPT = 8
_TEMPLATES: dict[tuple[str | None, bool], _Template] = {}
_TEMPLATES_LOCK = threading.Lock()


def _template(src: Path | None, *, snapshot: bool) -> _Template:
    """The template of ``src`` (made by the first caller, the others wait for it), counted in
    use until ``copy_to`` is done with it. A failed one is not kept: the next start tries again."""
    key = (str(src.resolve()) if src is not None else None, snapshot)
    evicted: list[_Template] = []
    with _TEMPLATES_LOCK:
        tpl = _TEMPLATES.pop(key, None)
        if tpl is None or tpl.error is not None:
            tpl = _Template(src, snapshot)
            build = True
        else:
            build = False
        _TEMPLATES[key] = tpl  # most recently used last
        tpl.users += 1
        while len(_TEMPLATES) > TEMPLATES_KEPT:
            old = _TEMPLATES.pop(next(iter(_TEMPLATES)))
            old.evicted = True
            if old.users == 0:
                evicted.append(old)
    for old in evicted:
        old.remove()
    if build:
        tpl.build()
        if tpl.error is not None:
            with _TEMPLATES_LOCK:
                if _TEMPLATES.get(key) is tpl:
                    del _TEMPLATES[key]
    return tpl


def _release(tpl: _Template) -> None:
    with _TEMPLATES_LOCK:
        tpl.users -= 1
        gone = tpl.evicted and tpl.users == 0
    if gone:
        tpl.remove()


def remove_templates() -> None:
    """Remove this process's templates (a run's end, exit; a killed run's go with sweep_orphans);
    one a sandbox is still copying goes when that copy is done."""
    with _TEMPLATES_LOCK:
        templates = list(_TEMPLATES.values())
        _TEMPLATES.clear()
        for tpl in templates:
            tpl.evicted = True
        idle = [tpl for tpl in templates if tpl.users == 0]
    for tpl in idle:
        tpl.remove()


atexit.register(remove_templates)


# Every started, not yet closed local sandbox of this process (rollouts and evaluations alike):
# a stop at once (the second Ctrl+C) closes them all before the process exits.
_LIVE: weakref.WeakSet[LocalSandbox] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def close_all() -> int:
    """Close every live local sandbox of this process (their commands killed, folders removed)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for sb in live:
        with contextlib.suppress(Exception):
            sb.close()
    return len(live)


def sweep_patch_files(tmpdir: str | os.PathLike[str] | None = None, older_than_s: float = 3600.0) -> int:
    """Remove ``agentdata-*.patch`` files an interrupted evaluation left in the temp folder."""
    base = Path(tmpdir or tempfile.gettempdir())
    now = time.time()
    removed = 0
    for path in list(base.glob("agentdata-*.patch")) + list(base.glob("agentdata-*.patch.b64")):
        with contextlib.suppress(OSError):
            if path.is_file() and now - path.stat().st_mtime >= older_than_s:
                path.unlink()
                removed += 1
    return removed


def sweep_orphans(tmpdir: str | os.PathLike[str] | None = None) -> int:
    """Remove sandbox folders whose run was killed (their pid is gone), and stop what still runs
    in them (a backgrounded command outlives a SIGKILLed runner). Returns the folders removed."""
    base = Path(tmpdir or tempfile.gettempdir())
    orphans: list[Path] = []
    try:
        entries = list(base.glob(f"{PREFIX}*-*"))
    except OSError:
        return 0
    for path in entries:
        pid_text = path.name[len(PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or not path.is_dir():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            orphans.append(path)
        except PermissionError:  # someone else's live process
            continue
    if not orphans:
        return 0
    roots = tuple(str(p) + os.sep for p in orphans)
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd") + os.sep
        except OSError:
            continue
        if cwd.startswith(roots):
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(proc.name), signal.SIGKILL)
    for path in orphans:
        shutil.rmtree(path, ignore_errors=True)
    return len(orphans)


def cut_patch(patch: str, limit: int = DIFF_LIMIT) -> tuple[str, bool]:
    """Keep at most ``limit`` bytes, ending on a whole line; say whether anything was cut."""
    data = patch.encode("utf-8")
    if len(data) <= limit:
        return patch, False
    head = data[:limit]
    nl = head.rfind(b"\n")
    if nl > 0:
        head = head[: nl + 1]
    return head.decode("utf-8", "ignore"), True


def _collect(proc: subprocess.Popen[bytes] | Launched, deadline: float) -> tuple[str, bool, bool]:
    """Read merged stdout/stderr until EOF and exit, or until the deadline (→ kill the group).

    Memory stays bounded whatever the command prints: the head and the tail are kept.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    head = bytearray()
    tail: deque[bytes] = deque()
    tail_len = 0
    dropped = 0
    timed_out = False
    sel = selectors.PollSelector()  # no descriptor limit, no epoll descriptor per command
    sel.register(fd, selectors.EVENT_READ)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if len(head) < OUTPUT_HEAD:
                take = OUTPUT_HEAD - len(head)
                head += chunk[:take]
                chunk = chunk[take:]
            if chunk:
                tail.append(chunk)
                tail_len += len(chunk)
                while tail_len - len(tail[0]) >= OUTPUT_TAIL:
                    dropped += len(tail[0])
                    tail_len -= len(tail[0])
                    tail.popleft()
        if not timed_out:
            remaining = deadline - time.monotonic()
            try:
                proc.wait(timeout=max(remaining, 0.001))
            except subprocess.TimeoutExpired:  # closed its output but kept running
                timed_out = True
    finally:
        sel.close()
    if timed_out:
        _kill(proc)
        proc.wait()
    proc.stdout.close()
    body = bytes(head)
    rest = b"".join(tail)
    if len(rest) > OUTPUT_TAIL:
        dropped += len(rest) - OUTPUT_TAIL
        rest = rest[-OUTPUT_TAIL:]
    if dropped:
        body += f"\n[... {dropped} bytes of output dropped ...]\n".encode()
    body += rest
    return body.decode("utf-8", "replace"), dropped > 0, timed_out


def _communicate(proc: Launched, timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Both outputs of a launched bookkeeping script, whole (git's own, bounded by the repo)."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    bufs: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    sel = selectors.PollSelector()  # no descriptor limit, no epoll descriptor per command
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill(proc)
                raise subprocess.TimeoutExpired("sh", timeout)
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    bufs[key.fd].append(chunk)
                else:
                    sel.unregister(key.fd)
        proc.wait(max(deadline - time.monotonic(), 0.001))
    except subprocess.TimeoutExpired:
        if proc.returncode is None:
            _kill(proc)
        raise
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    out, err = (b"".join(bufs[fd]) for fd in bufs)
    return subprocess.CompletedProcess(
        ["sh"], proc.returncode if proc.returncode is not None else -9, out, err
    )


def _kill(proc: subprocess.Popen[bytes] | Launched) -> None:
    if isinstance(proc, Launched):
        proc.kill_group()
    else:
        _kill_group(proc.pid)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
