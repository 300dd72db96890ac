"""Issue 13: cheap grading and evaluation sandboxes prepared while the agent runs.

Real parts: local sandboxes (under bubblewrap when installed), git, the built-in evaluator, the
runner over the loopback model server. The old command-only path is a sandbox without
``put_file`` (a user's class); both paths must grade every patch alike.
"""

from __future__ import annotations

import collections
import json
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from servers.model_server import ModelServer, ScriptedResponder
from test_runner import SUBMIT, make_runner, scripts_for, write_dataset

from agentdata_tui.config import EnvironmentConfig, load_config, load_configs
from agentdata_tui.dataset import Instance, load_dataset
from agentdata_tui.evaluation import BuiltinEvaluator
from agentdata_tui.evaluation import builtin as builtin_mod
from agentdata_tui.interfaces import SandboxError
from agentdata_tui.reader import open_input
from agentdata_tui.runner.components import evaluator_for, sandbox_maker
from agentdata_tui.runner.rollout import RolloutParts, execute_rollout
from agentdata_tui.runner.spec import Task
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox.local import LocalSandbox, remove_templates

TESTS = "python3 -m unittest -q test_calc"
FIX = "sed -i 's/a - b/a + b/' calc.py"


def _repo(tmp_path: Path) -> Path:
    src = tmp_path / "repo"
    src.mkdir()
    (src / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (src / "test_calc.py").write_text(
        "import unittest\nfrom calc import add\n\n"
        "class T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
    )
    (src / "old.txt").write_text("bye\n" * 20)
    (src / "my notes.txt").write_text("a\n")
    return src


class Counting(LocalSandbox):
    """A local sandbox that counts its commands (``put_file`` writes without one)."""

    log: list[str]

    def execute(self, command: str, timeout: float | None = None):
        self.log.append(command)
        return super().execute(command, timeout)


class CommandsOnly(Counting):
    """The same sandbox without ``put_file``: the evaluator's command-only path (any Sandbox)."""

    put_file = None  # type: ignore[assignment]


def _factory(repo: Path, cls: type[Counting], log: list[str]):
    def make(inst: Instance) -> LocalSandbox:
        sb = cls(inst, EnvironmentConfig(), context=SandboxContext(repo_dir=repo, diff_base=False))
        sb.log = log
        return sb

    return make


def _patch(repo: Path, command: str) -> str:
    inst = Instance(instance_id="p", problem_statement="p")
    with LocalSandbox(inst, EnvironmentConfig(), context=SandboxContext(repo_dir=repo)) as sb:
        res = sb.execute(command)
        assert res.returncode == 0, res.output
        return sb.diff()[0]


def _untimed(info: dict[str, Any]) -> dict[str, Any]:
    """evaluation_info without the clock ("Ran 1 test in 0.001s") and each sandbox's own folder."""

    def plain(v: str) -> str:
        return re.sub(r"agentdata-sbx-[\w-]+", "SBX", re.sub(r" in [0-9.]+s\b", " in Ts", v))

    return {k: plain(v) if isinstance(v, str) else v for k, v in info.items()}


def _inst() -> dict[str, Any]:
    return {"instance_id": "calc", "problem_statement": "add subtracts", "eval": {"test_command": TESTS}}


BINARY = "printf '\\000\\001\\002\\377' > logo.bin"
# name → (command making the patch, status, commands on the put_file path, on the command path)
CASES = {
    "fix": (FIX, "correct", 2, 7),
    "wrong": ("echo '# touched' >> calc.py", "tests_failed", 2, 7),
    "added-deleted-mode": (f"{FIX} && echo new > new.txt && rm old.txt && chmod +x calc.py", "correct", 2, 7),
    "protected-dropped": (f"{FIX} && echo '# pass' >> test_calc.py", "correct", 2, 7),
    "protected-only": ("echo '# pass' >> test_calc.py", "no_patch", 0, 0),
    # No prediction (git reads these, not we): numstat, apply and the tests, still no upload or rm.
    "rename": (f"{FIX} && mv old.txt renamed.txt", "correct", 3, 7),
    "binary": (f"{FIX} && {BINARY}", "correct", 3, 7),
    "spaced-name": (f"{FIX} && echo b >> 'my notes.txt'", "correct", 3, 7),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_put_file_path_grades_as_the_command_path_with_fewer_commands(tmp_path: Path, case: str) -> None:
    command, status, put_n, cmd_n = CASES[case]
    repo = _repo(tmp_path)
    patch = _patch(repo, command)
    put_log: list[str] = []
    cmd_log: list[str] = []
    fast = BuiltinEvaluator(_factory(repo, Counting, put_log)).evaluate(_inst(), patch)
    slow = BuiltinEvaluator(_factory(repo, CommandsOnly, cmd_log)).evaluate(_inst(), patch)
    assert fast.info["status"] == status, fast.info
    assert (fast.reward, fast.success, fast.speedup) == (slow.reward, slow.success, slow.speedup)
    assert _untimed(fast.info) == _untimed(slow.info)  # every evaluation_info field, outputs included
    assert (len(put_log), len(cmd_log)) == (put_n, cmd_n), (put_log, cmd_log)
    assert not any("base64" in c or c.startswith("rm -f") for c in put_log)


def test_a_patch_that_does_not_apply_fails_alike_in_one_command(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    patch = _patch(repo, FIX).replace(" def add(a, b):", " def add(x, y):")  # context the tree lacks
    put_log: list[str] = []
    cmd_log: list[str] = []
    fast = BuiltinEvaluator(_factory(repo, Counting, put_log)).evaluate(_inst(), patch)
    slow = BuiltinEvaluator(_factory(repo, CommandsOnly, cmd_log)).evaluate(_inst(), patch)
    assert fast.info["status"] == "patch_failed" and "patch does not apply" in fast.info["output"]
    assert _untimed(fast.info) == _untimed(slow.info)
    assert (len(put_log), len(cmd_log)) == (1, 6)


@pytest.mark.parametrize("prediction", ["none", "lying"])
def test_a_splitter_miss_is_caught_by_gits_reading_before_anything_runs(
    tmp_path: Path, monkeypatch, prediction: str
) -> None:
    """Were the splitter to miss a protected file (simulated: no filtering at all), git's own
    reading still refuses the patch before it is applied — also when the prediction the one-
    command path compares against is wrong ("lying": it names only calc.py)."""
    repo = _repo(tmp_path)
    patch = _patch(repo, f"{FIX} && echo '# pass' >> test_calc.py")
    monkeypatch.setattr(builtin_mod, "filter_patch", lambda p, patterns: (p, []))
    if prediction == "lying":
        lie = b"1\t1\tcalc.py\x001\t1\tcalc.py\x00"
        monkeypatch.setattr(builtin_mod, "_expected_numstat", lambda p, patterns: lie)
    results = []
    for cls in (Counting, CommandsOnly):
        log: list[str] = []
        results.append(BuiltinEvaluator(_factory(repo, cls, log)).evaluate(_inst(), patch))
        assert not any(c == TESTS for c in log), "the tests never ran"
    fast, slow = results
    assert _untimed(fast.info) == _untimed(slow.info)
    assert fast.info["status"] == "patch_failed" and fast.info["protected_changed"] == ["test_calc.py"]
    assert "cannot be filtered out" in fast.info["error"] and "test_returncode" not in fast.info


def test_the_one_command_check_applies_only_what_git_read_as_predicted(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    patch = _patch(repo, FIX)
    ev = BuiltinEvaluator(lambda inst: None)  # type: ignore[arg-type,return-value]
    inst = Instance(instance_id="p", problem_statement="p")
    with LocalSandbox(
        inst, EnvironmentConfig(), context=SandboxContext(repo_dir=repo, diff_base=False)
    ) as sb:
        path = sb.put_file("a.patch", patch.encode())
        wrong = sb.put_file("wrong.numstat", b"1\t1\tother.py\x001\t1\tother.py\x00")
        assert ev._numstat_and_apply(sb, path, wrong, 30) is None
        assert "a - b" in (sb.work / "calc.py").read_text(), "not applied"
        right = sb.put_file("right.numstat", builtin_mod._expected_numstat(patch, ()) or b"")
        applied = ev._numstat_and_apply(sb, path, right, 30)
        assert applied is not None and applied.returncode == 0 and applied.output == ""
        assert "a + b" in (sb.work / "calc.py").read_text()


# -- evaluation sandboxes prepared ahead -----------------------------------------------------


def _setup_inst() -> Instance:
    return Instance(
        instance_id="calc",
        problem_statement="p",
        setup_command="echo ready > setup.txt",
        eval={"test_command": f"grep -q ready setup.txt && {TESTS}"},
    )


def _made_factory(repo: Path, made: list[LocalSandbox], broken_first: bool = False):
    def make(inst: Instance) -> LocalSandbox:
        src = repo.parent / "missing" if broken_first and not made else repo
        sb = LocalSandbox(inst, EnvironmentConfig(), context=SandboxContext(repo_dir=src, diff_base=False))
        made.append(sb)
        return sb

    return make


def test_a_prepared_sandbox_is_started_ahead_and_graded_in(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    patch = _patch(repo, FIX)
    made: list[LocalSandbox] = []
    ev = BuiltinEvaluator(_made_factory(repo, made), prepare_ahead=True)
    handle = ev.prepare(_setup_inst())
    assert handle is not None
    with ThreadPoolExecutor(1) as pool:
        handle.schedule(pool)
    assert handle.state == "ready" and (handle.sandbox.work / "setup.txt").read_text() == "ready\n"
    res = ev.evaluate(_setup_inst(), patch, prepared=handle)
    assert res.info["status"] == "correct" and res.reward == 1.0
    assert made == [handle.sandbox], "graded in the prepared sandbox, no other made"
    assert handle.sandbox.root is None, "and it is gone"
    # Never scheduled (e.g. the pool was busy): the evaluation starts it itself, still one sandbox.
    made.clear()
    late = ev.prepare(_setup_inst())
    assert ev.evaluate(_setup_inst(), patch, prepared=late).info["status"] == "correct"
    assert made == [late.sandbox] and late.sandbox.root is None


def test_a_prepared_sandbox_whose_start_failed_falls_back_to_a_new_one(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    made: list[LocalSandbox] = []
    ev = BuiltinEvaluator(_made_factory(repo, made, broken_first=True), prepare_ahead=True)
    handle = ev.prepare(_setup_inst())
    with ThreadPoolExecutor(1) as pool:
        handle.schedule(pool)
    assert handle.state == "failed" and isinstance(handle.error, SandboxError)
    res = ev.evaluate(_setup_inst(), _patch(repo, FIX), prepared=handle)
    assert res.info["status"] == "correct" and res.reward == 1.0
    assert len(made) == 2 and all(sb.root is None for sb in made)
    # Its turn in the background had not come yet: started by the evaluation, it fails alike
    # and is replaced alike (the preparation pool's timing must not change a reward; it did).
    made.clear()
    ev = BuiltinEvaluator(_made_factory(repo, made, broken_first=True), prepare_ahead=True)
    late = ev.prepare(_setup_inst())
    res = ev.evaluate(_setup_inst(), _patch(repo, FIX), prepared=late)
    assert res.info["status"] == "correct" and res.reward == 1.0
    assert len(made) == 2 and all(sb.root is None for sb in made)


def test_prepare_is_off_by_switch_and_for_instances_without_eval(tmp_path: Path) -> None:
    made: list[LocalSandbox] = []
    factory = _made_factory(_repo(tmp_path), made)
    assert BuiltinEvaluator(factory).prepare(_setup_inst()) is None
    on = BuiltinEvaluator(factory, prepare_ahead=True)
    assert on.prepare(Instance(instance_id="x", problem_statement="p")) is None
    assert made == []


def test_the_config_switch_reaches_the_evaluator(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, 1))
    default = evaluator_for("local", sandbox_maker(ds, load_config()))
    off = evaluator_for("local", sandbox_maker(ds, load_configs(["environment.prepare_eval_sandbox=false"])))
    assert (default.prepare_ahead, off.prepare_ahead) == (True, False)
    assert off.prepare(ds.instances[0]) is None
    docker = load_configs(["environment.environment_class=docker"]).environment
    assert not docker.prepares_eval_sandbox() and EnvironmentConfig(
        prepare_eval_sandbox=True
    ).prepares_eval_sandbox("docker")


def test_closing_a_queued_or_starting_prepared_sandbox_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    repo = _repo(tmp_path)
    made: list[LocalSandbox] = []
    ev = BuiltinEvaluator(_made_factory(repo, made), prepare_ahead=True)
    with ThreadPoolExecutor(1) as pool:
        gate = threading.Event()
        pool.submit(gate.wait, 60)  # the pool is busy: the prepared start stays queued
        queued = ev.prepare(_setup_inst())
        queued.schedule(pool)
        queued.close()
        gate.set()
    remove_templates()  # the copies sandboxes start from: a run removes them at its end; here no run ends
    assert queued.state == "closed" and made[0].root is None and list(private.iterdir()) == []

    entered, go = threading.Event(), threading.Event()
    starting = ev.prepare(_setup_inst())
    real_start = starting.sandbox.start

    def slow_start() -> None:
        entered.set()
        assert go.wait(60)
        real_start()

    starting.sandbox.start = slow_start  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as pool:
        starting.schedule(pool)
        assert entered.wait(60)
        closer = threading.Thread(target=starting.close)
        closer.start()
        closer.join(0.3)
        assert closer.is_alive(), "close waits for the start in progress"
        go.set()
        closer.join(60)
    assert starting.state == "closed" and starting.sandbox.root is None
    remove_templates()  # the copies sandboxes start from: a run removes them at its end; here no run ends
    assert list(private.iterdir()) == [], "no sandbox folder left"


# -- through the runner ----------------------------------------------------------------------


class TrackingMaker:
    """The run's real sandbox maker, recording every sandbox it makes (the rollout's own and the
    evaluation's); ``fail_own`` / ``fail_eval_once``: instances whose start fails (once)."""

    def __init__(self, ds, config, fail_own=(), fail_eval_once=()) -> None:
        self.base = sandbox_maker(ds, config)
        self.takes_diff_base = True
        self.prepare_eval_sandbox = self.base.prepare_eval_sandbox
        self.start_concurrency = getattr(self.base, "start_concurrency", None)
        self.made: list[tuple[str, str, Any]] = []
        self.eval_ready: dict[str, threading.Event] = collections.defaultdict(threading.Event)
        self.fail_own, self.fail_eval_once = set(fail_own), set(fail_eval_once)
        self.lock = threading.Lock()

    def __call__(self, inst: Instance, rollout_id: str, *, diff_base: bool = True):
        sb = self.base(inst, rollout_id, diff_base=diff_base)
        kind = "own" if diff_base else "eval"
        iid = inst.instance_id
        with self.lock:
            self.made.append((iid, kind, sb))
            fail = iid in (self.fail_own if kind == "own" else self.fail_eval_once)
            if kind == "eval":
                self.fail_eval_once.discard(iid)
        real_start = sb.start

        def start() -> None:
            if fail:
                raise SandboxError(f"injected: the {kind} sandbox of {iid} does not start")
            real_start()
            if kind == "eval":
                self.eval_ready[iid].set()

        sb.start = start
        return sb

    def of(self, iid: str, kind: str) -> list[Any]:
        return [sb for i, k, sb in self.made if i == iid and k == kind]


def _waiting_responder(scripts, maker: TrackingMaker, wait_for: set[str], seen: dict[str, bool]):
    """Before a waiting task's submit, the model waits for its evaluation sandbox to be ready."""
    play = ScriptedResponder(scripts)

    def respond(body: dict[str, Any]):
        reply = play(body)
        text = json.dumps(body.get("messages") or [])
        for iid in wait_for:
            if f"[{iid}]" in text and "COMPLETE_TASK_AND_SUBMIT" in (reply.content or ""):
                seen[iid] = maker.eval_ready[iid].wait(60)
        return reply

    return respond


def test_the_runner_grades_in_sandboxes_prepared_during_the_agent_and_leaves_nothing(
    tmp_path: Path, monkeypatch
) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    setup = {"setup_command": "echo ready > setup.txt"}
    extra = {f"task-{i:03d}": dict(setup) for i in range(5)}
    extra["task-000"]["eval"] = {"test_command": "grep -q ready setup.txt && grep -q data-task-000 out.txt"}
    ds = load_dataset(write_dataset(tmp_path, 5, extra=extra))
    scripts = scripts_for(5)
    scripts["[task-001]"] = [SUBMIT]  # nothing changed: no_patch
    scripts["[task-002]"] = [  # the agent destroys the diff base: DiffUnavailable, not graded
        "THOUGHT: x\n\n```bash\necho data-task-002 > out.txt && rm -rf ../base.git\n```",
        SUBMIT,
    ]
    maker = TrackingMaker(ds, load_config(), fail_own={"task-003"}, fail_eval_once={"task-004"})
    assert maker.prepare_eval_sandbox is True, "local sandboxes prepare ahead by default"
    seen: dict[str, bool] = {}
    out = tmp_path / "o.json"
    with ModelServer(_waiting_responder(scripts, maker, {"task-000"}, seen)) as server:
        make_runner(server, ds, out, workers=2, make=maker).run()
    by_id = {e.instance_id: e for e in open_input(out)}
    assert seen == {"task-000": True}, "the evaluation's setup_command ran before the agent submitted"
    assert (by_id["task-000"].reward, by_id["task-000"].evaluation_info["status"]) == (1.0, "correct")
    assert len(maker.of("task-000", "eval")) == 1, "graded in the prepared sandbox, no other made"
    assert "eval_sandbox_start_s" in by_id["task-000"].metadata["timings"]
    assert by_id["task-001"].evaluation_info["status"] == "no_patch"
    assert by_id["task-002"].exit_status == "DiffUnavailable"
    assert by_id["task-003"].exit_status == "SandboxError" and "injected" in by_id["task-003"].error
    assert by_id["task-004"].reward == 1.0 and len(maker.of("task-004", "eval")) == 2, (
        "fell back",
        by_id["task-004"].reward,
        by_id["task-004"].evaluation_info,
        maker.of("task-004", "eval"),
    )
    assert all(sb.root is None for _, _, sb in maker.made), "every sandbox closed"
    assert sorted(p.name for p in private.iterdir()) == [], "no sandbox folder or patch file left"

    # The regrade path prepares nothing ahead: one fresh sandbox grades the recorded patch.
    before = len(maker.made)
    with ThreadPoolExecutor(2) as pool:
        parts = RolloutParts(
            config=load_config(),
            model=object(),  # type: ignore[arg-type]
            evaluator=evaluator_for("local", maker),
            make_sandbox=maker,
            starter=pool,
            close_later=lambda sb: sb.close(),
        )
        task = Task(ds.instances[0], 0, 2, regrade=by_id["task-000"])
        again, _ = execute_rollout(
            parts, task, "r-1", "run", 0, on_step=lambda d: None, should_stop=lambda: False
        )
    remove_templates()  # the copies sandboxes start from: a run removes them at its end; here no run ends
    assert again.reward == 1.0 and [k for _, k, _ in maker.made[before:]] == ["eval"]
    assert all(sb.root is None for _, _, sb in maker.made) and list(private.iterdir()) == []


def test_model_error_and_cancelled_rollouts_close_their_prepared_sandbox(tmp_path: Path, monkeypatch) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    ds = load_dataset(write_dataset(tmp_path, 1))
    maker = TrackingMaker(ds, load_config())
    with ModelServer(ScriptedResponder(scripts_for(1))) as server:
        server.add_faults(("error", 400, "bad request"))
        make_runner(server, ds, tmp_path / "m.json", workers=2, make=maker).run()
    (ex,) = list(open_input(tmp_path / "m.json"))
    assert ex.exit_status == "ModelError" and ex.evaluation_info["status"] == "not_evaluated"
    assert len(maker.of("task-000", "eval")) == 1
    assert all(sb.root is None for _, _, sb in maker.made) and list(private.iterdir()) == []

    # A stop while the agent runs (its evaluation sandbox prepared meanwhile): nothing recorded, nothing left.
    maker = TrackingMaker(ds, load_config())
    seen: dict[str, bool] = {}
    scripts = scripts_for(1, steps=50)
    out = tmp_path / "c.json"
    with ModelServer(ScriptedResponder(scripts)) as server:
        runner = make_runner(server, ds, out, workers=2, make=maker)

        def stop_once_prepared() -> None:
            seen["ready"] = maker.eval_ready["task-000"].wait(60)
            runner.request_stop()

        watcher = threading.Thread(target=stop_once_prepared)
        watcher.start()
        outcome = runner.run()
        watcher.join(60)
    assert seen == {"ready": True} and outcome.stopped and outcome.counts["cancelled"] == 1
    assert list(open_input(out)) == []
    assert [k for _, k, _ in maker.made] == ["own", "eval"]
    assert all(sb.root is None for _, _, sb in maker.made) and list(private.iterdir()) == []


def test_a_lost_numstat_answer_is_an_error_never_no_protected_paths(tmp_path: Path) -> None:
    """A sandbox whose transport loses a command's output (seen with Docker under load): an empty
    reading of a non-empty patch must not pass the protected-path check as "nothing read"."""

    class Lossy(CommandsOnly):
        def execute(self, command: str, timeout: float | None = None):
            res = super().execute(command, timeout)
            if "--numstat" in command:
                res.output = ""
            return res

    repo = _repo(tmp_path)
    patch = _patch(repo, f"{FIX} && echo '# pass' >> test_calc.py")
    log: list[str] = []
    with pytest.raises(SandboxError, match="came back empty"):
        BuiltinEvaluator(_factory(repo, Lossy, log)).evaluate(_inst(), patch)
    assert TESTS not in log, "nothing applied, no tests run"


def _running(argv: list[str]) -> bool:
    want = "\0".join(argv).encode() + b"\0"
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cmdline").read_bytes() == want:
                return True
        except OSError:
            continue
    return False


def test_a_stop_does_not_wait_for_a_prepared_sandboxs_long_setup(tmp_path: Path, monkeypatch) -> None:
    """Closing a prepared sandbox whose setup_command is still running kills it after a short
    wait (CLOSE_WAIT_S) instead of waiting it out: a graceful stop must not wait minutes."""
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    monkeypatch.setattr(builtin_mod, "CLOSE_WAIT_S", 0.2)
    inst = Instance(
        instance_id="slow-setup",
        problem_statement="p",
        setup_command="touch started && exec sleep 613",
        eval={"test_command": TESTS},
    )
    ev = BuiltinEvaluator(_made_factory(_repo(tmp_path), []), prepare_ahead=True)
    handle = ev.prepare(inst)
    with ThreadPoolExecutor(1) as pool:
        handle.schedule(pool)
        ticker = threading.Event()
        for _ in range(3000):  # until the setup_command runs (its file appears in the copy)
            work = handle.sandbox.work
            if work is not None and (work / "started").exists():
                break
            ticker.wait(0.02)
        assert handle.state == "starting" and _running(["sleep", "613"])
        closer = threading.Thread(target=handle.close)
        closer.start()
        closer.join(60)
        assert not closer.is_alive(), "close did not wait out the 613 s setup"
    assert handle.state == "closed" and handle.sandbox.root is None
    assert not _running(["sleep", "613"]), "the setup_command was killed"
    remove_templates()  # the copies sandboxes start from: a run removes them at its end; here no run ends
    assert list(private.iterdir()) == [], "no sandbox folder left"
