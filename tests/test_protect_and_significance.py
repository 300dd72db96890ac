"""Protected-path matching (against git's own gitignore matcher), patch filtering (against git
apply), and the Mann–Whitney U test (against textbook table values)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from agentdata_tui.evaluation.builtin import _numstat_cmd, _numstat_paths
from agentdata_tui.evaluation.protect import DEFAULT_PROTECTED, filter_patch, is_protected, split_patch
from agentdata_tui.evaluation.significance import _counts, mann_whitney

PATHS = [
    "test_calc.py",
    "pkg/test_x.py",
    "pkg/tests/helpers.py",
    "tests/conftest.py",
    "tests/deep/a/b.py",
    "test/data.json",
    "src/test/java/FooTest.java",
    "calc_test.go",
    "pkg/calc_tests.rs",
    "bench.py",
    "benchmarks/run.py",
    "tools/benchmarks/x.py",
    "benchmark_utils/x.py",
    "calc.py",
    "src/attestation.py",
    "contest.py",
    "latest/x.py",
    "docs/testing.md",
    "pkg/mytest.py",
    "README.md",
]
PATTERN_SETS = [
    list(DEFAULT_PROTECTED),
    ["/bench.py", "docs/"],
    ["**/x.py", "src/**/*.java"],
    ["tests/", "!tests/conftest.py"],
    ["*.md", "!README.md", "pkg/*.py"],
    ["te?t_*.py", "[bc]alc*.py"],
]


def _git_ignored(tmp_path: Path, patterns: list[str], paths: list[str]) -> set[str]:
    (tmp_path / ".gitignore").write_text("\n".join(patterns) + "\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    res = subprocess.run(
        ["git", "-C", str(tmp_path), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(paths) + "\n",
        capture_output=True,
        text=True,
    )
    assert res.returncode in (0, 1), res.stderr
    return set(res.stdout.split())


@pytest.mark.parametrize("patterns", PATTERN_SETS, ids=lambda p: ",".join(p))
def test_matching_is_gitignore_style_as_git_itself_matches(tmp_path: Path, patterns: list[str]) -> None:
    expected = _git_ignored(tmp_path, patterns, PATHS)
    got = {p for p in PATHS if is_protected(p, patterns)}
    assert got == expected


def test_defaults_cover_tests_and_benchmarks_anywhere() -> None:
    assert is_protected("pkg/test_x.py", DEFAULT_PROTECTED)  # the example
    assert not is_protected("calc.py", DEFAULT_PROTECTED)
    assert not is_protected("src/attestation.py", DEFAULT_PROTECTED)
    assert not is_protected("pkg/x.py", [])


def _repo_patch(tmp_path: Path) -> tuple[Path, str]:
    """A real git patch: a change, a protected change, a new protected file, a deletion, a rename
    into a protected folder, a binary file, a path with spaces."""
    repo = tmp_path / "r"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    (repo / "calc.py").write_text("x = 1\n")
    (repo / "test_calc.py").write_text("assert True\n")
    (repo / "bench.py").write_text("N = 5000\n")
    (repo / "util.py").write_text("u = 1\n" * 5)
    (repo / "my file.py").write_text("a\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "base")
    (repo / "calc.py").write_text("x = 2\n")
    (repo / "test_calc.py").write_text("pass\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "new.py").write_text("new\n")
    (repo / "bench.py").unlink()
    (repo / "benchmarks").mkdir()
    git("mv", "util.py", "benchmarks/util.py")
    (repo / "logo.bin").write_bytes(bytes(range(256)))
    (repo / "my file.py").write_text("b\n")
    git("add", "-A")
    patch = git("diff", "--cached", "--binary", "-M", "HEAD")
    git("reset", "-q", "--hard", "HEAD")
    return repo, patch


def test_filtered_patch_keeps_exactly_the_unprotected_files(tmp_path: Path) -> None:
    repo, patch = _repo_patch(tmp_path)
    _, sections = split_patch(patch)
    assert len(sections) == 7
    filtered, dropped = filter_patch(patch, DEFAULT_PROTECTED)
    assert dropped == ["bench.py", "benchmarks/util.py", "test_calc.py", "tests/new.py"]
    # git agrees on what is left, and the filtered patch applies.
    (tmp_path / "f.patch").write_text(filtered)
    stat = subprocess.run(
        ["git", "-C", str(repo), "apply", "--numstat", "-z", str(tmp_path / "f.patch")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert _numstat_paths(stat) == {"calc.py", "logo.bin", "my file.py"}
    subprocess.run(["git", "-C", str(repo), "apply", str(tmp_path / "f.patch")], check=True)
    assert (repo / "calc.py").read_text() == "x = 2\n" and (
        repo / "test_calc.py"
    ).read_text() == "assert True\n"
    assert (repo / "bench.py").exists() and (repo / "util.py").exists()
    assert (repo / "logo.bin").read_bytes() == bytes(range(256))
    # The evaluator's cross-check reads the rename's both sides (forward and reverse).
    (tmp_path / "all.patch").write_text(patch)
    stat = subprocess.run(
        ["sh", "-c", _numstat_cmd(str(tmp_path / "all.patch"))],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert {"util.py", "benchmarks/util.py", "bench.py", "tests/new.py"} <= _numstat_paths(stat)


def test_plain_unified_diffs_and_disabled_protection() -> None:
    plain = (
        "--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
        "--- a/test_calc.py\n+++ b/test_calc.py\n@@ -1,2 +1,2 @@\n--- a removed line\n+++ an added line\n"
    )
    filtered, dropped = filter_patch(plain, DEFAULT_PROTECTED)
    assert dropped == ["test_calc.py"] and filtered == plain[: plain.index("--- a/test_calc.py")]
    assert filter_patch(plain, []) == (plain, [])
    only = "--- a/tests/x.py\n+++ b/tests/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    assert filter_patch(only, DEFAULT_PROTECTED) == ("", ["tests/x.py"])


# -- Mann–Whitney U ---------------------------------------------------------------------------


def test_u_distribution_matches_the_textbook_counts() -> None:
    assert _counts(3, 3) == [1, 1, 2, 3, 3, 3, 3, 2, 1, 1]
    for n, m in ((5, 5), (4, 7), (10, 10)):
        counts = _counts(n, m)
        assert sum(counts) == math.comb(n + m, n) and counts == counts[::-1]


@pytest.mark.parametrize(
    ("base", "patched", "u", "p"),
    [
        ([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], 25, 1 / 252),  # the smallest p with 5 repeats
        ([6, 7, 8, 9, 10], [1, 2, 3, 4, 11], 20, 19 / 252),  # U = 20: P(U >= 20) = 19/252 (tables)
        ([5, 7, 8, 9, 10], [1, 2, 3, 4, 6], 24, 2 / 252),
        ([4, 5, 6], [1, 2, 3], 9, 1 / 20),
        ([1, 2, 3], [4, 5, 6], 0, 1.0),  # patched slower: nothing to credit
        ([2, 2, 3], [1, 1, 2], 8, 3 / 20),  # ties: exact over all splits of the pooled times
    ],
)
def test_mann_whitney_on_fixed_timings(base, patched, u, p) -> None:
    res = mann_whitney(base, patched)
    assert res.u == u and res.p_value == pytest.approx(p, abs=1e-9)


def test_mann_whitney_large_samples_use_the_normal_approximation() -> None:
    base = [1.0 + i / 100 for i in range(60)]
    same = mann_whitney(base, list(base))
    assert same.method == "asymptotic" and 0.4 < same.p_value < 0.6
    faster = mann_whitney(base, [b - 0.2 for b in base])
    assert faster.p_value < 1e-4
    # Without ties the exact and approximate p agree closely at moderate sizes.
    b = [i * 1.0 for i in range(0, 40, 2)]
    q = [i * 1.0 + 0.5 for i in range(-6, 34, 2)]
    exact = mann_whitney(b, q)
    assert exact.method == "exact"
    from agentdata_tui.evaluation.significance import _asymptotic

    assert _asymptotic(exact.u, 20, 20, [*b, *q]) == pytest.approx(exact.p_value, abs=0.01)
