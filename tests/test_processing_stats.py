"""Selection criteria and statistics (issue 2 §3: analyze)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from rich.console import Console
from test_processing_fixtures import seed_examples, write_fast_file, write_seed_file

from agentdata_tui.errors import UserError
from agentdata_tui.processing.analyze import compute_stats, histogram_lines, pass_at_k, render_stats
from agentdata_tui.processing.select import Criteria, select
from agentdata_tui.reader import open_input
from agentdata_tui.records import Example


def _examples() -> list[Example]:
    return [Example.model_validate(e) for e in seed_examples()]


def test_criteria_each_condition() -> None:
    exs = _examples()

    def ids(c: Criteria) -> list[tuple[str, int]]:
        return [(e.instance_id, e.sample_index) for e in exs if c.matches(e)]

    assert len(ids(Criteria())) == 9
    assert ids(Criteria(min_reward=0.5)) == [("task_001", 0), ("task_001", 2), ("task_002", 2)]
    assert ids(Criteria(successful_only=True)) == [("task_001", 0), ("task_001", 2), ("task_002", 2)]
    # tool-mode examples have one assistant turn, text-mode ones three
    assert len(ids(Criteria(max_steps=1))) == 3
    assert ids(Criteria(exit_status=["formaterror"])) == [("task_002", 0)]
    assert ids(Criteria(instance_regex=r"00[23]$", min_reward=0.2)) == [("task_002", 2), ("task_003", 2)]
    assert len(ids(Criteria(text="TASK_003"))) == 3  # case-insensitive, instance id
    assert len(ids(Criteria(text="fix add()"))) == 9  # problem statement
    assert ids(Criteria(text="nothing like this")) == []


def test_criteria_describe_and_bad_regex() -> None:
    assert Criteria().describe() == {}
    assert Criteria(min_reward=0.0, successful_only=True, exit_status=["Submitted"]).describe() == {
        "min_reward": 0.0,
        "successful_only": True,
        "exit_status": ["Submitted"],
    }
    with pytest.raises(UserError, match="--instance: not a valid regular expression"):
        Criteria(instance_regex="task_(")


def test_exit_status_none_matches_missing() -> None:
    raw = seed_examples()[0]
    ex = Example.model_validate(dict(raw, exit_status=None))
    assert Criteria(exit_status=["None"]).matches(ex)
    assert not Criteria(exit_status=["Submitted"]).matches(ex)
    assert compute_stats([ex])["exit_status"] == {"none": 1}


def test_criteria_edited_in_place() -> None:
    exs = _examples()
    c = Criteria(instance_regex="001")
    assert sum(c.matches(e) for e in exs) == 3
    c.instance_regex = "00[23]"
    c.exit_status = ["Submitted"]
    assert sum(c.matches(e) for e in exs) == 3
    c.instance_regex = "("
    with pytest.raises(UserError):
        c.matches(exs[0])


def test_select_streams_lazily() -> None:
    consumed = []

    def gen():
        for e in _examples():
            consumed.append(e)
            yield e

    first = next(select(gen(), Criteria(successful_only=True)))
    assert first.instance_id == "task_001" and len(consumed) == 1


def test_pass_at_k_matches_brute_force() -> None:
    # pass@k is the chance that a random k-subset of the n samples holds a success.
    for n in range(1, 7):
        for c in range(n + 1):
            outcomes = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(range(n), k))
                expected = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
                assert math.isclose(pass_at_k(n, c, k), expected), (n, c, k)


def test_compute_stats_figures() -> None:
    stats = compute_stats(_examples())
    assert stats["total"] == 9 and stats["successful"] == 3 and stats["failed"] == 6
    assert stats["success_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert stats["average_reward"] == pytest.approx((1 + 1 + 0.55 + 0.25) / 9, abs=1e-6)
    # model calls: 3 tool-mode examples with 1 call, 6 text-mode with 3
    assert stats["model_calls"] == {
        "mean": pytest.approx(7 / 3, abs=1e-3),
        "median": 3,
        "max": 3,
        "total": 21,
    }
    assert stats["trajectory_length"]["messages"]["max"] == 7
    assert stats["trajectory_length"]["assistant_steps"]["median"] == 3
    counts = [b["count"] for b in stats["reward_histogram"]]
    assert counts == [5, 0, 1, 0, 0, 1, 0, 0, 0, 2]
    assert stats["reward_histogram"][9] == {"low": 0.9, "high": 1.0, "count": 2}
    assert stats["exit_status"] == {"Submitted": 5, "LimitsExceeded": 3, "FormatError": 1}
    assert stats["speedup"]["count"] == 4 and stats["speedup"]["max"] == 2.5
    assert stats["speedup"]["median"] == pytest.approx(1.35)
    # tokens from steps: text mode 100+200+300 prompt, 30 completion; tool mode 100 / 10
    assert stats["tokens"] == {
        "prompt": 6 * 600 + 3 * 100,
        "completion": 6 * 30 + 3 * 10,
        "total": 4110,
        "examples_with_tokens": 9,
    }
    inst = stats["instances"]
    assert inst["count"] == 3 and inst["solved_at_least_once"] == 2
    assert inst["pass_at_k"] == {
        "1": pytest.approx(1 / 3, abs=1e-6),
        "2": pytest.approx(5 / 9, abs=1e-6),
        "3": pytest.approx(2 / 3, abs=1e-6),
    }
    per = {r["instance_id"]: r for r in inst["per_instance"]}
    assert per["task_001"]["success_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert per["task_001"]["reward_variance"] == pytest.approx(2 / 9, abs=1e-6)
    assert per["task_003"]["successes"] == 0
    json.dumps(stats)  # JSON-able


def test_stats_single_sample_and_empty() -> None:
    stats = compute_stats(_examples()[:1])
    assert stats["instances"]["pass_at_k"] is None and stats["instances"]["per_instance"] is None
    empty = compute_stats([])
    assert empty["total"] == 0 and empty["success_rate"] == 0.0 and empty["speedup"] is None
    assert empty["tokens"] is None


def test_retried_attempt_counts_once_for_pass_at_k() -> None:
    raw = seed_examples()[:2]
    retry = dict(raw[1], attempt=2, success=True, reward=1.0)
    stats = compute_stats(Example.model_validate(e) for e in [*raw, retry])
    assert stats["total"] == 3
    per = stats["instances"]["per_instance"][0]
    assert per["samples"] == 2 and per["successes"] == 2  # the latest attempt of sample 1 counts


def test_same_stats_on_both_layouts(tmp_path: Path) -> None:
    slow = compute_stats(open_input(write_seed_file(tmp_path / "seed.json")))
    fast = compute_stats(open_input(write_fast_file(tmp_path / "fast.json")))
    assert slow == fast and slow["total"] == 9


def test_render_stats_prints_tables_and_bars() -> None:
    console = Console(record=True, width=100, color_system=None)
    render_stats(compute_stats(_examples()), console)
    text = console.export_text()
    for needle in (
        "success rate",
        "33.3%",
        "model calls",
        "LimitsExceeded",
        "pass@k",
        "task_003",
        "geometric mean",
    ):
        assert needle in text
    assert "[0.0, 0.1) " + "█" * 40 + " 5" in text
    assert "[0.9, 1.0] " + "█" * 16 + " 2" in text  # scaled to the tallest bar
    assert histogram_lines([{"low": 0.0, "high": 0.1, "count": 0}]) == ["[0.0, 0.1]  0"]


def _perf(
    iid: str,
    sample: int,
    speedup: float | None,
    *,
    status: str,
    significant: bool = True,
    min_speedup: float = 1.2,
    attempt: int = 1,
    flagged: bool | None = None,
) -> Example:
    info: dict = {"status": status, "min_speedup": min_speedup, "speedup": speedup}
    if speedup is not None:
        info["speedup_test"] = {
            "name": "mann_whitney_u",
            "alternative": "patched_faster",
            "alpha": 0.05,
            "p_value": 0.01 if significant else 0.4,
            "significant": significant,
        }
    if flagged is not None:
        info["speedup_flagged"] = flagged
    return Example(
        instance_id=iid,
        problem_statement="make it faster",
        messages=[{"role": "user", "content": "go"}],
        reward=1.0 if status == "correct" else 0.0,
        success=status == "correct",
        speedup=speedup,
        sample_index=sample,
        attempt=attempt,
        evaluation_info=info,
    )


def test_speedup_figures_count_correct_patches_and_opt_at_k() -> None:
    exs = [
        # task A: 3 rollouts, one optimized (significant 2.0 >= 1.2), one not significant, one failed tests
        _perf("A", 0, 2.0, status="correct"),
        _perf("A", 1, 1.5, status="correct_no_speedup", significant=False),
        _perf("A", 2, 4.0, status="tests_failed"),  # a benchmark of wrong code: not counted
        # task B: a 16.9x (flagged), optimized; an earlier attempt of sample 1 replaced by a retry
        _perf("B", 0, 16.9, status="correct"),
        _perf("B", 1, 3.0, status="correct", attempt=1),
        _perf("B", 1, 1.1, status="correct", attempt=2),  # 1.1 < min_speedup 1.2: not optimized
        _perf("B", 2, None, status="tests_failed"),
        # task C: no correct rollout
        _perf("C", 0, None, status="tests_failed"),
        _perf("C", 1, None, status="timeout"),
        _perf("C", 2, 0.8, status="tests_failed"),
    ]
    sp = compute_stats(exs)["speedup"]
    correct = sp["correct"]
    # correct patches with a benchmark: A0 2.0, A1 1.5, B0 16.9, B1 1.1 (latest attempt)
    assert correct["count"] == 4
    assert correct["geometric_mean"] == pytest.approx((2.0 * 1.5 * 16.9 * 1.1) ** 0.25, abs=1e-4)
    assert correct["median"] == pytest.approx(1.75)
    assert [b["count"] for b in correct["histogram"]] == [0, 0, 1, 1, 1, 0, 1]  # 1.1, 1.5, 2.0, 16.9
    best = {t["instance_id"]: t["best_speedup"] for t in sp["best_of_k"]["per_task"]}
    assert best == {"A": 2.0, "B": 16.9, "C": None}
    assert sp["best_of_k"]["geometric_mean"] == pytest.approx((2.0 * 16.9) ** 0.5, abs=1e-4)
    # Opt@k, unbiased: A has 1 optimized of 3, B 1 of 3, C 0 of 3
    assert sp["opt_at_k"]["1"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3, abs=1e-6)
    assert sp["opt_at_k"]["2"] == pytest.approx((pass_at_k(3, 1, 2) * 2) / 3, abs=1e-6)
    assert sp["opt_at_k"]["3"] == pytest.approx(2 / 3, abs=1e-6)
    assert sp["optimized_tasks"] == 2
    assert [(f["instance_id"], f["speedup"]) for f in sp["flagged"]] == [("B", 16.9)]
    json.dumps(sp)
    # and the table says it
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    render_stats(compute_stats(exs), console)
    text = console.export_text()
    assert "Opt@k" in text and "Flagged speedups (>10×): 1 to review" in text and "16.90×" in text
    assert "Speedup of correct patches" in text


def test_analyze_json_has_the_speedup_figures(tmp_path: Path) -> None:
    import subprocess
    import sys

    from agentdata_tui.writer import write_training_data

    path = tmp_path / "perf.json"
    write_training_data(
        path, [_perf("A", 0, 2.0, status="correct"), _perf("A", 1, 12.0, status="correct")], {}
    )
    r = subprocess.run(
        [sys.executable, "-m", "agentdata_tui", "analyze", "--input", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    sp = json.loads(r.stdout)["speedup"]
    assert sp["correct"]["count"] == 2 and sp["opt_at_k"] == {"1": 1.0, "2": 1.0}
    assert sp["flagged"][0]["speedup"] == 12.0
