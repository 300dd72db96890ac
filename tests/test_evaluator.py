"""The built-in evaluator on the local sandbox: every status, the reward rule, a real benchmark."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import EvalSpec, Instance
from agentdata_tui.evaluation import BuiltinEvaluator, make_evaluator, reward_for_speedup
from agentdata_tui.evaluation.builtin import _score
from agentdata_tui.evaluation.client import EvalServerClient
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox.local import LocalSandbox


def _repo(tmp_path: Path) -> Path:
    src = tmp_path / "repo"
    src.mkdir()
    (src / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (src / "test_calc.py").write_text(
        "import unittest\nfrom calc import add\n\n"
        "class T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
        "if __name__ == '__main__':\n    unittest.main()\n"
    )
    (src / "delay.txt").write_text("0.25\n")
    (src / "bench.sh").write_text('sleep "$(cat delay.txt)"\n')
    return src


def _factory(repo: Path):
    def make(inst: Instance) -> LocalSandbox:
        return LocalSandbox(inst, EnvironmentConfig(), context=SandboxContext(repo_dir=repo))

    return make


def _patch(repo: Path, command: str) -> str:
    """A real patch: made by running ``command`` in a sandbox copy and diffing."""
    inst = Instance(instance_id="p", problem_statement="p")
    with LocalSandbox(inst, EnvironmentConfig(), context=SandboxContext(repo_dir=repo)) as sb:
        assert sb.execute(command).returncode == 0
        return sb.diff()[0]


def _inst(**eval_block) -> dict:
    return {"instance_id": "calc-1", "problem_statement": "add subtracts", "eval": eval_block or None}


FIX = "sed -i 's/a - b/a + b/' calc.py"
TESTS = "python3 -m unittest -q test_calc"


def test_reward_formula() -> None:
    assert reward_for_speedup(2.0, 2.0) == pytest.approx(1.0)
    assert reward_for_speedup(4.0, 2.0) == 1.0  # clamped
    assert reward_for_speedup(0.5, 2.0) == 0.0  # slower → 0
    assert reward_for_speedup(1.0, 2.0) == 0.0
    assert reward_for_speedup(math.sqrt(2), 2.0) == pytest.approx(0.5)
    assert reward_for_speedup(2.0, 4.0) == pytest.approx(0.5)


def test_correct_without_benchmark(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    ev = BuiltinEvaluator(_factory(repo))
    res = ev.evaluate(_inst(test_command=TESTS), _patch(repo, FIX))
    assert (res.reward, res.success, res.speedup) == (1.0, True, None)
    assert res.info["status"] == "correct" and res.info["test_returncode"] == 0


def test_tests_failed(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    res = BuiltinEvaluator(_factory(repo)).evaluate(
        _inst(test_command=TESTS), _patch(repo, "echo '# touched' >> calc.py")
    )
    assert (res.reward, res.success) == (0.0, False)
    assert res.info["status"] == "tests_failed" and "FAILED" in res.info["test_output"]


def test_patch_failed(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    bogus = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n-nothing like this\n+x\n"
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(test_command=TESTS), bogus)
    assert res.info["status"] == "patch_failed" and res.reward == 0.0 and not res.success


def test_timeout(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    res = BuiltinEvaluator(_factory(repo)).evaluate(
        _inst(test_command="sleep 30", timeout=1), _patch(repo, FIX)
    )
    assert res.info["status"] == "timeout" and res.reward == 0.0 and not res.success


def test_not_evaluated(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(), _patch(repo, FIX))
    assert res.info["status"] == "not_evaluated" and res.reward == 0.0 and not res.success


def test_new_files_in_patch_apply(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    patch = _patch(repo, FIX + " && mkdir -p pkg && echo 'VALUE = 7' > pkg/extra.py")
    cmd = TESTS + " && python3 -c 'from pkg.extra import VALUE; assert VALUE == 7'"
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(test_command=cmd), patch)
    assert res.info["status"] == "correct", res.info


def test_benchmark_measures_real_speedup(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    patch = _patch(repo, FIX + " && echo 0.08 > delay.txt")
    block = {
        "test_command": TESTS,
        "benchmark_command": "sh bench.sh",
        "warmup": 1,
        "repeats": 5,
        "min_speedup": 1.05,
        "target_speedup": 4.0,
    }
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(**block), patch)
    assert res.info["status"] == "correct", res.info
    assert res.success
    assert 1.5 < res.speedup < 5.0  # ~0.25 s / ~0.08 s, noisy on shared cores
    assert len(res.info["base_times"]) == 5 and len(res.info["patched_times"]) == 5
    test = res.info["speedup_test"]
    assert test["name"] == "mann_whitney_u" and test["alternative"] == "patched_faster"
    assert test["significant"] is True and test["p_value"] <= 0.05 and test["alpha"] == 0.05
    # Interleaved: each round ran one base and one patched, in either order.
    order = res.info["bench_order"]
    assert len(order) == 10 and all(sorted(order[i : i + 2]) == ["b", "p"] for i in range(0, 10, 2))
    assert res.reward == pytest.approx(reward_for_speedup(res.speedup, 4.0), abs=1e-6)
    assert 0.2 < res.reward < 1.0
    assert not res.info.get("speedup_flagged")


def test_benchmark_without_speedup(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    block = {"test_command": TESTS, "benchmark_command": "sh bench.sh", "warmup": 0, "repeats": 3}
    block["min_speedup"] = 1.6  # the patch does not touch the benchmark: speedup ~1
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(**block), _patch(repo, FIX))
    assert res.info["status"] == "correct_no_speedup"
    assert not res.success and 0.5 < res.speedup < 1.6 and res.reward < 0.7


def test_huge_speedup_flagged(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "delay.txt").write_text("1.0\n")  # sandbox overhead (bwrap ~tens of ms) stays far below 1/10
    patch = _patch(repo, FIX + " && echo 0 > delay.txt")
    block = {"test_command": TESTS, "benchmark_command": "sh bench.sh", "warmup": 0, "repeats": 5}
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(**block), patch)
    assert res.speedup > 10 and res.info["speedup_flagged"] is True
    assert res.reward == 1.0 and res.success


def test_make_evaluator_choices(tmp_path: Path) -> None:
    assert isinstance(make_evaluator("local", _factory(tmp_path)), BuiltinEvaluator)
    client = make_evaluator("127.0.0.1:9528", _factory(tmp_path), token="t")
    assert isinstance(client, EvalServerClient) and client.url == "http://127.0.0.1:9528"
    assert make_evaluator("https://eval.example/api/", _factory(tmp_path)).url == "https://eval.example/api"


def test_patch_breaking_benchmark_is_tests_failed(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "bench.sh").write_text('sleep "$(head -1 delay.txt)"\nexit "$(tail -n +2 delay.txt)"\n')
    (repo / "delay.txt").write_text("0\n0\n")
    patch = _patch(repo, FIX + " && printf '0\\n3\\n' > delay.txt")
    block = {"test_command": TESTS, "benchmark_command": "sh bench.sh", "warmup": 0, "repeats": 1}
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(**block), patch)
    assert res.info["status"] == "tests_failed" and res.reward == 0.0
    assert res.info["patched_benchmark_returncode"] == 3


# -- rewards that cannot be gamed (issue 9) -----------------------------------------------------

REWRITE_TESTS = "printf 'import unittest\\nclass T(unittest.TestCase):\\n    def test_ok(self):\\n        pass\\n' > test_calc.py"


def test_a_patch_that_only_rewrites_the_tests_is_no_patch(tmp_path: Path) -> None:
    """Reproduced on main: rewriting test_calc.py scored 1.0; now its hunks are dropped."""
    repo = _repo(tmp_path)
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(test_command=TESTS), _patch(repo, REWRITE_TESTS))
    assert (res.reward, res.success, res.speedup) == (0.0, False, None)
    assert res.info["status"] == "no_patch" and res.info["protected_changed"] == ["test_calc.py"]
    assert "test_returncode" not in res.info  # nothing ran


def test_rewritten_tests_are_dropped_and_the_real_ones_judge_the_rest(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    wrong = "sed -i 's/a - b/a * b/' calc.py && " + REWRITE_TESTS + " && mkdir tests && echo x > tests/t.py"
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(test_command=TESTS), _patch(repo, wrong))
    assert res.info["status"] == "tests_failed" and res.reward == 0.0
    assert res.info["protected_changed"] == ["test_calc.py", "tests/t.py"]
    assert res.info["applied_patch_bytes"] < res.info["patch_bytes"]
    # The same rewrite beside a real fix: the fix is graded by the original tests.
    good = FIX + " && " + REWRITE_TESTS + " && rm bench.sh"
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(test_command=TESTS), _patch(repo, good))
    assert res.info["status"] == "correct" and res.reward == 1.0
    assert res.info["protected_changed"] == ["bench.sh", "test_calc.py"]
    assert "Ran 1 test" in res.info["test_output"]


def test_instance_protected_paths_replace_the_defaults(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    patch = _patch(repo, FIX + " && echo 9 > delay.txt")
    res = BuiltinEvaluator(_factory(repo)).evaluate(
        _inst(test_command=TESTS + " && grep -qx 0.25 delay.txt", protected_paths=["delay.*"]), patch
    )
    assert res.info["status"] == "correct" and res.info["protected_changed"] == ["delay.txt"]
    # [] disables protection: the test rewrite is applied (the instance asked for it).
    res = BuiltinEvaluator(_factory(repo)).evaluate(
        _inst(test_command=TESTS, protected_paths=[]), _patch(repo, REWRITE_TESTS)
    )
    assert res.info["status"] == "correct" and res.info["protected_changed"] == []


def test_empty_patch_on_a_performance_task_is_no_patch_and_not_benchmarked(tmp_path: Path) -> None:
    """Reproduced on main: an empty patch was benchmarked and noise could cross min_speedup."""
    repo = _repo(tmp_path)
    block = {"test_command": TESTS, "benchmark_command": "sh bench.sh", "min_speedup": 0.5}
    for patch in ("", "\n"):
        res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(**block), patch)
        assert (res.reward, res.success, res.speedup) == (0.0, False, None)
        assert res.info["status"] == "no_patch" and "base_times" not in res.info


def test_a_patch_that_only_shrinks_the_benchmark_is_no_patch(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "bench.py").write_text("import time\nfor _ in range(5000):\n    time.sleep(0.00005)\n")
    block = {"test_command": TESTS, "benchmark_command": "python3 bench.py", "repeats": 5}
    res = BuiltinEvaluator(_factory(repo)).evaluate(
        _inst(**block), _patch(repo, "sed -i 's/range(5000)/range(50)/' bench.py")
    )
    assert (res.reward, res.success, res.speedup) == (0.0, False, None)
    assert res.info["status"] == "no_patch" and res.info["protected_changed"] == ["bench.py"]


def _spec(**kw) -> EvalSpec:
    return EvalSpec(benchmark_command="true", **kw)


def test_score_needs_a_significant_difference_on_fixed_timings() -> None:
    spec = _spec(min_speedup=1.05, target_speedup=2.0)
    base = [1.00, 1.02, 0.99, 1.01, 1.03]
    # Every patched run faster: p = 1/252, significant; speedup ~2 → reward ~1.
    res = _score(spec, base, [0.50, 0.52, 0.49, 0.51, 0.53], {})
    assert res.info["speedup_test"]["p_value"] == pytest.approx(1 / 252, abs=1e-6)
    assert res.info["status"] == "correct" and res.success
    assert res.speedup == pytest.approx(1.01 / 0.51, abs=1e-3)
    assert res.reward == pytest.approx(reward_for_speedup(res.speedup, 2.0), abs=1e-6) and res.reward > 0.98
    # A 1.2x median ratio from overlapping samples (one patched run slowest of all): U = 20 of 25,
    # p = 19/252 > 0.05 → not significant: reward 0, success false, the speedup kept.
    res = _score(spec, base, [0.80, 0.84, 0.85, 0.86, 1.10], {})
    test = res.info["speedup_test"]
    assert test["u"] == 20 and test["p_value"] == pytest.approx(19 / 252, abs=1e-6)
    assert test["significant"] is False
    assert res.info["status"] == "correct_no_speedup" and not res.success and res.reward == 0.0
    assert res.speedup == pytest.approx(1.01 / 0.85, abs=1e-3)
    # Significant but below min_speedup: not a success, the reward follows the formula.
    res = _score(_spec(min_speedup=1.05), base, [0.97, 0.98, 0.96, 0.975, 0.965], {})
    assert res.info["speedup_test"]["significant"] and not res.success
    assert res.info["status"] == "correct_no_speedup"
    assert res.info["speedup_flagged"] is False and res.info["min_speedup"] == 1.05
