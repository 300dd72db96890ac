"""The built-in evaluator (DESIGN §4): grade a patch in a fresh sandbox by the instance's ``eval``.

It only talks to the sandbox through ``execute`` (and ``put_file`` where a sandbox offers it),
so the same code grades patches in a local copy, in a Docker container or in a user's sandbox:
the caller passes a factory that builds a fresh sandbox of the kind the rollout used. The reward rule is the contract users train on, written out once here:

- ``patch_failed`` / ``tests_failed`` / ``timeout`` → reward 0, success false;
- ``correct`` without a benchmark → reward 1, success true;
- with a benchmark → reward = clamp(ln(speedup) / ln(target_speedup), 0, 1),
  success = speedup ≥ min_speedup (status ``correct`` or ``correct_no_speedup``);
- no ``eval`` block → ``not_evaluated``, reward 0, success false;
- an empty patch, or one that is empty once protected paths are dropped → ``no_patch``,
  reward 0, success false, speedup null, nothing run;
- speedups above 10× are flagged for review.

Rewards that cannot be gamed: the patch's changes to protected files (tests, benchmarks;
``protect.py``) are dropped before it is applied, and that filtered patch is the one every test
and benchmark round uses. A speedup counts only when a one-sided Mann–Whitney U test over the
raw repeats says the patched runs are faster (``significance.py``); base and patched runs are
interleaved in a random order each round, so a burst of load cannot favour one side.

Cheap grading (issue 13): a sandbox with ``put_file`` (local, Docker) gets the patch written
into its private folder without a command, and git's numstat reading and the apply run as one
command when git's reading is byte for byte what the evaluator predicted and checked (else the
numstat output is checked here first and the apply runs on its own, as for any other sandbox).
``prepare`` builds an evaluation's fresh sandbox ahead, while the rollout's agent still runs,
and ``evaluate(..., prepared=)`` grades in it (see :class:`PreparedSandbox`).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import random
import shlex
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from agentdata_tui.dataset import EvalSpec, Instance
from agentdata_tui.evaluation.protect import _HUNK, DEFAULT_PROTECTED, filter_patch, is_protected, split_patch
from agentdata_tui.evaluation.significance import ALPHA, mann_whitney
from agentdata_tui.interfaces import EvalResult, ExecResult, Sandbox, SandboxError
from agentdata_tui.sandbox import tag_run

SUSPICIOUS_SPEEDUP = 10.0
OUTPUT_KEEP = 4000  # characters of test/benchmark output kept in evaluation_info
CLOSE_WAIT_S = 10.0  # a prepared sandbox closed while starting: how long its start may go on
_CHUNK = 60_000  # base64 characters per command (well below the kernel's 128 KiB per argument)

SandboxFactory = Callable[[Instance], Sandbox]
log = logging.getLogger("agentdata_tui.evaluation")


def reward_for_speedup(speedup: float, target_speedup: float) -> float:
    """clamp(ln(speedup) / ln(target_speedup), 0, 1)."""
    if not speedup or speedup <= 0 or not math.isfinite(speedup):
        return 0.0
    return max(0.0, min(1.0, math.log(speedup) / math.log(target_speedup)))


def _tail(text: str, limit: int = OUTPUT_KEEP) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters]\n" + text[-limit:]


class EvalTimeout(Exception):
    """One of the evaluation's commands ran past ``eval.timeout``."""


class BuiltinEvaluator:
    """Implements ``interfaces.Evaluator`` with a fresh sandbox per evaluation.

    ``prepare_ahead``: ``prepare`` hands out evaluation sandboxes built ahead (the rollout
    starts one while its agent runs); off, it returns None and every evaluation builds its own.
    """

    def __init__(self, sandbox_factory: SandboxFactory, *, prepare_ahead: bool = False) -> None:
        self.sandbox_factory = sandbox_factory
        self.prepare_ahead = prepare_ahead
        self.concurrency: int | None = None  # gradings at once a runner should allow (None: any)

    def prepare(self, instance: dict[str, Any] | Instance, *, run_id: str = "") -> PreparedSandbox | None:
        """A fresh evaluation sandbox for ``instance``, not started yet: ``schedule(pool)`` starts
        it in the background, ``evaluate(..., prepared=it)`` grades in it, ``close()`` removes
        it when the rollout ends without grading. None when preparing is off or the instance
        has nothing to grade (no ``eval`` commands)."""
        if not self.prepare_ahead:
            return None
        inst = instance if isinstance(instance, Instance) else Instance.model_validate(instance)
        spec = inst.eval
        if spec is None or not (spec.test_command or spec.benchmark_command):
            return None
        sandbox = self.sandbox_factory(inst)
        tag_run(sandbox, run_id)
        return PreparedSandbox(sandbox)

    def evaluate(
        self,
        instance: dict[str, Any] | Instance,
        patch: str,
        *,
        run_id: str = "",
        sample_index: int = 0,
        prepared: PreparedSandbox | None = None,
    ) -> EvalResult:
        """Grade ``patch``; ``prepared`` (from :meth:`prepare`) is used, or closed when nothing
        runs (no patch, no ``eval``): it never outlives the call."""
        try:
            return self._evaluate(instance, patch, run_id, prepared)
        finally:
            if prepared is not None:
                prepared.close()  # a no-op once graded in (its sandbox closed below)

    def _evaluate(
        self, instance: dict[str, Any] | Instance, patch: str, run_id: str, prepared: PreparedSandbox | None
    ) -> EvalResult:
        inst = instance if isinstance(instance, Instance) else Instance.model_validate(instance)
        spec = inst.eval
        if spec is None or not (spec.test_command or spec.benchmark_command):
            return EvalResult(0.0, False, None, {"status": "not_evaluated"})
        info: dict[str, Any] = {"status": "", "patch_bytes": len(patch.encode("utf-8"))}
        patterns = protected_patterns(spec)
        patch, dropped = filter_patch(patch, patterns)
        info["protected_changed"] = dropped
        if dropped:
            info["applied_patch_bytes"] = len(patch.encode("utf-8"))
        if not patch.strip():  # nothing to grade: no sandbox, no tests, no benchmark
            return _no_patch(info)
        sandbox: Sandbox | None = None
        try:
            sandbox = prepared.take() if prepared is not None else None
            if sandbox is None:  # none prepared, or its start failed: a new one, as ever
                sandbox = self.sandbox_factory(inst)
                tag_run(sandbox, run_id)
                sandbox.start()
            return self._grade(sandbox, spec, patch, patterns, info)
        except SandboxError as exc:
            # The grading environment failed, not the patch: the caller records it as an error.
            raise SandboxError(f"evaluation sandbox: {exc}") from exc
        finally:
            if sandbox is not None:
                sandbox.close()

    # -- the steps -------------------------------------------------------------------
    def _grade(
        self, sb: Sandbox, spec: EvalSpec, patch: str, patterns: tuple[str, ...], info: dict[str, Any]
    ) -> EvalResult:
        """Grade the already filtered ``patch``."""
        dropped = info["protected_changed"]
        patch_file = ""
        put_file = getattr(sb, "put_file", None)
        try:
            applied: ExecResult | None = None
            if callable(put_file):  # no command: the file goes with the sandbox
                name = f"agentdata-{uuid.uuid4().hex}.patch"
                patch_file = put_file(name, patch.encode("utf-8"))
                expected = _expected_numstat(patch, patterns)
                if expected is not None:
                    stat_file = put_file(name + ".numstat", expected)
                    applied = self._numstat_and_apply(sb, patch_file, stat_file, spec.timeout)
            else:
                patch_file = self._patch_path(sb, spec.timeout)
                self._upload(sb, patch, patch_file, spec.timeout)
            if applied is None:
                # git's own reading of the filtered patch, checked before it is applied: a section
                # our splitter read differently (a crafted header) must not slip a protected file through.
                seen = self._run(sb, _numstat_cmd(patch_file), spec.timeout)
                if seen.returncode != 0:
                    return _fail("patch_failed", info, seen)
                read = _numstat_paths(seen.output)
                if not read:  # git read no file in a non-empty patch: its answer was lost, not "none"
                    raise SandboxError(f"git's reading of the patch came back empty: {seen.output[-200:]!r}")
                sneaked = sorted({p for p in read if is_protected(p, patterns)})
                if sneaked:
                    info["protected_changed"] = sorted({*dropped, *sneaked})
                    info["status"] = "patch_failed"
                    info["error"] = "the patch touches protected paths in a way that cannot be filtered out"
                    return EvalResult(0.0, False, None, info)
                applied = self._run(sb, _apply_cmd(patch_file), spec.timeout)
            if applied.returncode != 0:
                return _fail("patch_failed", info, applied)
            if spec.test_command:
                tests = self._run(sb, spec.test_command, spec.timeout)
                info["test_returncode"] = tests.returncode
                info["test_output"] = _tail(tests.output)
                if tests.returncode != 0:
                    info["status"] = "tests_failed"
                    return EvalResult(0.0, False, None, info)
            if not spec.benchmark_command:
                info["status"] = "correct"
                return EvalResult(1.0, True, None, info)
            timed = self._bench(sb, spec, patch_file, info)
            if timed is None:
                return EvalResult(0.0, False, None, info)
            return _score(spec, *timed, info)
        except EvalTimeout as exc:
            info["status"] = "timeout"
            info["timeout_command"] = str(exc)
            info["timeout_s"] = spec.timeout
            return EvalResult(0.0, False, None, info)
        finally:
            if patch_file and not callable(put_file):  # also when the upload failed half-way (.b64)
                with contextlib.suppress(Exception):
                    sb.execute(
                        f"rm -f {shlex.quote(patch_file)} {shlex.quote(patch_file + '.b64')}", timeout=30
                    )

    def _run(self, sb: Sandbox, command: str, timeout: float) -> ExecResult:
        res = sb.execute(command, timeout=timeout)
        if res.timed_out:
            raise EvalTimeout(command)
        return res

    def _numstat_and_apply(
        self, sb: Sandbox, patch_file: str, stat_file: str, timeout: float
    ) -> ExecResult | None:
        """git's numstat reading and, only when it is byte for byte ``stat_file`` (the reading
        the evaluator predicted and checked), the apply: one command instead of two.

        Returns the apply's result, or None when the reading differed or could not be compared
        (git failed, no ``cmp``): the caller then runs the numstat and checks it itself, as for
        any sandbox. The branch that ran is told by a last line with a random token, which the
        patch cannot contain (it was written before the token existed) and git does not print."""
        token = f"agentdata-{uuid.uuid4().hex}"
        script = (
            f"if {{ {_numstat_cmd(patch_file)}; }} 2>&1 | cmp -s - {shlex.quote(stat_file)}; then "
            f'{{ {_apply_cmd(patch_file)}; }} 2>&1; rc=$?; printf \'\\n%s:%s\\n\' {token} "$rc"; exit "$rc"; '
            f"fi; printf '\\n%s:unchecked\\n' {token}"
        )
        res = sb.execute(script, timeout=timeout)
        if res.timed_out:  # named as the separate numstat command's timeout is
            raise EvalTimeout(_numstat_cmd(patch_file))
        body, mark, tail = res.output.rpartition(f"\n{token}:")
        answer = tail.strip()
        if not mark or answer == "unchecked":
            return None
        if not answer.lstrip("-").isdigit() or int(answer) != res.returncode:
            raise SandboxError(f"the patch check gave no answer: {res.output.strip()[-200:]}")
        return ExecResult(
            output=body,
            returncode=res.returncode,
            exec_time_s=res.exec_time_s,
            output_truncated=res.output_truncated,
        )

    def _patch_path(self, sb: Sandbox, timeout: float) -> str:
        """Where the patch goes: the sandbox's home when it has a writable one (a local sandbox's
        is inside its own folder, removed with it even when a run is killed), else its tmp."""
        res = self._run(
            sb,
            'd="$HOME"; { [ -n "$d" ] && [ -d "$d" ] && [ -w "$d" ]; } || d="${TMPDIR:-/tmp}"; printf %s "$d"',
            timeout,
        )
        folder = res.output.strip().splitlines()[-1] if res.returncode == 0 and res.output.strip() else "/tmp"
        return f"{folder.rstrip('/')}/agentdata-{uuid.uuid4().hex}.patch"

    def _upload(self, sb: Sandbox, patch: str, name: str, timeout: float) -> None:
        """Write the patch into the sandbox through commands only (works for any Sandbox)."""
        encoded = base64.b64encode(patch.encode("utf-8")).decode("ascii")
        for i in range(0, len(encoded), _CHUNK):
            op = ">" if i == 0 else ">>"
            res = self._run(sb, f"printf '%s' '{encoded[i : i + _CHUNK]}' {op} \"{name}.b64\"", timeout)
            if res.returncode != 0:
                raise SandboxError(f"cannot write the patch into the sandbox: {res.output.strip()[-200:]}")
        res = self._run(sb, f'base64 -d "{name}.b64" > "{name}" && rm -f "{name}.b64"', timeout)
        if res.returncode != 0:
            raise SandboxError(f"cannot decode the patch in the sandbox: {res.output.strip()[-200:]}")

    def _bench(
        self, sb: Sandbox, spec: EvalSpec, patch_file: str, info: dict[str, Any]
    ) -> tuple[list[float], list[float]] | None:
        """Time base and patched code, interleaved in a random order each round (warmups first).

        Interleaving (revert, run base, re-apply, run patched, or the other way round) exposes
        both to the same load; the random order keeps a periodic disturbance (a cron job, the
        first run after a revert warming a cache) from always landing on the same side.
        """
        assert spec.benchmark_command
        base: list[float] = []
        patched: list[float] = []
        order: list[str] = []
        rng = random.Random()
        state = "patched"  # the tests ran on the patched tree
        for round_ in range(spec.warmup + spec.repeats):
            sides = ["base", "patched"]
            rng.shuffle(sides)
            for label in sides:
                if label != state:
                    toggle = self._run(sb, _apply_cmd(patch_file, reverse=label == "base"), spec.timeout)
                    if toggle.returncode != 0:
                        raise SandboxError(f"cannot {'revert' if label == 'base' else 're-apply'} the patch")
                    state = label
                res = self._run(sb, spec.benchmark_command, spec.timeout)
                if res.returncode != 0:
                    _bench_failed(label, res, info)
                    return None
                if round_ >= spec.warmup:
                    (base if label == "base" else patched).append(round(res.exec_time_s, 6))
                    order.append(label[0])
        info["base_times"], info["patched_times"] = base, patched
        info["bench_order"] = "".join(order)  # b/p per timed run, in the order they ran
        info["base_median"] = statistics.median(base)
        info["patched_median"] = statistics.median(patched)
        return base, patched


class PreparedSandbox:
    """An evaluation's fresh sandbox, built ahead while the rollout's agent still runs.

    ``schedule(pool)`` queues its start on ``pool``; ``take()`` hands it to the evaluation
    (waiting for a start in progress; one still queued is started by the caller, never waited
    for behind other rollouts'; None when the background start failed: the evaluation then makes
    a new one); ``close()`` removes it when the rollout ends without grading — also while it is
    starting (after the start, or closed under a start still busy after ``CLOSE_WAIT_S``, which
    ends its setup_command) or queued (it never starts). Idempotent; once taken, the evaluation closes the sandbox itself.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.start_s: float | None = None  # how long its start took, wherever it ran
        self.error: BaseException | None = None  # what the start raised
        self._state = "new"  # new → queued → starting → ready | failed; taken | closed
        self._lock = threading.Lock()
        self._done = threading.Event()

    @property
    def state(self) -> str:
        return self._state

    def schedule(self, pool: Any) -> None:  # anything with submit(fn): runner.workpool.WorkPool
        with self._lock:
            if self._state != "new":
                return
            self._state = "queued"
        try:
            pool.submit(self._queued)
        except RuntimeError:  # the pool is shut down (the run is ending): the evaluation starts it
            with self._lock:
                if self._state == "queued":
                    self._state = "new"

    def _queued(self) -> None:
        with self._lock:
            if self._state != "queued":  # taken by its evaluation, or closed, meanwhile
                return
            self._state = "starting"
        self._start()

    def _start(self) -> None:
        t = time.monotonic()
        try:
            self.sandbox.start()
        except BaseException as exc:
            self.error = exc
        finally:
            self.start_s = round(time.monotonic() - t, 3)
            with self._lock:
                self._state = "failed" if self.error is not None else "ready"
            self._done.set()

    def take(self) -> Sandbox | None:
        """The started sandbox (the caller closes it), or None (its start failed: the caller
        grades in a new one). Started here when its turn in the background has not come yet;
        a failure is then the same as a failure in the background (whether the preparation
        pool got to it first must not change the outcome)."""
        with self._lock:
            state = self._state
            if state in ("new", "queued"):
                self._state = "starting"
            elif state in ("taken", "closed"):
                return None
        if state in ("new", "queued"):
            self._start()
        self._done.wait()
        with self._lock:
            if self._state == "ready":
                self._state = "taken"
                return self.sandbox
        log.warning("the evaluation sandbox prepared ahead failed (a new one grades): %s", self.error)
        self.close()
        return None

    def close(self) -> None:
        with self._lock:
            state = self._state
            if state in ("taken", "closed"):
                return
            if state != "starting":
                self._state = "closed"
        if state == "starting":
            # A start ends by itself in moments (a copy), unless its setup_command is long: past
            # a short wait the sandbox is closed under it, which kills the setup (a stop must not
            # wait minutes), and closed again once the start has ended, for whatever the start
            # made meanwhile (a sandbox's close is idempotent).
            if not self._done.wait(CLOSE_WAIT_S):
                with contextlib.suppress(Exception):
                    self.sandbox.close()
                self._done.wait()
            with self._lock:
                if self._state in ("taken", "closed"):
                    return
                self._state = "closed"
        with contextlib.suppress(Exception):
            self.sandbox.close()


def protected_patterns(spec: EvalSpec) -> tuple[str, ...]:
    """The instance's ``eval.protected_paths`` (``[]`` disables), else the defaults."""
    return DEFAULT_PROTECTED if spec.protected_paths is None else tuple(spec.protected_paths)


def _numstat_cmd(patch_file: str) -> str:
    """Every path git reads in the patch: forward names the targets, reverse the sources of renames."""
    forward = _apply_cmd(patch_file, flags="--numstat -z ")
    return f'{forward} && git apply -R --numstat -z "{patch_file}"'


def _expected_numstat(patch: str, patterns: tuple[str, ...]) -> bytes | None:
    """What ``_numstat_cmd`` prints for the filtered ``patch`` when git reads it as we do —
    plain modifications, additions and deletions of text files under unquoted names — or None
    (renames, copies, binary files, unusual names: no prediction, git's reading is checked the
    usual way). Safe whatever it gets wrong: the apply runs only when git's output equals these
    bytes, and the paths in them are checked here."""
    _, sections = split_patch(patch)
    forward: list[bytes] = []
    reverse: list[bytes] = []
    for section in sections:
        if not section.git_header or not section.lines:
            return None
        path = _plain_git_path(section.lines[0])
        if path is None or section.paths != {path} or is_protected(path, patterns):
            return None
        added = deleted = 0
        old = new = 0
        headers = {"---": 0, "+++": 0}
        for line in section.lines[1:]:
            if old > 0 or new > 0:  # a hunk's body, read by its line counts as the splitter does
                tag = line[:1]
                if tag == "-":
                    deleted, old = deleted + 1, old - 1
                elif tag == "+":
                    added, new = added + 1, new - 1
                elif tag != "\\":
                    old, new = old - 1, new - 1
                continue
            m = _HUNK.match(line)
            if m:
                old = int(m.group(1)) if m.group(1) is not None else 1
                new = int(m.group(2)) if m.group(2) is not None else 1
                continue
            if line.startswith("\\"):
                continue
            head = line[:3]
            if head in headers and line[3:4] == " ":
                headers[head] += 1
                continue
            if not line.startswith(_PLAIN_HEADERS):
                return None  # binary, rename, copy, or anything else: git reads it, not we
        if headers["---"] != headers["+++"] or headers["---"] > 1:
            return None
        forward.append(f"{added}\t{deleted}\t{path}\0".encode())
        reverse.append(f"{deleted}\t{added}\t{path}\0".encode())
    if not forward:
        return None
    # git -R lists the files last to first
    return b"".join(forward) + b"".join(reversed(reverse))


_PLAIN_HEADERS = ("index ", "new file mode ", "deleted file mode ", "old mode ", "new mode ")


def _plain_git_path(line: str) -> str | None:
    """X of ``diff --git a/X b/X`` for a plain name (no quotes, tabs, backslashes), else None."""
    if not line.startswith("diff --git a/") or not line.endswith("\n") or line.endswith("\r\n"):
        return None
    rest = line[len("diff --git ") : -1]
    if (len(rest) - 5) % 2:
        return None
    n = (len(rest) - 5) // 2
    path = rest[2 : 2 + n]
    if rest != f"a/{path} b/{path}" or not path or any(c in path for c in '"\t\\\0') or path.startswith("/"):
        return None
    return path


def _numstat_paths(output: str) -> set[str]:
    """Paths of ``git apply --numstat -z``: "A\tD\tPATH\0", or "A\tD\t\0OLD\0NEW\0" for a rename."""
    paths: set[str] = set()
    fields = output.split("\0")
    i = 0
    while i < len(fields):
        field = fields[i]
        parts = field.split("\t", 2)
        if len(parts) == 3:
            if parts[2]:
                paths.add(parts[2])
                i += 1
            else:  # rename/copy: the two names follow
                paths.update(f for f in fields[i + 1 : i + 3] if f)
                i += 3
            continue
        i += 1
    return paths


def _apply_cmd(patch_file: str, *, reverse: bool = False, flags: str = "") -> str:
    flags += "-R " if reverse else ""
    # Patch paths are relative to the repository root, whatever the sandbox's cwd is (from a
    # subfolder, git apply would silently skip the files outside it).
    return (
        'cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)" && '
        f'git apply {flags}--whitespace=nowarn "{patch_file}"'
    )


def _no_patch(info: dict[str, Any]) -> EvalResult:
    info["status"] = "no_patch"
    info["speedup"] = None
    return EvalResult(0.0, False, None, info)


def _fail(status: str, info: dict[str, Any], res: ExecResult) -> EvalResult:
    info["status"] = status
    info["output"] = _tail(res.output)
    return EvalResult(0.0, False, None, info)


def _bench_failed(label: str, res: ExecResult, info: dict[str, Any]) -> None:
    info[f"{label}_benchmark_returncode"] = res.returncode
    info[f"{label}_benchmark_output"] = _tail(res.output)
    if label == "base":  # the task itself is broken: not the patch's fault, but nothing to grade
        info["status"] = "error"
        info["error"] = "the benchmark fails on the unpatched code"
    else:  # the patched code breaks the benchmark: as good as a failing test
        info["status"] = "tests_failed"


def _score(spec: EvalSpec, base: list[float], patched: list[float], info: dict[str, Any]) -> EvalResult:
    base_median = statistics.median(base)
    patched_median = statistics.median(patched)
    speedup = base_median / patched_median if patched_median > 0 else math.inf
    if not math.isfinite(speedup):
        speedup = 1e6
    speedup = round(speedup, 4)
    test = mann_whitney(base, patched).as_info(ALPHA)
    significant = bool(test["significant"])
    success = significant and speedup >= spec.min_speedup
    # Noise earns nothing: without a significant difference the reward is 0, whatever the ratio.
    reward = round(reward_for_speedup(speedup, spec.target_speedup), 6) if significant else 0.0
    flagged = speedup > SUSPICIOUS_SPEEDUP
    info.update(
        {
            "status": "correct" if success else "correct_no_speedup",
            "speedup": speedup,
            "speedup_test": test,
            "speedup_flagged": flagged,
            "min_speedup": spec.min_speedup,
            "target_speedup": spec.target_speedup,
            "warmup": spec.warmup,
            "repeats": spec.repeats,
        }
    )
    if flagged:
        info["review"] = f"speedup above {SUSPICIOUS_SPEEDUP:g}x: check the benchmark measures the same work"
    return EvalResult(reward, success, speedup, info)
