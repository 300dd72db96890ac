"""The Ray executor (issue 13 §4) on one machine: a head and two worker nodes on 127.0.0.1.

Real Ray processes (``ray.cluster_utils.Cluster``), real HTTP to a loopback model server (and
to a loopback eval server that holds its answers until a test lets them go), the local sandbox
on each node. A worker node is removed mid-run while its agents run and its patches are graded:
every (instance, sample) pair is still recorded exactly once, and the rollouts that were on that
node ran again elsewhere. A node frozen for a while (SIGSTOP) loses no step event. Ray examples
carry the thread executor's per-example metadata (so ``regrade`` reads their dataset), and a
node's slot takes its next rollout while the last patch is graded.
Skipped without Ray locally; with CI=true Ray must be there (``.ci/ray-setup.sh`` installs it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# Ray picks the machine's outward address for its nodes unless told it is a single-host
# cluster: every Ray process of these tests then listens on 127.0.0.1 only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

if os.environ.get("CI") == "true":
    import ray  # noqa: F401 - in CI the Ray tests must run, not skip
else:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")

from servers.model_server import ModelServer, ScriptedResponder  # noqa: E402
from test_runner import scripts_for, write_dataset  # noqa: E402

from agentdata_tui.config import load_config  # noqa: E402
from agentdata_tui.dataset import load_dataset  # noqa: E402
from agentdata_tui.events import EventTail  # noqa: E402
from agentdata_tui.model.pool import build_model  # noqa: E402
from agentdata_tui.reader import open_input  # noqa: E402
from agentdata_tui.regrade import datasets_from_metadata, regrade  # noqa: E402
from agentdata_tui.runner import Runner, RunSpec  # noqa: E402
from agentdata_tui.runner.components import evaluator_for, sandbox_maker  # noqa: E402
from agentdata_tui.runner.ray_executor import PartsRecipe, RayExecutor  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"},
    )
    workers = [c.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    try:
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


def wait_until(pred, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _LoopbackEvalServer:
    """A loopback eval server on 127.0.0.1: each ``POST /evaluate`` is answered with what
    ``answer(body)`` returns, ``(status, payload)``."""

    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                status, payload = outer.answer(body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the asking node was removed meanwhile
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class HeldEvalServer(_LoopbackEvalServer):
    """Each evaluation is noted at once and answered (reward 1) only when ``release`` is set:
    evaluations held for as long as a test wants."""

    def __init__(self) -> None:
        self.arrived: list[str] = []  # instance ids, in arrival order
        self.release = threading.Event()
        self._cv = threading.Condition()
        super().__init__()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._cv:
            self.arrived.append(body["instance_id"])
            self._cv.notify_all()
        self.release.wait(300)
        return 200, {"reward": 1.0, "success": True, "info": {"status": "held"}}

    def wait_arrived(self, pred, timeout: float, what: str) -> None:
        with self._cv:
            if not self._cv.wait_for(lambda: pred(list(self.arrived)), timeout):
                raise AssertionError(f"timed out waiting for {what} (arrived: {self.arrived})")

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        super().__exit__(*exc)


def alive_nodes() -> int:
    return sum(1 for n in ray.nodes() if n.get("Alive"))


def run_in_thread(runner: Runner) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.setdefault("outcome", runner.run()), daemon=True)
    t.start()
    return t, result


def make_ray_runner(
    server, ds, out: Path, workers: int, *, eval_server: str | None = None, **kw: Any
) -> Runner:
    config = load_config()
    recipe = PartsRecipe(
        config=config,
        dataset=ds,
        base_urls=[server.base_url],
        api_key="sk-ray-test-key",
        model_name="test-model",
        secrets=["sk-ray-test-key"],
        eval_server=eval_server,
    )
    spec = RunSpec(
        dataset=ds,
        instances=ds.instances,
        config=config,
        output=out,
        workers=workers,
        metadata={"model_name": "test-model"},
        secrets=["sk-ray-test-key"],
        **kw,
    )
    make = sandbox_maker(ds, config)  # the driver's own parts are not used for rollouts
    return Runner(
        spec,
        model=None,
        evaluator=evaluator_for("local", make),
        make_sandbox=make,
        executor=RayExecutor(None, recipe),
    )


def test_a_nodes_sandbox_starts_are_bounded_as_the_thread_executors(tmp_path: Path) -> None:
    """Before the fix a node prepared every rollout's local sandbox at once (a pool of
    ``workers`` threads); the thread executor prepares a few at a time (4 per core, at least 8)."""
    ds = load_dataset(write_dataset(tmp_path, 1))
    config = load_config()
    workers = 256
    recipe = PartsRecipe(
        config=config, dataset=ds, base_urls=["http://127.0.0.1:9/v1"], api_key=None, model_name="m"
    )
    parts, closer = recipe.build(workers)
    make = sandbox_maker(ds, config)
    spec = RunSpec(
        dataset=ds, instances=ds.instances, config=config, output=tmp_path / "o.json", workers=workers
    )
    threads = Runner(spec, model=None, evaluator=evaluator_for("local", make), make_sandbox=make)
    try:
        assert (
            parts.starter.max_workers == threads._starter.max_workers == min(workers, make.start_concurrency)
        )
        assert parts.starter.max_workers < workers
    finally:
        for pool in (closer, parts.starter, threads._starter, threads._closer, threads._grader):
            pool.shutdown()
        parts.model.close()


def test_rollouts_run_on_every_node_and_are_recorded_by_the_driver(cluster, tmp_path: Path) -> None:
    n = 12
    ds = load_dataset(write_dataset(tmp_path, n))
    out = tmp_path / "ray.json"
    with ModelServer(ScriptedResponder(scripts_for(n, steps=2)), latency=0.1) as server:
        outcome = make_ray_runner(server, ds, out, workers=6).run()
    assert outcome.exit_code == 0 and outcome.written == n and outcome.counts["successful"] == n
    run_dir = out.with_suffix(".run")
    lines = [json.loads(x) for x in (run_dir / "examples.jsonl").read_text().splitlines()]
    assert sorted(d["instance_id"] for d in lines) == sorted(i.instance_id for i in ds.instances)
    events = EventTail(run_dir / "events.jsonl").read()
    nodes = {e["node"] for e in events if e["type"] == "rollout_started"}
    assert len(nodes) == 3, "the head and both worker nodes ran rollouts"
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == n * 3 and all(e["rollout_id"] for e in steps)
    # Each rollout's steps precede its end in the log (the dashboard follows it in order).
    finished_at = {e["rollout_id"]: i for i, e in enumerate(events) if e["type"] == "rollout_finished"}
    assert all(i < finished_at[e["rollout_id"]] for i, e in enumerate(events) if e["type"] == "step")
    assert (
        "sk-ray-test-key" not in (run_dir / "events.jsonl").read_text() + (run_dir / "run.json").read_text()
    )


def test_ray_examples_carry_the_thread_executors_metadata_and_regrade(cluster, tmp_path: Path) -> None:
    """Reproduced before the fix: Ray examples lacked dataset_file/dataset_sha256, so
    ``regrade`` found no dataset for them (datasets_from_metadata → None)."""
    n = 3
    ds = load_dataset(write_dataset(tmp_path / "data", n))
    config = load_config()
    thread_out, ray_out = tmp_path / "thread.json", tmp_path / "ray.json"
    with ModelServer(ScriptedResponder(scripts_for(n))) as server:
        make = sandbox_maker(ds, config)
        model = build_model([server.base_url], "sk-ray-test-key", "test-model", config.model, pool_size=2)
        spec = RunSpec(
            dataset=ds,
            instances=ds.instances,
            config=config,
            output=thread_out,
            workers=2,
            metadata={"model_name": "test-model"},
            secrets=["sk-ray-test-key"],
        )
        try:
            thread = Runner(
                spec, model=model, evaluator=evaluator_for("local", make), make_sandbox=make
            ).run()
        finally:
            model.close()
        on_ray = make_ray_runner(server, ds, ray_out, workers=2).run()
    assert thread.written == on_ray.written == n and on_ray.counts["successful"] == n
    by_thread = {e.instance_id: e for e in open_input(thread_out)}
    by_ray = {e.instance_id: e for e in open_input(ray_out)}
    ray_only = {"node", "host"}  # where it ran; every other key is the thread executor's
    for iid, ex in by_ray.items():
        t_meta, r_meta = by_thread[iid].metadata, ex.metadata
        assert set(r_meta) - ray_only == set(t_meta), set(r_meta) ^ set(t_meta)
        assert r_meta["node"] and r_meta["host"]
        assert r_meta["dataset_file"] == t_meta["dataset_file"] == str(ds.path)
        assert r_meta["dataset_sha256"] == t_meta["dataset_sha256"] == ds.sha256
    # The run's own metadata names no dataset here: regrade finds it through each example's.
    assert "dataset_file" not in json.loads(ray_out.read_text())["metadata"]
    found = datasets_from_metadata(ray_out)
    assert found is not None and set(found.by_sha) == {ds.sha256}
    regraded = tmp_path / "regraded.json"
    stats = regrade(ray_out, regraded, evaluator_for("local", sandbox_maker(ds, config)), found, workers=2)
    assert stats.total == n and stats.failed == 0 and stats.changed == 0
    after = json.loads(regraded.read_text())["examples"]
    assert all(e["reward"] == 1.0 and e["evaluation_info"]["status"] == "correct" for e in after)


def test_a_nodes_slot_takes_its_next_rollout_while_the_patch_is_graded(cluster, tmp_path: Path) -> None:
    """One worker per node, every evaluation held: more evaluations are held at once than
    there are slots, which only happens if a slot went on while its patch was being graded
    (before the fix a slot was held through grading: at most one held evaluation per node)."""
    k = alive_nodes()
    assert k >= 2
    n = 2 * k
    ds = load_dataset(write_dataset(tmp_path, n))
    out = tmp_path / "overlap.json"
    run_dir = out.with_suffix(".run")
    with ModelServer(ScriptedResponder(scripts_for(n))) as server, HeldEvalServer() as evals:
        runner = make_ray_runner(server, ds, out, workers=k, eval_server=evals.url)
        t, result = run_in_thread(runner)
        try:
            evals.wait_arrived(lambda a: len(a) > k, 60, f"more than {k} evaluations held at once")
            events = EventTail(run_dir / "events.jsonl").read()
            assert not [e for e in events if e["type"] == "rollout_finished"]  # none graded yet
            started = [e for e in events if e["type"] == "rollout_started"]
            assert len(started) > k
            per_node = {e["node"]: sum(1 for x in started if x["node"] == e["node"]) for e in started}
            assert max(per_node.values()) >= 2  # a 1-worker node ran a second agent meanwhile
        finally:
            evals.release.set()
            t.join(300)
    assert not t.is_alive()
    outcome = result["outcome"]
    assert outcome.exit_code == 0 and outcome.written == n and outcome.counts["successful"] == n
    lines = [json.loads(x) for x in (run_dir / "examples.jsonl").read_text().splitlines()]
    assert sorted(d["instance_id"] for d in lines) == sorted(i.instance_id for i in ds.instances)
    assert all(d["evaluation_info"]["status"] == "held" for d in lines)
    events = EventTail(run_dir / "events.jsonl").read()
    assert [e["type"] for e in events].count("rollout_finished") == n


def test_a_stop_while_patches_are_graded_records_them_and_cancels_the_agents(cluster, tmp_path: Path) -> None:
    """Pause, then stop, while evaluations are held: the agents held at the pause gate end
    cancelled (not recorded), the run waits for the gradings, which are recorded once each —
    as the thread executor does with its evaluation pool."""
    k = alive_nodes()
    n = 4 * k
    ds = load_dataset(write_dataset(tmp_path, n))
    out = tmp_path / "stop.json"
    run_dir = out.with_suffix(".run")
    tail = EventTail(run_dir / "events.jsonl")
    seen: list[dict[str, Any]] = []
    # The first k + 1 tasks are short (graded, then held), the others long: when the stop comes,
    # each node is in the middle of a long agent.
    scripts = {**scripts_for(n, steps=40), **scripts_for(k + 1)}
    with (
        ModelServer(ScriptedResponder(scripts), latency=0.1) as server,
        HeldEvalServer() as evals,
    ):
        runner = make_ray_runner(server, ds, out, workers=k, eval_server=evals.url)
        t, result = run_in_thread(runner)
        try:
            evals.wait_arrived(lambda a: len(a) > k, 60, "gradings held while agents run")
            runner.control.pause()
            runner.request_stop()

            def agents_ended() -> bool:  # every rollout is cancelled or waits for its grade
                seen.extend(tail.read())
                started = {e["rollout_id"]: e["instance_id"] for e in seen if e["type"] == "rollout_started"}
                ended = {e["rollout_id"] for e in seen if e["type"] == "rollout_finished"}
                return all(rid in ended or iid in evals.arrived for rid, iid in started.items())

            wait_until(agents_ended, what="the agents cancelled by the stop")
            assert t.is_alive(), "the run waits for the patches being graded"
            assert not (run_dir / "examples.jsonl").read_text()  # nothing graded yet
            held = set(evals.arrived)
        finally:
            evals.release.set()
            t.join(300)
    assert not t.is_alive()
    outcome = result["outcome"]
    assert outcome.stopped and outcome.exit_code == 130 and outcome.fatal is None
    lines = [json.loads(x) for x in (run_dir / "examples.jsonl").read_text().splitlines()]
    assert sorted(d["instance_id"] for d in lines) == sorted(held)  # each held grading, once
    events = EventTail(run_dir / "events.jsonl").read()
    started = [e["rollout_id"] for e in events if e["type"] == "rollout_started"]
    finished = [e for e in events if e["type"] == "rollout_finished"]
    assert sorted(started) == sorted(e["rollout_id"] for e in finished)  # one end each
    cancelled = [e for e in finished if e.get("cancelled")]
    # Whether an agent is mid-rollout at the stop (and so ends cancelled) depends on the moment:
    # with one slot per node, both may be between a finished agent and the next start. Every
    # started rollout is either graded (above) or cancelled by the stop, never lost or recorded.
    assert {e["rollout_id"] for e in cancelled} | {d["metadata"]["rollout_id"] for d in lines} == set(started)
    assert all(e["cancelled_by"] == "stop" and not e.get("lost") for e in cancelled)
    assert not {e["rollout_id"] for e in cancelled} & {d["metadata"]["rollout_id"] for d in lines}
    assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "stopped"


def test_ctl_workers_on_a_ray_run_widens_the_nodes_and_starts_no_local_thread(
    cluster, tmp_path: Path
) -> None:
    """``ctl workers N`` reaches the nodes' capacities; before the fix it also started N local
    worker threads in the driver, which waited forever for a start signal a Ray run never gives."""
    from agentdata_tui.runner.control import send_command

    k = alive_nodes()
    n = 6 * k
    ds = load_dataset(write_dataset(tmp_path, n))
    out = tmp_path / "widen.json"
    with ModelServer(ScriptedResponder(scripts_for(n, steps=4)), latency=0.1) as server:
        runner = make_ray_runner(server, ds, out, workers=k)
        t, result = run_in_thread(runner)
        try:
            wait_until(lambda: server.request_count > k, what="rollouts under way")
            assert server.max_in_flight <= k
            answer = send_command(out, "workers", str(2 * k), wait=60)
            assert answer["ok"], answer
            wait_until(lambda: server.max_in_flight > k, what="more rollouts at once on the nodes")
            local = [th.name for th in threading.enumerate() if th.name.startswith("rollout-worker-")]
            assert not local, local
        finally:
            t.join(300)
    assert not t.is_alive()
    outcome = result["outcome"]
    assert outcome.exit_code == 0 and outcome.written == n


def test_a_node_frozen_for_a_while_loses_no_step_and_the_others_go_on(cluster, tmp_path: Path) -> None:
    """A node's actor process is frozen (SIGSTOP) just after one of its rollouts took a step:
    the other nodes' rollouts are recorded meanwhile, and once it goes on every rollout's steps
    are in the log once each, in order, before its end. Before the fix the driver waited 2 s on
    every drain, then dropped the frozen node's answer — and with it the steps it carried."""
    _, workers = cluster
    victim_tag = workers[0].node_id[:12]
    n = 18
    ds = load_dataset(write_dataset(tmp_path, n))
    out = tmp_path / "frozen.json"
    run_dir = out.with_suffix(".run")
    scripted = ScriptedResponder(scripts_for(n, steps=6))
    frozen = threading.Event()
    pid: dict[str, int] = {}
    lock = threading.Lock()
    tail = EventTail(run_dir / "events.jsonl")
    seen: list[dict[str, Any]] = []

    def on_victim(iid: str) -> bool:
        with lock:
            seen.extend(tail.read())
            return any(
                e["type"] == "rollout_started" and e["node"] == victim_tag and e["instance_id"] == iid
                for e in seen
            )

    def responder(body: dict[str, Any]):
        msgs = body.get("messages") or []
        if "pid" in pid and not frozen.is_set() and sum(m.get("role") == "assistant" for m in msgs) == 2:
            iid = re.search(r"\[(task-\d+)\]", json.dumps(msgs)).group(1)
            if on_victim(iid):  # its second step is taken, its third reply asked for: freeze now
                os.kill(pid["pid"], signal.SIGSTOP)
                frozen.set()
        return scripted(body)

    with ModelServer(responder, latency=0.15) as server:
        runner = make_ray_runner(server, ds, out, workers=6)
        ex = runner.executor
        t, result = run_in_thread(runner)
        try:
            wait_until(lambda: any(k.startswith(victim_tag) for k in ex.nodes), what="the actors")
            node = next(v for k, v in ex.nodes.items() if k.startswith(victim_tag))
            pid["pid"] = ray.get(node.handle.where.remote(), timeout=60)["pid"]
            assert frozen.wait(60), "no rollout of the node reached its third reply"

            def others_done() -> bool:  # everything but the frozen node's two rollouts
                return len((run_dir / "examples.jsonl").read_text().splitlines()) >= n - 2

            wait_until(others_done, what="the other nodes' rollouts recorded while one node is frozen")
        finally:
            if "pid" in pid:
                os.kill(pid["pid"], signal.SIGCONT)
            t.join(300)
    assert not t.is_alive()
    outcome = result["outcome"]
    assert outcome.exit_code == 0 and outcome.written == n and outcome.counts["successful"] == n
    lines = [json.loads(x) for x in (run_dir / "examples.jsonl").read_text().splitlines()]
    events = EventTail(run_dir / "events.jsonl").read()
    for d in lines:
        rid = d["metadata"]["rollout_id"]
        mine = [(i, e) for i, e in enumerate(events) if e.get("rollout_id") == rid]
        steps = [e["step"] for _, e in mine if e["type"] == "step"]
        assert steps == list(range(1, len(d["steps"]) + 1)), (rid, d["metadata"]["node"], steps)
        end = next(i for i, e in mine if e["type"] == "rollout_finished")
        assert all(i < end for i, e in mine if e["type"] == "step")
    assert any(d["metadata"]["node"] == victim_tag for d in lines)


class FlakyEvalServer(_LoopbackEvalServer):
    """The first ``fail`` evaluations of ``instance_id`` answer 500 (the evaluation's own failure:
    recorded at once, not retried by the client); the rest reward 1."""

    def __init__(self, instance_id: str, fail: int) -> None:
        self.asked: list[str] = []
        self._instance_id, self._fail = instance_id, fail
        super().__init__()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        iid = body["instance_id"]
        self.asked.append(iid)
        if iid == self._instance_id and self.asked.count(iid) <= self._fail:
            return 500, {"error": "evaluation crashed"}
        return 200, {"reward": 1.0, "success": True, "info": {"status": "correct"}}


def test_retry_errors_regrades_an_evaluation_failure_with_a_fresh_budget_on_resume(
    cluster, tmp_path: Path
) -> None:
    """As the thread executor: an attempt whose only failure was its evaluation is graded again
    from its patch (the agent does not run again), and ``--retry-errors N`` gives each errored
    pair N more tries per invocation, however many attempts it had. Before the fix Ray ran the
    agent again, and on resume counted the budget from attempt 1 (attempt 3 < 1 + 2: no retry)."""
    n = 2
    ds = load_dataset(write_dataset(tmp_path, n))
    out = tmp_path / "retry.json"
    run_dir = out.with_suffix(".run")
    with (
        ModelServer(ScriptedResponder(scripts_for(n))) as server,
        FlakyEvalServer("task-000", fail=3) as evals,
    ):
        first = make_ray_runner(server, ds, out, workers=2, eval_server=evals.url, retry_errors=1).run()
        assert first.counts["retried"] == 1  # attempts 1 and 2 of task-000 failed their evaluation
        second = make_ray_runner(
            server, ds, out, workers=2, eval_server=evals.url, retry_errors=2, resume=True
        ).run()
        chats = len(server.chat_requests())
    assert chats == n * 2, "each agent ran once: every later attempt regraded its patch"
    assert second.exit_code == 0 and second.counts["retried"] == 1  # attempt 3 failed, 4 was graded
    attempts = [json.loads(x) for x in (run_dir / "examples.jsonl").read_text().splitlines()]
    mine = sorted((d for d in attempts if d["instance_id"] == "task-000"), key=lambda d: d["attempt"])
    assert [(d["attempt"], d["success"]) for d in mine] == [(1, False), (2, False), (3, False), (4, True)]
    assert all(d["metadata"]["error_kind"] == "evaluation" for d in mine[:3])
    first_rid = mine[0]["metadata"]["rollout_id"]
    assert all(d["metadata"]["regraded_from"] for d in mine[1:])
    assert mine[1]["metadata"]["regraded_from"] == first_rid
    assert all(d["git_diff"] == mine[0]["git_diff"] and d["messages"] == mine[0]["messages"] for d in mine)
    assert evals.asked.count("task-000") == 4 and evals.asked.count("task-001") == 1


def test_node_removed_mid_run_every_pair_recorded_exactly_once(cluster, tmp_path: Path) -> None:
    """The node is removed while it runs agents and holds patches in grading (the evaluations
    are held until then): both kinds go back to the queue; nothing is lost or recorded twice."""
    c, workers = cluster
    victim = workers[-1]
    victim_tag = victim.node_id[:12]
    n = 18
    ds = load_dataset(write_dataset(tmp_path, n))
    out = tmp_path / "lost.json"
    run_dir = out.with_suffix(".run")
    tail = EventTail(run_dir / "events.jsonl")
    seen: list[dict[str, Any]] = []

    def started_on_victim() -> dict[str, str]:
        seen.extend(tail.read())
        return {
            e["rollout_id"]: e["instance_id"]
            for e in seen
            if e["type"] == "rollout_started" and e["node"] == victim_tag
        }

    with (
        ModelServer(ScriptedResponder(scripts_for(n, steps=6)), latency=0.15) as server,
        HeldEvalServer() as evals,
    ):
        runner = make_ray_runner(server, ds, out, workers=6, eval_server=evals.url)
        t, result = run_in_thread(runner)
        held_there: set[str] = set()
        try:

            def agent_and_grading_on_victim() -> bool:
                there = started_on_victim()
                held_there.clear()
                held_there.update(set(there.values()) & set(evals.arrived))
                return bool(held_there) and any(
                    e["type"] == "step"
                    and e["rollout_id"] in there
                    and there[e["rollout_id"]] not in evals.arrived
                    for e in seen
                )

            wait_until(agent_and_grading_on_victim, what="an agent and a grading under way on the node")
            c.remove_node(victim, allow_graceful=False)

            def requeued() -> bool:  # the held gradings there went back to the queue, unreleased
                started_on_victim()
                lost = {e["instance_id"] for e in seen if e["type"] == "rollout_finished" and e.get("lost")}
                return held_there <= lost

            wait_until(requeued, what="the node's gradings back in the queue")
        finally:
            evals.release.set()
            t.join(300)
    assert not t.is_alive()
    outcome = result["outcome"]
    assert outcome.exit_code == 0 and outcome.written == n
    lines = [json.loads(x) for x in (run_dir / "examples.jsonl").read_text().splitlines()]
    pairs = [(d["instance_id"], d["sample_index"]) for d in lines]
    assert sorted(pairs) == sorted((i.instance_id, 0) for i in ds.instances)  # each exactly once
    assert all(d["success"] and d["attempt"] == 1 for d in lines)
    events = EventTail(run_dir / "events.jsonl").read()
    lost = [e for e in events if e["type"] == "rollout_finished" and e.get("lost")]
    on_victim_ids = {
        e["rollout_id"] for e in events if e["type"] == "rollout_started" and e["node"] == victim_tag
    }
    assert lost and {e["rollout_id"] for e in lost} <= on_victim_ids
    assert held_there <= {e["instance_id"] for e in lost}  # a patch in grading there: run again
    assert all(e["exit_status"] == "Cancelled" for e in lost)
    assert outcome.counts["requeued_lost"] == len(lost) and outcome.counts.get("retried", 0) == 0
    recorded_ids = {d["metadata"]["rollout_id"] for d in lines}
    assert not recorded_ids & {e["rollout_id"] for e in lost}  # a lost attempt is never recorded
    assert all(d["metadata"]["node"] for d in lines)
    assert all(d["metadata"]["node"] != victim_tag for d in lines if d["instance_id"] in held_there)


def test_cli_executor_ray_runs_on_the_cluster(cluster, tmp_path: Path) -> None:
    import subprocess
    import sys

    c, _ = cluster
    n = 4
    ds_path = write_dataset(tmp_path, n)
    out = tmp_path / "cli-ray.json"
    with ModelServer(ScriptedResponder(scripts_for(n))) as server:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentdata_tui",
                "generate-multi",
                "--dataset",
                str(ds_path),
                "--base-url",
                server.base_url,
                "--model",
                "test-model",
                "--executor",
                "ray",
                "--ray-address",
                c.address,
                "--workers",
                "4",
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert len(server.chat_requests()) == n * 2
    data = json.loads(out.read_text())
    assert data["metadata"]["executor"] == "ray" and len(data["examples"]) == n
    assert all(e["success"] and e["metadata"]["node"] for e in data["examples"])


def test_cli_ray_run_on_a_full_disk_fails_in_one_line_and_resume_completes(cluster, tmp_path: Path) -> None:
    """As with threads (tests/test_write_failures.py): the driver's disk fills mid-run → exit 1,
    one line naming the file, ``run.json`` says failed; ``--resume`` completes the run."""
    import subprocess
    import sys

    from test_write_failures import FillAt, _assert_intact, _error_line, _mount, nth_request_of

    c, _ = cluster
    mnt = tmp_path / "disk"
    if os.geteuid() != 0 or _mount(mnt, "1m") is not None:
        pytest.skip("mounting a tmpfs needs root and a machine that allows it")
    try:
        n = 6
        ds_path = write_dataset(tmp_path, n)
        out, run_dir = mnt / "data.json", mnt / "data.run"
        cmd = [sys.executable, "-m", "agentdata_tui", "generate-multi", "--dataset", str(ds_path)]
        cmd += ["--model", "test-model", "--executor", "ray", "--ray-address", c.address]
        cmd += ["--workers", "2", "--output", str(out)]
        with ModelServer(
            FillAt(ScriptedResponder(scripts_for(n)), mnt, nth_request_of("task-002", 2))
        ) as server:
            res = subprocess.run(
                [*cmd, "--base-url", server.base_url], capture_output=True, text=True, timeout=300
            )
            assert res.returncode == 1, res.stderr[-3000:]
            line = _error_line(res.stderr)
            assert "cannot write" in line and str(run_dir) in line and "No space left on device" in line, line
            run_json = json.loads((run_dir / "run.json").read_text())
            assert run_json["status"] == "failed" and "No space left" in run_json["error"]
            assert _assert_intact(run_dir) < n
            (mnt / "filler").unlink()  # room again
            server.responder = ScriptedResponder(scripts_for(n))
            res = subprocess.run(
                [*cmd, "--base-url", server.base_url, "--resume"], capture_output=True, text=True, timeout=300
            )
        assert res.returncode == 0, res.stderr[-3000:]
        assert sorted(e.instance_id for e in open_input(out)) == [f"task-{i:03d}" for i in range(n)]
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
