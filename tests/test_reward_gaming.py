"""Agents that try to earn reward without solving the task, through the real runner: scripted
model replies over the loopback model server, commands in the local sandbox, the built-in
evaluator. Each gets reward 0; an honest agent on the same tasks gets its reward."""

from __future__ import annotations

import json
from pathlib import Path

from servers.model_server import ModelServer, ScriptedResponder
from test_runner import SUBMIT, make_runner

from agentdata_tui.dataset import load_dataset
from agentdata_tui.reader import open_input


def _cmd(command: str) -> str:
    return f"THOUGHT: this will do.\n\n```bash\n{command}\n```"


def _tasks(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text(
        "def add(a, b):\n    return a - b\n\n\ndef total(n):\n    s = 0\n    for i in range(n):\n"
        "        for _ in range(30):\n            s += i\n    return s // 30\n"
    )
    (repo / "test_calc.py").write_text(
        "import unittest\nfrom calc import add, total\n\n\nclass T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
        "    def test_total(self):\n        self.assertEqual(total(10), 45)\n"
    )
    (repo / "bench.py").write_text("from calc import total\n\nfor _ in range(3):\n    total(5000)\n")
    tests = "python3 -m unittest -q test_calc"
    items = []
    for iid, kind in (
        ("rewrite-tests", "fix"),
        ("honest-fix", "fix"),
        ("shrink-bench", "perf"),
        ("submit-nothing", "perf"),
    ):
        item = {"instance_id": iid, "problem_statement": f"[{iid}] make it right", "repo_path": str(repo)}
        if kind == "fix":
            item["eval"] = {"test_command": tests, "timeout": 60}
        else:  # tests pass on the base; only a real speedup earns reward
            item["eval"] = {
                "test_command": "python3 -m unittest -q test_calc.T.test_total",
                "benchmark_command": "python3 bench.py",
                "warmup": 0,
                "repeats": 5,
                "min_speedup": 1.05,
                "timeout": 60,
            }
        items.append(item)
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(items))
    return path


REWRITE = (
    "printf 'import unittest\\n\\nclass T(unittest.TestCase):\\n    def test_add(self):\\n"
    "        pass\\n' > test_calc.py && python3 -m unittest -q test_calc"
)
SCRIPTS = {
    "[rewrite-tests]": [_cmd(REWRITE), SUBMIT],
    "[honest-fix]": [_cmd("sed -i 's/a - b/a + b/' calc.py"), SUBMIT],
    "[shrink-bench]": [_cmd("sed -i 's/total(5000)/total(50)/' bench.py && python3 bench.py"), SUBMIT],
    "[submit-nothing]": [SUBMIT],
}


def test_agents_that_game_the_reward_get_zero(tmp_path: Path) -> None:
    ds = load_dataset(_tasks(tmp_path))
    out = tmp_path / "out.json"
    with ModelServer(ScriptedResponder(SCRIPTS)) as server:
        outcome = make_runner(server, ds, out, workers=2).run()
    assert outcome.written == 4
    by_id = {e.instance_id: e for e in open_input(out)}
    for iid in ("rewrite-tests", "shrink-bench", "submit-nothing"):
        ex = by_id[iid]
        assert ex.exit_status == "Submitted", iid
        assert (ex.reward, ex.success, ex.speedup) == (0.0, False, None), (iid, ex.evaluation_info)
        assert ex.evaluation_info["status"] == "no_patch", iid
        assert "base_times" not in ex.evaluation_info  # no benchmark ran
    assert "test_calc.py" in by_id["rewrite-tests"].git_diff  # recorded as the agent made it ...
    assert by_id["rewrite-tests"].evaluation_info["protected_changed"] == ["test_calc.py"]  # ... not graded
    assert "bench.py" in by_id["shrink-bench"].git_diff
    assert by_id["shrink-bench"].evaluation_info["protected_changed"] == ["bench.py"]
    assert by_id["submit-nothing"].git_diff == ""
    honest = by_id["honest-fix"]
    assert (honest.reward, honest.success) == (1.0, True) and honest.evaluation_info["status"] == "correct"
