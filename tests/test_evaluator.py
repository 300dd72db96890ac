"""The built-in evaluator on the local sandbox: every status, the reward rule, a real benchmark."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.evaluation import BuiltinEvaluator, make_evaluator, reward_for_speedup
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
        "repeats": 3,
        "min_speedup": 1.05,
        "target_speedup": 4.0,
    }
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(**block), patch)
    assert res.info["status"] == "correct"
    assert res.success
    assert 1.5 < res.speedup < 5.0  # ~0.25 s / ~0.08 s, noisy on shared cores
    assert len(res.info["base_times"]) == 3 and len(res.info["patched_times"]) == 3
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
    (repo / "delay.txt").write_text("1.5\n")
    patch = _patch(repo, FIX + " && echo 0 > delay.txt")
    block = {"test_command": TESTS, "benchmark_command": "sh bench.sh", "warmup": 0, "repeats": 1}
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
    patch = _patch(repo, FIX + " && echo 'exit 3' >> bench.sh")
    block = {"test_command": TESTS, "benchmark_command": "sh bench.sh", "warmup": 0, "repeats": 1}
    res = BuiltinEvaluator(_factory(repo)).evaluate(_inst(**block), patch)
    assert res.info["status"] == "tests_failed" and res.reward == 0.0
    assert res.info["patched_benchmark_returncode"] == 3
