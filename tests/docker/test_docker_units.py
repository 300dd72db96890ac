"""Docker sandbox pieces that need no engine: server lists, least-busy choice, stream framing, configs."""

from __future__ import annotations

import struct
from pathlib import Path

from agentdata_tui.config import load_config
from agentdata_tui.sandbox import docker as dsb

REPO = Path(__file__).resolve().parents[2]


def test_server_lists_and_urls():
    assert dsb.parse_servers("a:1, b:2,,c:3") == ["a:1", "b:2", "c:3"]
    assert dsb.parse_servers(["a:1,b:2", "c:3"]) == ["a:1", "b:2", "c:3"]
    assert dsb.parse_servers(None) == []
    assert dsb.server_url("10.0.0.5:2375") == "tcp://10.0.0.5:2375"
    assert dsb.server_url("unix:///var/run/docker.sock") == "unix:///var/run/docker.sock"
    assert dsb.server_url(None) is None


def test_rollouts_go_to_the_least_busy_server():
    servers = ["unit-a:1", "unit-b:2", "unit-c:3"]
    taken = [dsb.acquire_server(servers) for _ in range(6)]
    assert [s.name for s in taken] == servers * 2
    dsb.release_server(taken[1])
    dsb.release_server(taken[4])  # unit-b now has none in use
    assert dsb.acquire_server(servers).name == "unit-b:2"
    for s in dsb.get_server("unit-a:1"), dsb.get_server("unit-b:2"), dsb.get_server("unit-c:3"):
        s.in_use = 0


def test_demux_and_capped_output():
    out = dsb._Output(head=10, tail=10)
    demux = dsb._Demux(out)
    frames = b"".join(
        struct.pack(">BxxxL", stream, len(d)) + d
        for stream, d in [(1, b"hello "), (2, b"err "), (1, b"x" * 50), (1, b"the end")]
    )
    for i in range(0, len(frames), 7):  # split across reads at awkward places
        demux.feed(frames[i : i + 7])
    text = out.text()
    assert text.startswith("hello err ") and text.endswith("xxxthe end") and out.truncated
    assert "bytes of output dropped" in text

    quiet = dsb._Output(keep_stderr=False)
    dsb._Demux(quiet).feed(struct.pack(">BxxxL", 2, 4) + b"oops" + struct.pack(">BxxxL", 1, 3) + b"abc")
    assert quiet.text() == "abc" and quiet.stderr_text() == "oops" and not quiet.truncated


def test_gpu_requests():
    assert dsb.gpu_request("all")["Count"] == -1
    assert dsb.gpu_request("2")["Count"] == 2
    assert dsb.gpu_request("device=0,1")["DeviceIDs"] == ["0", "1"]


def test_example_configs_load():
    local = load_config(REPO / "configs" / "docker.yaml")
    assert local.environment.environment_class == "docker" and local.environment.network == "none"
    assert local.environment.effective_interpreter() == ["bash", "-lc"]
    remote = load_config(REPO / "configs" / "docker_remote.yaml")
    env = remote.environment
    assert (env.environment_class, env.cwd, env.timeout) == (
        "docker_remote",
        "/app/rocm-libraries/projects/rocprim",
        60,
    )
    assert "/dev/kfd" in (REPO / "configs" / "docker_remote.yaml").read_text()
    assert remote.agent.system_template == load_config(None).agent.system_template


def test_images_needed_names_the_instance_without_one():
    import pytest

    from agentdata_tui.config import EnvironmentConfig
    from agentdata_tui.dataset import Instance
    from agentdata_tui.errors import UserError

    a = Instance(instance_id="a", problem_statement="", image="img:1")
    b = Instance(instance_id="b", problem_statement="")
    assert dsb.images_needed([a, a], EnvironmentConfig()) == ["img:1"]
    assert dsb.images_needed([a, b], EnvironmentConfig(image="img:2")) == ["img:1", "img:2"]
    with pytest.raises(UserError, match="instance b has no 'image'"):
        dsb.images_needed([a, b], EnvironmentConfig())


def test_command_time_is_measured_inside_the_container():
    assert dsb._measured_time("agentdata-time 1000000000 1250000000\n") == 0.25
    assert dsb._measured_time("noise\nagentdata-time 5 x") is None  # date without %N support
    assert dsb._measured_time("") is None  # killed before the end: the caller uses its own clock
