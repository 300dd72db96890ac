"""The built-in evaluator (DESIGN §4): grade a patch in a fresh sandbox by the instance's ``eval``.

It only talks to the sandbox through ``execute``, so the same code grades patches in a local
copy or in a Docker container: the caller passes a factory that builds a fresh sandbox of the
kind the rollout used. The reward rule is the contract users train on, written out once here:

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
"""

from __future__ import annotations

import base64
import contextlib
import math
import random
import shlex
import statistics
import uuid
from collections.abc import Callable
from typing import Any

from agentdata_tui.dataset import EvalSpec, Instance
from agentdata_tui.evaluation.protect import DEFAULT_PROTECTED, filter_patch, is_protected
from agentdata_tui.evaluation.significance import ALPHA, mann_whitney
from agentdata_tui.interfaces import EvalResult, ExecResult, Sandbox, SandboxError
from agentdata_tui.sandbox import tag_run

SUSPICIOUS_SPEEDUP = 10.0
OUTPUT_KEEP = 4000  # characters of test/benchmark output kept in evaluation_info
_CHUNK = 60_000  # base64 characters per command (well below the kernel's 128 KiB per argument)

SandboxFactory = Callable[[Instance], Sandbox]


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
    """Implements ``interfaces.Evaluator`` with a fresh sandbox per evaluation."""

    def __init__(self, sandbox_factory: SandboxFactory) -> None:
        self.sandbox_factory = sandbox_factory

    def evaluate(
        self, instance: dict[str, Any] | Instance, patch: str, *, run_id: str = "", sample_index: int = 0
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
        sandbox = self.sandbox_factory(inst)
        tag_run(sandbox, run_id)
        try:
            sandbox.start()
            return self._grade(sandbox, spec, patch, patterns, info)
        except SandboxError as exc:
            # The grading environment failed, not the patch: the caller records it as an error.
            raise SandboxError(f"evaluation sandbox: {exc}") from exc
        finally:
            sandbox.close()

    # -- the steps -------------------------------------------------------------------
    def _grade(
        self, sb: Sandbox, spec: EvalSpec, patch: str, patterns: tuple[str, ...], info: dict[str, Any]
    ) -> EvalResult:
        """Grade the already filtered ``patch``."""
        dropped = info["protected_changed"]
        patch_file = ""
        try:
            patch_file = self._patch_path(sb, spec.timeout)
            self._upload(sb, patch, patch_file, spec.timeout)
            # git's own reading of the filtered patch: a section our splitter read differently
            # (a crafted header) must not slip a protected file through.
            seen = self._run(sb, _numstat_cmd(patch_file), spec.timeout)
            if seen.returncode != 0:
                return _fail("patch_failed", info, seen)
            sneaked = sorted({p for p in _numstat_paths(seen.output) if is_protected(p, patterns)})
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
            if patch_file:  # also when the upload failed half-way (its .b64 part)
                with contextlib.suppress(Exception):
                    sb.execute(
                        f"rm -f {shlex.quote(patch_file)} {shlex.quote(patch_file + '.b64')}", timeout=30
                    )

    def _run(self, sb: Sandbox, command: str, timeout: float) -> ExecResult:
        res = sb.execute(command, timeout=timeout)
        if res.timed_out:
            raise EvalTimeout(command)
        return res

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


def protected_patterns(spec: EvalSpec) -> tuple[str, ...]:
    """The instance's ``eval.protected_paths`` (``[]`` disables), else the defaults."""
    return DEFAULT_PROTECTED if spec.protected_paths is None else tuple(spec.protected_paths)


def _numstat_cmd(patch_file: str) -> str:
    """Every path git reads in the patch: forward names the targets, reverse the sources of renames."""
    forward = _apply_cmd(patch_file, flags="--numstat -z ")
    return f'{forward} && git apply -R --numstat -z "{patch_file}"'


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
