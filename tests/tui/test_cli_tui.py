"""The TUI subcommands' errors: one line on stderr, exit 2, before any screen opens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tui.fixtures import write_file, write_run


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agentdata_tui", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_browse_missing_or_bad_file(tmp_path: Path) -> None:
    r = run("browse", "missing.json", cwd=tmp_path)
    assert (
        r.returncode == 2
        and r.stderr.count("\n") == 1
        and "missing.json" in r.stderr
        and "Traceback" not in r.stderr
    )
    (tmp_path / "bad.json").write_text("{nope", encoding="utf-8")
    r = run("browse", "bad.json", cwd=tmp_path)
    assert r.returncode == 2 and "bad.json" in r.stderr and "Traceback" not in r.stderr


def test_watch_needs_a_run_folder(tmp_path: Path) -> None:
    r = run("watch", "nothing.json", cwd=tmp_path)
    assert r.returncode == 2 and "nothing.run" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / "empty.run").mkdir()
    r = run("watch", "empty.run", cwd=tmp_path)
    assert r.returncode == 2 and "not a run folder" in r.stderr


def test_without_a_terminal_the_tui_says_so(tmp_path: Path) -> None:
    write_file(tmp_path / "data.json", n=2)
    write_run(tmp_path / "out.run")
    for args in (("browse", "data.json"), ("watch", "out.json"), ("launch",), ()):
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 2, args
        assert "needs a terminal" in r.stderr and r.stderr.count("\n") == 1


def test_help_has_examples(tmp_path: Path) -> None:
    for sub in ("browse", "watch", "launch"):
        r = run(sub, "--help", cwd=tmp_path)
        assert r.returncode == 0 and "example" in r.stdout
