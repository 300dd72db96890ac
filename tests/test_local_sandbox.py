"""The local sandbox: real processes in a real temporary copy (DESIGN §4, §6)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.interfaces import SandboxError
from agentdata_tui.sandbox import SandboxContext, make_sandbox
from agentdata_tui.sandbox.local import DIFF_LIMIT, OUTPUT_HEAD, OUTPUT_TAIL, LocalSandbox


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("def add(a, b):\n    return a - b\n")
    (src / "README.md").write_text("demo\n")
    return src


def _sandbox(repo: Path | None, **inst) -> LocalSandbox:
    instance = Instance(instance_id="t1", problem_statement="fix it", **inst)
    env = EnvironmentConfig(env={"PAGER": "cat"})
    return LocalSandbox(instance, env, context=SandboxContext(repo_dir=repo))


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """True when the process no longer exists or is a zombie waiting to be reaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_make_sandbox_builds_local(repo: Path) -> None:
    inst = Instance(instance_id="x", problem_statement="p")
    sb = make_sandbox(inst, EnvironmentConfig(), SandboxContext(repo_dir=repo))
    assert isinstance(sb, LocalSandbox)


def test_copy_is_private_and_removed(repo: Path) -> None:
    sb = _sandbox(repo)
    sb.start()
    root = sb.root
    assert root is not None and root.exists()
    res = sb.execute("cat app.py && echo changed > app.py")
    assert "return a - b" in res.output and res.returncode == 0
    assert (repo / "app.py").read_text().endswith("return a - b\n"), "the original must stay untouched"
    sb.close()
    assert not root.exists()
    with pytest.raises(SandboxError):
        sb.execute("true")


def test_scrubbed_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-should-not-leak")
    monkeypatch.setenv("AGENTDATA_EVAL_TOKEN", "tok-secret")
    with _sandbox(repo) as sb:
        out = sb.execute("env").output
    assert "sk-secret-should-not-leak" not in out and "tok-secret" not in out
    names = {line.split("=", 1)[0] for line in out.splitlines() if "=" in line}
    assert {"PATH", "HOME", "LANG", "TERM", "PAGER"} <= names
    assert names - {"PATH", "HOME", "LANG", "TERM", "PAGER", "PWD", "SHLVL", "_", "OLDPWD"} == set()
    home = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("HOME="))
    assert home != os.environ.get("HOME") and "agentdata-sbx-" in home


def _running_with(arg: str) -> list[int]:
    """Host pids whose command line holds ``arg`` (a sandbox's own pids mean nothing here)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if arg.encode() in cmdline and state not in ("Z", "X"):
            pids.append(int(proc.name))
    return pids


def test_timeout_kills_process_group_including_background_child(repo: Path) -> None:
    with _sandbox(repo) as sb:
        t0 = time.monotonic()
        res = sb.execute("sleep 300.4242 & echo started; sleep 300", timeout=1)
        assert time.monotonic() - t0 < 10
        assert res.timed_out and res.returncode != 0
        deadline = time.monotonic() + 5
        while _running_with("300.4242") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _running_with("300.4242") == [], "the backgrounded child must die with its command"


def test_output_capped_and_flagged(repo: Path) -> None:
    with _sandbox(repo) as sb:
        res = sb.execute("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo THE-END")
    assert res.output_truncated
    assert OUTPUT_HEAD + OUTPUT_TAIL <= len(res.output) < OUTPUT_HEAD + OUTPUT_TAIL + 200  # the 1 MiB bound
    assert res.output.rstrip().endswith("THE-END"), "the tail of the output is kept"


def test_timeout_is_reported_as_mini_swe_agent_2_does(repo: Path) -> None:
    with _sandbox(repo) as sb:
        res = sb.execute("echo partial; sleep 30", timeout=1)
    assert res.timed_out and res.returncode == -1 and res.output == "partial\n"
    assert res.exception_info == (
        "An error occurred while executing the command: Command 'echo partial; sleep 30' timed out after 1 seconds"
    )


def test_returncode_and_merged_stderr(repo: Path) -> None:
    with _sandbox(repo) as sb:
        res = sb.execute("echo out; echo err >&2; exit 3")
    assert res.returncode == 3 and "out" in res.output and "err" in res.output
    assert not res.timed_out


def test_diff_includes_new_files_excludes_setup_artefacts(repo: Path) -> None:
    setup = "mkdir -p build && echo artefact > build/generated.txt && python3 -c 'import app'"
    with _sandbox(repo, setup_command=setup) as sb:
        sb.execute("sed -i 's/a - b/a + b/' app.py && echo hello > new_file.txt && python3 -c 'import app'")
        patch, truncated = sb.diff()
    assert not truncated
    assert "+    return a + b" in patch
    assert "new_file.txt" in patch and "+hello" in patch
    assert "generated.txt" not in patch
    assert "__pycache__" not in patch and ".pyc" not in patch
    # The patch applies to a fresh copy of the original.
    check = subprocess.run(["git", "apply", "--check", "-"], cwd=_init_git(repo), input=patch.encode())
    assert check.returncode == 0


def _init_git(repo: Path) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def test_diff_cut_at_one_megabyte(repo: Path) -> None:
    with _sandbox(repo) as sb:
        sb.execute("python3 -c \"open('big.txt','w').write(('y' * 99 + '\\n') * 15000)\"")
        patch, truncated = sb.diff()
    assert truncated
    assert len(patch.encode()) <= DIFF_LIMIT
    assert patch.endswith("\n")


def test_empty_folder_without_repo_path() -> None:
    with _sandbox(None) as sb:
        assert sb.execute("ls -A | grep -v '^.git$' | wc -l").output.strip() == "0"
        sb.execute("echo hi > hello.txt")
        patch, _ = sb.diff()
    assert "hello.txt" in patch


def test_relative_cwd_and_failing_setup(repo: Path) -> None:
    (repo / "sub" / "dir").mkdir(parents=True)
    (repo / "sub" / "dir" / "x.py").write_text("")
    with _sandbox(repo, cwd="sub/dir") as sb:
        assert sb.execute("pwd").output.strip().endswith("repo/sub/dir")
    sb = _sandbox(repo, setup_command="echo broken-setup; exit 7")
    with pytest.raises(SandboxError, match="broken-setup"):
        sb.start()
    assert sb.root is None, "a failed start cleans up after itself"


def test_missing_repo_is_sandbox_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError):
        _sandbox(tmp_path / "nope").start()


def test_interpreter_is_configurable(repo: Path) -> None:
    inst = Instance(instance_id="t", problem_statement="p")
    env = EnvironmentConfig(interpreter=["sh", "-c"])
    with LocalSandbox(inst, env, context=SandboxContext(repo_dir=repo)) as sb:
        assert sb.execute("echo $0").output.strip() == "sh"
    env = EnvironmentConfig(interpreter=["/no/such/interpreter"])
    sb = LocalSandbox(inst, env, context=SandboxContext(repo_dir=repo))
    with pytest.raises(SandboxError, match="cannot run '/no/such/interpreter'"):
        sb.start()  # found out before any command runs
    assert sb.root is None


def test_git_file_pointing_elsewhere_is_replaced(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.git"
    (repo / ".git").write_text(f"gitdir: {elsewhere}\n")
    with _sandbox(repo) as sb:
        sb.execute("echo x > added.txt")
        patch, _ = sb.diff()
    assert "added.txt" in patch and not elsewhere.exists()


def test_copied_git_repository_is_kept_for_the_agent(repo: Path) -> None:
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "HOME": str(repo)}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env={**os.environ, **env})
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env={**os.environ, **env})
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"],
        cwd=repo,
        check=True,
        env={**os.environ, **env},
    )
    with _sandbox(repo) as sb:
        assert "base" in sb.execute("git log --oneline").output
        sb.execute("sed -i 's/a - b/a + b/' app.py")
        assert "+    return a + b" in sb.execute("git diff").output, "the agent's own git view works"
        patch, _ = sb.diff()
    assert "+    return a + b" in patch
    assert (
        subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
        == ""
    )


def test_symlinked_repo_path_is_copied_not_linked(repo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-repo"
    link.symlink_to(repo, target_is_directory=True)
    with _sandbox(link) as sb:
        sb.execute("echo changed > app.py && echo new > fresh.txt")
        assert "fresh.txt" in sb.diff()[0]
    assert (repo / "app.py").read_text().startswith("def add"), "the original is untouched"
    assert not (repo / "fresh.txt").exists()


def test_sweep_removes_what_killed_runs_left(tmp_path: Path) -> None:
    from agentdata_tui.sandbox.local import PREFIX, sweep_orphans

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer exists
    orphan = tmp_path / f"{PREFIX}{dead.pid}-abc"
    (orphan / "repo").mkdir(parents=True)
    straggler = subprocess.Popen(["sleep", "300"], cwd=orphan / "repo")  # a command that outlived its run
    mine = tmp_path / f"{PREFIX}{os.getpid()}-def"
    mine.mkdir()
    other = tmp_path / "agentdata-sbx-notapid"
    other.mkdir()
    try:
        assert sweep_orphans(tmp_path) == 1
        assert straggler.wait(10) == -9
    finally:
        if straggler.poll() is None:
            straggler.kill()
    assert not orphan.exists() and mine.exists() and other.exists()


@pytest.mark.parametrize("cwd", ["/testbed", "no/such/dir", "../outside"])
def test_a_cwd_missing_from_the_sandbox_is_a_sandbox_error(repo: Path, cwd: str) -> None:
    """Reproduced on main: cwd /testbed (mini-swe-agent's swebench.yaml) ran commands at the repo
    root instead, and an evaluation's tests ran 600 s until their timeout."""
    sb = _sandbox(repo, cwd=cwd)
    with pytest.raises(SandboxError, match=f"cwd '{re.escape(cwd)}'") as err:
        sb.start()
    assert "\n" not in str(err.value) and sb.root is None
    # The evaluator reports it as a sandbox failure, not as a reward.
    from agentdata_tui.evaluation import BuiltinEvaluator

    inst = {"instance_id": "t", "problem_statement": "p", "cwd": cwd, "eval": {"test_command": "true"}}
    ev = BuiltinEvaluator(
        lambda i: LocalSandbox(i, EnvironmentConfig(), context=SandboxContext(repo_dir=repo))
    )
    with pytest.raises(SandboxError, match="evaluation sandbox: cwd"):
        ev.evaluate(inst, "--- /dev/null\n+++ b/n.txt\n@@ -0,0 +1 @@\n+x\n")


def test_a_containers_shell_startup_file_is_not_sourced_locally(repo: Path, tmp_path: Path) -> None:
    """mini-swe-agent's swebench.yaml sets BASH_ENV=/root/.bashrc for its image; locally that would
    be this machine's rc file, printed into every output (a submission would never count). As
    mini-swe-agent's local environment (``sh``, which ignores BASH_ENV), the sandbox leaves it out."""
    rc = tmp_path / "noisy.rc"
    rc.write_text("echo NOISE-FROM-RC\n")
    instance = Instance(instance_id="t1", problem_statement="fix it")
    env = EnvironmentConfig(
        env={"BASH_ENV": str(rc), "ENV": str(rc), "PAGER": "cat"}, interpreter=["bash", "-c"]
    )
    with LocalSandbox(instance, env, context=SandboxContext(repo_dir=repo)) as sb:
        res = sb.execute("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT; echo $PAGER")
        assert res.output == "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\ncat\n"
        assert "BASH_ENV" not in sb.template_env() and sb.template_env()["PAGER"] == "cat"


def test_put_file_is_readable_inside_private_and_removed(repo: Path) -> None:
    sb = _sandbox(repo)
    sb.start()
    try:
        path = sb.put_file("agentdata-t.patch", b"payload\n")
        res = sb.execute(f"cat {path}")
        assert res.returncode == 0 and res.output == "payload\n"
        assert sb.diff() == ("", False)  # not part of the repo, so never part of a patch
        with pytest.raises(SandboxError):
            sb.put_file("agentdata-t.patch", b"again")  # never overwrites
        with pytest.raises(ValueError):
            sb.put_file("../escape", b"x")
        root = sb.root
    finally:
        sb.close()
    assert root is not None and not root.exists()
