"""The local sandbox cannot read secrets or write outside its copy (issue 9, DESIGN §6).

The must-show adversary runs through the real CLI (``generate-multi`` with ``--api-key`` on its
command line, the key and the eval token in its environment), a loopback model server playing
the agent's commands, and the local sandbox under bubblewrap. Reproduced on main:
``tr '\\0' '\\n' < /proc/$PPID/environ`` printed OPENAI_API_KEY and AGENTDATA_EVAL_TOKEN, and
the observation carried them to the model server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from host_procs import host_pids_with
from servers.model_server import ModelServer, ScriptedResponder

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.errors import UserError
from agentdata_tui.sandbox import SandboxContext
from agentdata_tui.sandbox.isolation import bwrap_path, check_isolation
from agentdata_tui.sandbox.local import LocalSandbox

pytestmark = pytest.mark.skipif(
    bwrap_path() is None, reason="bubblewrap is not installed (.ci/run installs it)"
)

KEY = "sk-ARGV-secret-5c1e9a"
ENV_KEY = "sk-ENV-secret-77d0b4"
TOKEN = "evaltok-ENV-secret-0f3a"
DOTENV = "DOTENV-secret-a81c"
SECRETS = (KEY, ENV_KEY, TOKEN, DOTENV)

READ_PROC = (
    "umount -l /proc; echo umount=$?; mount -t proc proc /proc; echo mount=$?; "
    "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do echo \"== $f\"; tr '\\0' '\\n' < \"$f\"; echo; done; "
    "echo \"== parent $PPID\"; tr '\\0' ' ' < /proc/$PPID/cmdline; echo; ls /proc | grep -c '^[0-9]'"
)


def _cmd(command: str) -> str:
    return f"THOUGHT: let me look.\n\n```bash\n{command}\n```"


@pytest.fixture(params=["launcher", "bwrap-per-command"])
def launch_mode(request, monkeypatch) -> str:
    """Both ways the local sandbox starts a command: in its one namespace, by the launcher (the
    default), and each under a bubblewrap of its own (where the sandbox has no Python)."""
    monkeypatch.setenv("AGENTDATA_LAUNCHER", "1" if request.param == "launcher" else "0")
    return request.param


def test_the_adversary_finds_no_secret_and_cannot_write_outside(tmp_path: Path, launch_mode: str) -> None:
    home = tmp_path / "caller-home"
    home.mkdir()
    (home / ".bashrc").write_text("# the caller's shell\n")
    (home / ".env").write_text(f"OPENAI_API_KEY={DOTENV}\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "app.py").write_text("x = 1\n")
    dataset = tmp_path / "dataset.json"
    dataset.write_text(
        json.dumps(
            [
                {
                    "instance_id": "leak-1",
                    "problem_statement": "[leak-1] look around",
                    "repo_path": str(repo),
                    "eval": {"test_command": "true", "timeout": 30},
                }
            ]
        )
    )
    out = tmp_path / "runs" / "out.json"
    run_dir = out.with_suffix(".run")
    writes = (
        f"echo pwned >> {run_dir}/examples.jsonl; echo w_run=$?; "
        f"echo pwned >> {home}/.bashrc; echo w_home=$?; cat {home}/.env; echo r_env=$?; "
        "echo pwned > /usr/pwned; echo w_usr=$?; echo ok > /tmp/mine && cat /tmp/mine; "
        "sleep 2.7182"
    )
    script = [_cmd(READ_PROC), _cmd(writes), _cmd("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL",)}
    env.update(OPENAI_API_KEY=ENV_KEY, AGENTDATA_EVAL_TOKEN=TOKEN, HOME=str(home))
    with ModelServer(ScriptedResponder({"[leak-1]": script})) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentdata_tui", "generate-multi", "--dataset", str(dataset),
             "--base-url", server.base_url, "--api-key", KEY, "--model", "test-model",
             "--output", str(out), "--workers", "1", "--environment-class", "local"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            # While the second command sleeps, look at every process from the host: the key and the
            # token are in no child's argv or environment (only the CLI's own, as the user typed it).
            assert server.wait_for_requests(3, timeout=60)  # the models list, then two steps
            leaks = []
            deadline = time.monotonic() + 20
            seen_sleep = False
            while time.monotonic() < deadline and not seen_sleep:
                for p in Path("/proc").glob("[0-9]*"):
                    if int(p.name) == proc.pid:
                        continue
                    try:
                        data = (p / "cmdline").read_bytes() + b"\0" + (p / "environ").read_bytes()
                    except OSError:
                        continue
                    seen_sleep |= b"2.7182" in data
                    leaks += [(p.name, s) for s in SECRETS if s.encode() in data and b"pytest" not in data]
                time.sleep(0.05)
            assert seen_sleep, "the sandbox's command never showed up"
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        requests = server.chat_requests()
    assert proc.returncode == 0, stderr
    assert leaks == []
    assert "isolated by bubblewrap" in stderr
    # What the model received: the observations of both commands, and never a secret.
    bodies = [r.raw.decode() for r in requests]
    for s in SECRETS:
        assert all(s not in b for b in bodies), s
    observed = requests[1].body["messages"][-1]["content"]
    assert "umount=0" not in observed and "mount=0" not in observed
    assert "== /proc/1/environ" in observed and "PATH=" in observed  # it did read what it could see
    assert "HOME=" + str(home) not in observed
    writes_seen = requests[2].body["messages"][-1]["content"]
    for flag in ("w_run", "w_home", "r_env", "w_usr"):
        assert f"{flag}=0" not in writes_seen, (flag, writes_seen)
    assert "ok" in writes_seen  # its own /tmp is writable
    assert (home / ".bashrc").read_text() == "# the caller's shell\n"
    assert not Path("/usr/pwned").exists()
    lines = (run_dir / "examples.jsonl").read_text().splitlines()
    assert "pwned" not in lines  # the run folder was not written to (only our own record is there)
    (ex,) = [json.loads(line) for line in lines]
    assert ex["exit_status"] == "Submitted" and ex["evaluation_info"]["status"] == "no_patch"


def test_isolated_commands_see_only_their_own_processes(tmp_path: Path, launch_mode: str) -> None:
    inst = Instance(instance_id="iso", problem_statement="p")
    with LocalSandbox(inst, EnvironmentConfig(), context=SandboxContext()) as sb:
        assert sb.isolated
        assert (sb._launcher is not None) == (launch_mode == "launcher")
        res = sb.execute(
            "for p in /proc/[0-9]*; do tr '\\0\\n' '  ' < $p/cmdline | cut -c1-40; echo; done | grep . | sort"
        )
        seen = res.output.splitlines()
        # the namespace's init (bwrap's, or the launcher), this bash, its tr/cut/grep/sort: nothing else
        allowed = ("bwrap ", "/usr/bin/bwrap ", "bash -c ", "tr ", "cut ", "grep ", "sort")

        def launcher(line: str) -> bool:
            return launch_mode == "launcher" and line.split()[0].endswith("python3") and " -I -S -c " in line

        assert seen and all(line.startswith(allowed) or launcher(line) for line in seen), seen
        assert sum(map(launcher, seen)) == (1 if launch_mode == "launcher" else 0)
        assert sum("bwrap " in line for line in seen) == (0 if launch_mode == "launcher" else 1)
        # Its files: only the standard three (never the launcher's socket, nor another pipe).
        fds = sb.execute("ls /proc/$$/fd; true").output.split()  # "; true": bash stays itself
        assert sorted(fds) == ["0", "1", "2"]
        assert sb.execute("cat /proc/self/status | grep CapEff").output.split()[-1] == "0" * 16
        # Our own git bookkeeping runs inside too: `git add` runs a repo's core.fsmonitor command,
        # which an agent can set; outside the sandbox it would write this host file.
        marker = tmp_path / "fsmonitor-ran"
        sb.execute(f"git config core.fsmonitor 'echo ran > {marker}; false'")
        sb.diff()
        assert not marker.exists()


def test_resource_limits_from_the_config(tmp_path: Path) -> None:
    inst = Instance(instance_id="lim", problem_statement="p")
    cfg = EnvironmentConfig(memory="256m", file_size_limit="1m")
    with LocalSandbox(inst, cfg, context=SandboxContext()) as sb:
        big = sb.execute("head -c 5000000 /dev/zero > big.bin; echo rc=$?; stat -c %s big.bin")
        assert "rc=0" not in big.output and big.output.split()[-1] == str(1 << 20)
        mem = sb.execute("python3 -c 'b = bytearray(600 * 1024 * 1024)' 2>&1; echo rc=$?")
        assert "MemoryError" in mem.output and "rc=1" in mem.output
        assert sb.execute("true").returncode == 0


def test_without_bubblewrap_a_real_model_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AGENTDATA_BWRAP", "")
    bwrap_path.cache_clear()
    try:
        with pytest.raises(UserError) as err:
            check_isolation("local", real_model=True, allow_unisolated=False)
        text = str(err.value)
        assert "--allow-unisolated-local" in text and "'bubblewrap'" in text and "\n" not in text
        check_isolation("local", real_model=True, allow_unisolated=True)  # opted in
        check_isolation("local", real_model=False, allow_unisolated=False)  # the demo's scripted model
        check_isolation("docker", real_model=True, allow_unisolated=False)
        env = dict(os.environ, AGENTDATA_BWRAP="")
        (tmp_path / "x.json").write_text(json.dumps([{"instance_id": "a", "problem_statement": "p"}]))
        r = subprocess.run(
            [sys.executable, "-m", "agentdata_tui", "generate-multi", "--dataset", str(tmp_path / "x.json"),
             "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--environment-class", "local",
             "--output", str(tmp_path / "o.json")],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert r.returncode == 2 and "--allow-unisolated-local" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        # The bundled demo (scripted model) still works without bubblewrap, and without servers.
        r = subprocess.run(
            [sys.executable, "-m", "agentdata_tui", "demo", "--headless", "--output", str(tmp_path / "d.json")],
            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    finally:
        bwrap_path.cache_clear()


def test_a_runner_killed_with_sigkill_leaves_no_sandboxed_process(tmp_path: Path, launch_mode: str) -> None:
    """Nothing a command started (backgrounded included) outlives a runner killed with SIGKILL."""
    child = (
        "from agentdata_tui.config import EnvironmentConfig\n"
        "from agentdata_tui.dataset import Instance\n"
        "from agentdata_tui.sandbox import SandboxContext\n"
        "from agentdata_tui.sandbox.local import LocalSandbox\n"
        "sb = LocalSandbox(Instance(instance_id='k', problem_statement='p'), EnvironmentConfig(), context=SandboxContext())\n"
        "sb.start()\n"
        "print('started', flush=True)\n"
        "sb.execute('(sleep 300.9191 &) ; sleep 300.9192', timeout=600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while not (host_pids_with("300.9191") and host_pids_with("300.9192")):
            assert time.monotonic() < deadline, "the sandboxed commands never started"
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no cleanup code of ours runs
        proc.wait()
        deadline = time.monotonic() + 10
        while (host_pids_with("300.9191") or host_pids_with("300.9192")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert host_pids_with("300.9191") == [] and host_pids_with("300.9192") == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in host_pids_with("300.9191") + host_pids_with("300.9192"):
            os.kill(pid, 9)
