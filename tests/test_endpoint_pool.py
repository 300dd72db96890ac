"""Several model endpoints (issue 13 §2): sticky routing, least-loaded placement, failover, re-probing.

Real HTTP to loopback servers; the runner test kills one server process mid-run (SIGKILL) and
restarts it on its port: no rollout is lost or doubled, the rollouts it had move, and it is
taken back once it answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from servers.model_server import ModelServer, ModelServerProcess, ScriptedResponder
from test_runner import scripts_for, write_dataset

from agentdata_tui.config import load_config
from agentdata_tui.dataset import load_dataset
from agentdata_tui.interfaces import ModelError, RolloutContext
from agentdata_tui.model.pool import EndpointPool, build_model, split_endpoints
from agentdata_tui.runner import Runner, RunSpec
from agentdata_tui.runner.components import evaluator_for, sandbox_maker

MSGS = [{"role": "system", "content": "sys"}]


def wait_until(pred, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll a condition the code under test changes (no fixed sleep stands for an event)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def ask(pool: EndpointPool, iid: str, n: int = 1) -> None:
    ctx = RolloutContext(iid, 0, 1, "run-x")
    for k in range(n):
        pool.query([*MSGS, {"role": "user", "content": f"[{iid}] turn {k}"}], context=ctx)


def served_by(servers: list[ModelServer]) -> dict[str, set[int]]:
    """instance tag → indexes of the servers that received its requests."""
    out: dict[str, set[int]] = {}
    for i, srv in enumerate(servers):
        for req in srv.chat_requests():
            text = req.body["messages"][-1]["content"]
            out.setdefault(text.split("]")[0] + "]", set()).add(i)
    return out


def test_split_endpoints() -> None:
    assert split_endpoints(" http://a/v1/, http://b/v1 ,,http://a/v1") == ["http://a/v1", "http://b/v1"]
    assert split_endpoints(["http://a/v1"]) == ["http://a/v1"]
    assert split_endpoints(None) == []


def test_rollouts_stick_to_one_endpoint_and_spread_by_load() -> None:
    config = load_config().model
    servers = [ModelServer(latency=0.05).start() for _ in range(3)]
    pool = EndpointPool([s.base_url for s in servers], "sk-pool-key", "m", config, pool_size=8)
    try:
        threads = [threading.Thread(target=ask, args=(pool, f"task-{i}", 4)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        by_rollout = served_by(servers)
        assert len(by_rollout) == 6 and all(len(v) == 1 for v in by_rollout.values()), by_rollout
        # 6 rollouts placed one by one on the least-loaded endpoint: two each.
        assert Counter(next(iter(v)) for v in by_rollout.values()) == Counter({0: 2, 1: 2, 2: 2})
        stats = pool.stats()
        assert [s["requests"] for s in stats] == [8, 8, 8] and all(s["errors"] == 0 for s in stats)
        assert all(s["rollouts"] == 2 and s["mean_latency_s"] >= 0.05 for s in stats)
        info = pool.end_rollout(RolloutContext("task-0", 0, 1, "run-x"))
        assert info["endpoint"] in {s.base_url for s in servers} and len(info["endpoints_used"]) == 1
        assert sum(s["rollouts"] for s in pool.stats()) == 5
        # The next rollout goes where the freed place is.
        ask(pool, "task-new")
        assert served_by(servers)["[task-new]"] == {
            servers.index(next(s for s in servers if s.base_url == info["endpoint"]))
        }
        assert "sk-pool-key" not in repr(pool)
    finally:
        pool.close()
        for s in servers:
            s.stop()


def test_failing_endpoint_is_taken_out_its_rollout_moves_and_it_comes_back() -> None:
    config = load_config().model
    a, b = ModelServer().start(), ModelServer().start()
    pool = EndpointPool([a.base_url, b.base_url], None, "m", config, probe_min_s=0.1)
    try:
        ask(pool, "one")  # → a (first of the least loaded)
        ask(pool, "two")  # → b
        assert served_by([a, b]) == {"[one]": {0}, "[two]": {1}}
        b.add_faults(("status", 503))  # b fails the next request: "two" moves to a at once
        ask(pool, "two")
        assert served_by([a, b])["[two]"] == {0, 1}
        st = pool.stats()[1]
        assert st["errors"] == 1 and st["moved_away"] == 1 and st["times_down"] == 1
        # The prober asks b GET /models; it answers, so b is back without any request failing.
        wait_until(lambda: pool.stats()[1]["healthy"], 10, "b back in")
        ask(pool, "three")  # a holds two rollouts, b none: b
        assert served_by([a, b])["[three]"] == {1}
        info = pool.end_rollout(RolloutContext("two", 0, 1, "run-x"))
        assert info["endpoints_used"] == [b.base_url, a.base_url]
        # A refusal (4xx) is the request's fault, not the endpoint's: it stays in.
        b.add_faults(("error", 400, "bad request"))
        with pytest.raises(ModelError, match="bad request"):
            ask(pool, "three")
        assert pool.stats()[1]["healthy"] and pool.stats()[1]["times_down"] == 1
    finally:
        pool.close()
        a.stop()
        b.stop()


def test_all_endpoints_down_ends_in_a_model_error() -> None:
    config = load_config().model.model_copy(update={"max_retries": 2})
    a, b = ModelServer().start(), ModelServer().start()
    a.add_faults(*[("status", 500)] * 5)
    b.add_faults(*[("status", 502)] * 5)

    def never(url: str) -> None:
        raise ModelError("probe refused")

    pool = EndpointPool([a.base_url, b.base_url], None, "m", config, probe_min_s=0.05, prober=never)
    try:
        t0 = time.monotonic()
        with pytest.raises(ModelError, match="all 2 model endpoints failed"):
            ask(pool, "x")
        assert time.monotonic() - t0 < 10
        assert [s["healthy"] for s in pool.stats()] == [False, False]
    finally:
        pool.close()
        a.stop()
        b.stop()


def test_build_model_one_url_is_the_plain_client() -> None:
    from agentdata_tui.model.client import OpenAIModel

    config = load_config().model
    one = build_model(["http://127.0.0.1:9/v1"], None, "m", config)
    two = build_model(["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"], None, "m", config)
    try:
        assert isinstance(one, OpenAIModel) and isinstance(two, EndpointPool)
    finally:
        one.close()
        two.close()


@pytest.mark.slow
def test_server_killed_mid_run_no_rollout_lost_its_rollouts_moved(tmp_path: Path) -> None:
    n, steps = 24, 5
    ds = load_dataset(write_dataset(tmp_path, n))
    config = load_config()
    scripts = scripts_for(n, steps=steps - 1)  # steps - 2 fillers, the write, the submit
    servers = [ModelServerProcess(latency=0.25, scripts=scripts).start() for _ in range(3)]
    pool = EndpointPool(
        [s.base_url for s in servers], "sk-kill-key", "test-model", config.model, probe_min_s=0.2
    )
    make = sandbox_maker(ds, config)
    out = tmp_path / "killed.json"
    spec = RunSpec(
        dataset=ds,
        instances=ds.instances,
        config=config,
        output=out,
        workers=6,
        metadata={"model_name": "test-model"},
        secrets=["sk-kill-key"],
    )
    runner = Runner(spec, model=pool, evaluator=evaluator_for("local", make), make_sandbox=make)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("outcome", runner.run()))
    try:
        t.start()
        wait_until(lambda: pool.stats()[1]["requests"] >= 3, 60, "server 1 serving rollouts")
        port = servers[1].port
        servers[1].kill()
        wait_until(lambda: not pool.stats()[1]["healthy"], 60, "server 1 taken out")
        served_before = pool.stats()[1]["requests"] - pool.stats()[1]["errors"]
        servers[1] = ModelServerProcess(latency=0.25, scripts=scripts, port=port).start()
        t.join(180)
        assert not t.is_alive()
    finally:
        pool.close()
        for s in servers:
            s.stop()
    outcome = result["outcome"]
    assert outcome.exit_code == 0 and outcome.written == n
    run_dir = out.with_suffix(".run")
    lines = [json.loads(x) for x in (run_dir / "examples.jsonl").read_text().splitlines()]
    assert sorted(d["instance_id"] for d in lines) == sorted(i.instance_id for i in ds.instances)  # once each
    assert all(d["success"] and d["error"] is None and d["model_calls"] == steps for d in lines)
    killed = servers[1].base_url
    moved = [d for d in lines if len(d["metadata"]["endpoints_used"]) > 1]
    assert moved and all(d["metadata"]["endpoints_used"][0] == killed for d in moved)
    st = pool.stats()[1]
    assert st["times_down"] >= 1 and st["moved_away"] == len(moved) and st["healthy"]
    assert st["requests"] - st["errors"] > served_before, "the restarted server got rollouts again"
    run_json = json.loads((run_dir / "run.json").read_text())
    assert [e["url"] for e in run_json["endpoints"]] == [s.base_url for s in servers]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "endpoints" for e in events)
    assert "sk-kill-key" not in (run_dir / "events.jsonl").read_text() + (run_dir / "run.json").read_text()


def test_cli_takes_comma_separated_base_urls(tmp_path: Path) -> None:
    ds_path = write_dataset(tmp_path, 4)
    scripts = scripts_for(4)
    with ModelServer(ScriptedResponder(scripts)) as a, ModelServer(ScriptedResponder(scripts)) as b:
        out = tmp_path / "cli.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentdata_tui",
                "generate-multi",
                "--dataset",
                str(ds_path),
                "--base-url",
                f"{a.base_url},{b.base_url}",
                "--model",
                "test-model",
                "--workers",
                "4",
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert len(a.chat_requests()) and len(b.chat_requests())
    data = json.loads(out.read_text())
    assert data["metadata"]["base_url"] == f"{a.base_url},{b.base_url}"
    used = {e["metadata"]["endpoint"] for e in data["examples"]}
    assert used == {a.base_url, b.base_url}
    run_json = json.loads(out.with_suffix(".run").joinpath("run.json").read_text())
    assert sum(e["requests"] for e in run_json["endpoints"]) == 8
