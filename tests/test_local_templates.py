"""Local sandboxes start from a per-run template of their repo_path (sandbox/local.py): what a
sandbox starts with is the source, whatever another sandbox of the same repo did; no sandbox can
reach the template; templates go at the run's end; a failed one is not kept."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from agentdata_tui.config import EnvironmentConfig, load_config
from agentdata_tui.dataset import Instance, load_dataset
from agentdata_tui.interfaces import SandboxError
from agentdata_tui.sandbox import local
from agentdata_tui.sandbox.isolation import bwrap_path
from agentdata_tui.sandbox.local import LocalSandbox, remove_templates


class _Ctx:
    def __init__(self, repo: Path | None) -> None:
        self.repo_dir = repo
        self.diff_base = True


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch) -> Path:
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    yield private
    remove_templates()


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "src"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (repo / "README").write_text("hello\n")
    return repo


def _sandbox(repo: Path | None, iid: str = "t-1", setup: str | None = None) -> LocalSandbox:
    inst = Instance(instance_id=iid, problem_statement="p", setup_command=setup)
    return LocalSandbox(inst, EnvironmentConfig(), _Ctx(repo))


def _templates(private: Path) -> list[str]:
    return sorted(p.name for p in private.iterdir() if "-template-" in p.name)


@pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap (bash .ci/bubblewrap-setup.sh)")
def test_what_one_sandbox_does_never_reaches_the_next_ones_start(tmp_path: Path, private_tmp: Path) -> None:
    """An adversarial agent in the first sandbox rewrites the repo, our base.git and anything it can
    write, and looks for the template: the second sandbox of the same repo starts as the source."""
    repo = _repo(tmp_path)
    with _sandbox(repo) as first:
        assert len(_templates(private_tmp)) == 1
        found = first.execute(
            "find / -xdev -name '*template*' -path '*agentdata*' 2>/dev/null; "
            "ls -d /tmp/agentdata-* 2>/dev/null; echo end"
        )
        assert found.output.strip() == "end", "the template is out of every sandbox's sight"
        vandal = first.execute(
            "echo BROKEN > pkg/mod.py && rm README && echo new > extra.txt"
            f" && for f in $(find {first.root}/base.git -type f); do echo junk > $f; done"
            ' && find / -xdev -writable -type f 2>/dev/null | while read f; do echo junk >> "$f"; done; true'
        )
        assert vandal.returncode == 0
    with _sandbox(repo) as second:
        assert (second.work / "pkg" / "mod.py").read_text() == "VALUE = 1\n"
        assert (second.work / "README").read_text() == "hello\n"
        assert not (second.work / "extra.txt").exists()
        assert second.diff() == ("", False), "the diff base is the source's, untouched"
        second.execute("echo 2 > pkg/mod.py")
        patch, _ = second.diff()
        assert "-VALUE = 1" in patch and "+2" in patch
    assert (repo / "pkg" / "mod.py").read_text() == "VALUE = 1\n", "the source is never written"


def test_one_template_per_repo_and_kind_built_once(tmp_path: Path, private_tmp: Path, monkeypatch) -> None:
    repo = _repo(tmp_path)
    builds: list[tuple[str | None, bool]] = []
    real = local._Template.build

    def counting(self) -> None:
        builds.append((str(self.src) if self.src else None, self.snapshot))
        real(self)

    monkeypatch.setattr(local._Template, "build", counting)
    for i in range(3):
        with _sandbox(repo, f"t-{i}") as sb:
            assert sb.base_tree
    with _sandbox(None, "empty") as sb:
        assert sb.diff() == ("", False)
    with _sandbox(repo, "with-setup", setup="echo made > setup.txt") as sb:
        assert (sb.work / "setup.txt").exists()
        assert sb.diff() == ("", False), "the base is taken after the setup_command"
    assert builds == [(str(repo), True), (None, True), (str(repo), False)]
    assert len(_templates(private_tmp)) == 3
    remove_templates()
    assert _templates(private_tmp) == []


def test_least_recently_used_templates_go_past_the_limit(
    tmp_path: Path, private_tmp: Path, monkeypatch
) -> None:
    monkeypatch.setattr(local, "TEMPLATES_KEPT", 2)
    repos = []
    for i in range(3):
        r = tmp_path / f"r{i}"
        r.mkdir()
        (r / "f").write_text(str(i))
        repos.append(r)
    for r in repos:
        with _sandbox(r) as sb:
            assert (sb.work / "f").read_text() == r.name[1:]
    assert len(_templates(private_tmp)) == 2, "the oldest was removed"
    with _sandbox(repos[0]) as sb:  # made again when needed
        assert (sb.work / "f").read_text() == "0"


def test_a_template_that_cannot_be_made_is_a_sandbox_error_and_not_kept(
    tmp_path: Path, private_tmp: Path, monkeypatch
) -> None:
    repo = _repo(tmp_path)
    nogit = tmp_path / "bin"
    nogit.mkdir()
    for tool in ("sh", "cp", "mkdir", "rm"):
        (nogit / tool).symlink_to(shutil.which(tool))
    with monkeypatch.context() as m:
        m.setenv("PATH", str(nogit))  # no git on the PATH: the copy cannot be git-initialised
        with pytest.raises(SandboxError, match="preparing the copy of .*git"):
            _sandbox(repo).start()
    assert _templates(private_tmp) == [], "a failed template leaves nothing"
    with _sandbox(repo) as sb:  # the next start tries again, and succeeds
        assert (sb.work / "README").read_text() == "hello\n" and sb.base_tree


def test_a_run_removes_its_templates(tmp_path: Path, private_tmp: Path) -> None:
    from servers.model_server import ModelServer, ScriptedResponder
    from test_runner import make_runner, scripts_for

    (tmp_path / "ds.json").write_text(
        json.dumps(
            [{"instance_id": f"task-{i:03d}", "problem_statement": f"[task-{i:03d}]"} for i in range(3)]
        )
    )
    ds = load_dataset(tmp_path / "ds.json")
    with ModelServer(ScriptedResponder(scripts_for(3))) as server:
        outcome = make_runner(server, ds, tmp_path / "o.json", workers=2).run()
    assert outcome.counts["finished"] == 3
    assert [p.name for p in private_tmp.iterdir() if p.name.startswith("agentdata-")] == []
    assert load_config()  # the run used the default config


def test_a_large_repo_is_copied_straight_into_each_sandbox(
    tmp_path: Path, private_tmp: Path, monkeypatch
) -> None:
    """No template (one more copy on disk per repo in use) past the size limits: the sandbox is
    prepared in place, as it always was, with the same contents and diff base."""
    monkeypatch.setattr(local, "TEMPLATE_MAX_ENTRIES", 2)
    monkeypatch.setattr(local, "_SMALL", {})
    repo = _repo(tmp_path)
    assert local.templated(repo) is False and local.templated(None) is True
    with _sandbox(repo) as sb:
        assert (sb.work / "pkg" / "mod.py").read_text() == "VALUE = 1\n"
        assert sb.diff() == ("", False)
        sb.execute("echo 2 > pkg/mod.py && echo new > extra.txt")
        patch, _ = sb.diff()
        assert "+2" in patch and "extra.txt" in patch
    with _sandbox(repo, "s", setup="echo made > setup.txt") as sb:
        assert sb.diff() == ("", False), "the base is taken after the setup_command"
    assert _templates(private_tmp) == []
