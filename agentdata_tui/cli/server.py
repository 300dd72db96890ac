"""``eval-server``, ``regrade`` and ``cleanup``: the evaluation side and Docker housekeeping.

Heavy imports (docker, the HTTP server, the evaluator) stay inside the handlers so that
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from agentdata_tui.cli.common import AddFn, add_all_attempts_flag, positive_int
from agentdata_tui.errors import UserError

DEFAULT_EVAL_PORT = 9528  # the original system's eval server port


def _docker_flag(p: argparse.ArgumentParser, what: str, several: str = "the least busy one is used") -> None:
    p.add_argument(
        "--docker-server",
        metavar="HOST:PORT[,HOST:PORT...]",
        help=f"Docker Engine API endpoint(s) {what}, as tcp://HOST:PORT (TLS from DOCKER_TLS_VERIFY/"
        f"DOCKER_CERT_PATH); several: comma-separated, {several}. "
        "Default: the local daemon (DOCKER_HOST or /var/run/docker.sock)",
    )


def register(add: AddFn) -> None:
    p = add(
        "eval-server",
        help="serve the built-in evaluator over HTTP (POST /evaluate, GET /health)",
        description=(
            "Serve the built-in evaluator over the eval protocol: POST /evaluate with\n"
            '{"instance_id", "patch", "instance", "run_id", "sample_index"} answers\n'
            '{"reward", "success", "speedup", "info"}; GET /health answers 200.\n'
            "With --dataset the instance (and so every command that runs) comes from that file by\n"
            "instance_id and the request's 'instance' is ignored: use it whenever clients are not\n"
            "fully trusted. Without --dataset the request's instance is graded as sent.\n"
            "Each evaluation runs in a fresh sandbox (--sandbox local: a temporary copy of the\n"
            "instance's repo_path; docker: a container of the instance's image)."
        ),
        epilog=(
            "examples:\n"
            "  agentdata-tui eval-server --dataset tasks.json --sandbox docker --token s3cret\n"
            "  agentdata-tui eval-server --host 0.0.0.0 --port 9528 --sandbox docker \\\n"
            "      --docker-server 10.0.0.5:2375 --dataset tasks.json --workers 8\n"
            "  agentdata-tui generate-multi --dataset tasks.json --eval-server 127.0.0.1:9528 --eval-token s3cret"
        ),
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_EVAL_PORT,
        help=f"port to listen on (default {DEFAULT_EVAL_PORT}; 0 picks a free one, printed at start)",
    )
    p.add_argument(
        "--sandbox",
        choices=("local", "docker"),
        default=None,
        help="where evaluations run: local (a temporary copy of repo_path on this machine) "
        "or docker (a fresh container of the instance's image). Default: docker with --docker-server, "
        "else local",
    )
    _docker_flag(p, "for --sandbox docker")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=4,
        metavar="N",
        help="evaluations at once (default 4); --queue more wait their turn, and beyond that a "
        "request is answered 503 with Retry-After (clients retry it)",
    )
    p.add_argument(
        "--queue",
        type=int,
        default=None,
        metavar="N",
        help="requests that may wait for a worker (default: as many as --workers; 0: none)",
    )
    p.add_argument(
        "--allow-remote-local-sandbox",
        action="store_true",
        help="serve --sandbox local on an address other machines can reach: their patches then run as "
        "code on this machine (isolated by bubblewrap only). Without it, that combination is refused; "
        "untrusted clients need --sandbox docker",
    )
    p.add_argument(
        "--token",
        default=None,
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on every request (default: $AGENTDATA_EVAL_TOKEN; "
        "none: no check). Never logged",
    )
    p.add_argument(
        "--dataset",
        metavar="F",
        help="grade by instance_id from this dataset (JSON/JSONL), ignoring instances sent in requests",
    )
    p.add_argument(
        "-c",
        "--config",
        action="append",
        metavar="FILE|KEY.PATH=VALUE",
        help="config whose environment: section (image, cwd, timeout, env, container options) "
        "applies to evaluation sandboxes; repeatable as generate's -c (files and key.path=value "
        "overrides, merged in order; default: the bundled mini.yaml)",
    )
    p.set_defaults(func=run_eval_server)

    p = add(
        "regrade",
        help="re-evaluate the recorded patches of a file or run, without running the agent",
        description=(
            "Re-evaluate the recorded patches (git_diff) of every example, without running the agent\n"
            "again: after an evaluator changed or a benchmark was flaky. Reads anything the processing\n"
            "commands accept (training-data JSON, a run folder or its examples.jsonl, mini-swe-agent\n"
            "trajectories) and writes a training-data file. Each example keeps its previous result\n"
            "under evaluation_info.previous. An evaluation that fails is recorded with the error and\n"
            "reward 0; the others go on."
        ),
        epilog=(
            "examples:\n"
            "  agentdata-tui regrade --input run.json --output regraded.json --dataset tasks.json\n"
            "  agentdata-tui regrade --input run.run/ --output regraded.json --dataset tasks.json \\\n"
            "      --environment-class docker_remote --docker-server 10.0.0.5:2375 --workers 8\n"
            "  agentdata-tui regrade --input run.json --output regraded.json --eval-server 127.0.0.1:9528"
        ),
    )
    p.add_argument(
        "--input",
        required=True,
        metavar="F",
        help="training-data JSON, run folder, examples.jsonl or trajectories",
    )
    add_all_attempts_flag(p)
    p.add_argument(
        "--output", required=True, metavar="G", help="the regraded training-data file (written atomically)"
    )
    p.add_argument(
        "--dataset",
        metavar="F",
        help="the dataset to grade against: instances (their eval block) by instance_id. Default: the "
        "dataset the data's metadata names (dataset_file, relative to the data file's folder or the current "
        "one, checked against dataset_sha256; per example for merged files)",
    )
    p.add_argument(
        "--regrade-errors",
        action="store_true",
        help="also grade attempts that ended in ModelError, SandboxError or Error (by default they keep "
        "their result: the runner does not grade them either)",
    )
    p.add_argument(
        "--eval-server",
        default="local",
        metavar="URL|HOST:PORT|local",
        help="where to evaluate: local (the built-in evaluator, default) or an eval server",
    )
    p.add_argument(
        "--eval-token",
        default=None,
        metavar="TOKEN",
        help="Bearer token for the eval server (default: $AGENTDATA_EVAL_TOKEN). Never written anywhere",
    )
    p.add_argument(
        "--environment-class",
        default=None,
        help="sandbox of local evaluation: local, docker, docker_remote or pkg.mod:Class "
        "(default: the config's environment_class)",
    )
    _docker_flag(p, "for docker_remote evaluation (implies --environment-class docker_remote)")
    p.add_argument(
        "-c",
        "--config",
        action="append",
        metavar="FILE|KEY.PATH=VALUE",
        help="config for the sandbox settings; repeatable as generate's -c (files and key.path=value "
        "overrides, merged in order; default: the bundled mini.yaml)",
    )
    p.add_argument(
        "--workers", type=positive_int, default=4, metavar="N", help="evaluations at once (default 4)"
    )
    p.set_defaults(func=run_regrade)

    p = add(
        "cleanup",
        help="remove Docker containers that killed runs left behind",
        description=(
            "Remove the containers agentdata-tui created (found by their agentdata-tui labels) that a\n"
            "killed run or eval server left behind. Containers of a process still running on this\n"
            "machine are left alone unless --include-live. Prints how many were removed per server."
        ),
        epilog=(
            "examples:\n"
            "  agentdata-tui cleanup\n"
            "  agentdata-tui cleanup --docker-server 10.0.0.5:2375,10.0.0.6:2375\n"
            "  agentdata-tui cleanup --run-id run-20250101-120000-ab12cd"
        ),
    )
    _docker_flag(p, "to clean", "each one is cleaned")
    p.add_argument("--run-id", metavar="ID", help="only the containers of this run (its run.json's run_id)")
    p.add_argument(
        "--include-live",
        action="store_true",
        help="also remove containers of agentdata-tui processes still running on this machine",
    )
    p.set_defaults(func=run_cleanup)


# -- eval-server ----------------------------------------------------------------------------------


def _servers(text: str | None) -> list[str]:
    from agentdata_tui.sandbox.docker import parse_servers

    return parse_servers(text)


def run_eval_server(args: argparse.Namespace) -> int:
    from agentdata_tui.config import load_configs
    from agentdata_tui.dataset import load_dataset
    from agentdata_tui.evaluation.server import EvalHTTPServer, EvalService

    token = args.token if args.token is not None else os.environ.get("AGENTDATA_EVAL_TOKEN")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0..65535, got {args.port}")
    config = load_configs(args.config)
    dataset = load_dataset(args.dataset) if args.dataset else None
    servers = _servers(args.docker_server)
    args.sandbox = args.sandbox or ("docker" if servers else "local")
    if servers and args.sandbox != "docker":
        raise UserError("--docker-server needs --sandbox docker")
    if args.queue is not None and args.queue < 0:
        raise UserError(f"--queue must be 0 or more, got {args.queue}")
    if args.sandbox == "local" and not _is_loopback(args.host) and not args.allow_remote_local_sandbox:
        raise UserError(
            f"--sandbox local on {args.host} would run other machines' patches as code on this host: "
            "use --sandbox docker for clients you do not fully trust, or pass --allow-remote-local-sandbox"
        )
    if args.sandbox == "docker":
        from agentdata_tui.sandbox.docker import images_needed, preflight

        images = images_needed(dataset.instances, config.environment) if dataset else []
        preflight(servers, images, config.environment.pull_policy)
    service = EvalService(
        sandbox=args.sandbox,
        env_config=config.environment,
        dataset=dataset,
        docker_servers=servers,
        workers=args.workers,
        queue=args.queue,
    )
    try:
        httpd = EvalHTTPServer((args.host, args.port), service, token=token)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    where = f"dataset {dataset.path} ({len(dataset.instances)} instances)" if dataset else "no dataset"
    print(
        f"eval server listening on {httpd.url} (sandbox {args.sandbox}, {args.workers} workers, "
        f"queue {service.queue}, {where}, "
        f"token {'required' if token else 'not required'})",
        flush=True,
    )
    if dataset is None:
        print(
            "warning: without --dataset, requests choose the commands that run: serve trusted clients only",
            file=sys.stderr,
            flush=True,
        )
    if not token and not _is_loopback(args.host):
        print(f"warning: {args.host} is reachable from other machines and no --token is set", file=sys.stderr)

    def stop(signum: int, frame: Any) -> None:
        print(f"{signal.Signals(signum).name}: stopping the eval server", file=sys.stderr, flush=True)
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        httpd.serve_forever()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        httpd.server_close()
        if args.sandbox == "docker":
            from agentdata_tui.sandbox.docker import close_all

            close_all()
    return 0


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- regrade ------------------------------------------------------------------------------------


def run_regrade(args: argparse.Namespace) -> int:
    # SIGTERM/SIGHUP end a regrade like Ctrl+C: containers removed, no output written.
    old_handlers = {
        s: signal.signal(s, _interrupt)
        for s in (signal.SIGTERM, signal.SIGHUP)
        if signal.getsignal(s) is not signal.SIG_IGN
    }
    try:
        return _run_regrade(args)
    except KeyboardInterrupt:
        _close_docker()
        print("regrade: interrupted; no output written", file=sys.stderr)
        return 130
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)


def _run_regrade(args: argparse.Namespace) -> int:
    from agentdata_tui.config import load_configs
    from agentdata_tui.dataset import Dataset, load_dataset
    from agentdata_tui.evaluation import make_evaluator, normalize_eval_url
    from agentdata_tui.regrade import ProgressPrinter, RecordedDatasets, datasets_from_metadata, regrade
    from agentdata_tui.sandbox import SandboxContext, make_sandbox, resolve_class

    url = normalize_eval_url(args.eval_server)
    config = load_configs(args.config)
    all_attempts = getattr(args, "all_attempts", False)
    dataset: Dataset | RecordedDatasets | None
    if args.dataset:
        dataset = load_dataset(args.dataset)
    else:
        dataset = datasets_from_metadata(args.input, all_attempts=all_attempts)
        if dataset is None and url is None:
            raise UserError(
                "regrade: the data's metadata names no dataset_file: pass --dataset (the examples alone "
                "lack the instances' eval block)"
            )
    servers = _servers(args.docker_server)
    kind = args.environment_class or ("docker_remote" if servers else config.environment.environment_class)
    if url is None:
        resolve_class(kind)
        if kind in ("docker", "docker_remote"):
            from agentdata_tui.sandbox.docker import images_needed, preflight

            if kind == "docker_remote" and not servers:
                raise UserError("environment_class docker_remote needs --docker-server HOST:PORT")
            assert dataset is not None
            preflight(
                servers if kind == "docker_remote" else None,
                images_needed(dataset.instances, config.environment),
                config.environment.pull_policy,
            )
    token = args.eval_token if args.eval_token is not None else os.environ.get("AGENTDATA_EVAL_TOKEN")
    counter = {"n": 0}
    lock = threading.Lock()

    def factory(inst):
        with lock:
            counter["n"] += 1
            n = counter["n"]
        ctx = SandboxContext(
            run_id="",  # the evaluator tags it with the regrade's run id (container labels)
            rollout_id=f"regrade-{n:05d}",
            # regrade gives each instance its repo_path made absolute against its own dataset
            repo_dir=Path(inst.repo_path) if inst.repo_path and Path(inst.repo_path).is_absolute() else None,
            docker_servers=servers,
            environment_class=kind,
        )
        return make_sandbox(inst, config.environment, ctx)

    evaluator = make_evaluator(args.eval_server, factory, token=token, pool_size=args.workers)
    settings = {"evaluator": url or f"local ({kind})"}
    printer = ProgressPrinter()
    stop = threading.Event()
    try:
        stats = regrade(
            args.input,
            args.output,
            evaluator,
            dataset,
            regrade_errors=args.regrade_errors,
            workers=args.workers,
            settings=settings,
            progress=printer,
            stop=stop,
            all_attempts=args.all_attempts,
        )
    except KeyboardInterrupt:
        stop.set()
        _close_docker()
        print("regrade: interrupted; no output written", file=sys.stderr)
        return 130
    printer.final(stats)
    s = stats.as_dict()
    print(
        f"regraded {s['total']} examples into {args.output}: {s['changed']} changed, {s['failed']} failed, "
        f"{s['kept']} kept (errored attempts), "
        f"average reward {s['average_reward']:.3f} ({s['elapsed_s']:.1f}s)"
    )
    for line in stats.failures:
        print(f"  failed: {line}", file=sys.stderr)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _close_docker() -> None:
    if "agentdata_tui.sandbox.docker" in sys.modules:
        sys.modules["agentdata_tui.sandbox.docker"].close_all()


# -- cleanup ------------------------------------------------------------------------------------


def run_cleanup(args: argparse.Namespace) -> int:
    from agentdata_tui.sandbox.docker import cleanup
    from agentdata_tui.sandbox.local import sweep_orphans, sweep_patch_files

    folders = sweep_orphans()
    patches = sweep_patch_files()
    if folders or patches:  # on stderr: stdout lists the Docker servers' containers, one line each
        print(
            f"cleanup: removed {folders} local sandbox folder(s) of killed runs and {patches} stale "
            "agentdata-*.patch file(s) from the temp folder",
            file=sys.stderr,
        )

    reports = cleanup(_servers(args.docker_server) or None, args.run_id, include_live=args.include_live)
    failed = 0
    for rep in reports:
        line = f"{rep.server}: removed {len(rep.removed)} container{'s' if len(rep.removed) != 1 else ''}"
        if rep.skipped_live:
            line += f"; left {len(rep.skipped_live)} of running processes (--include-live removes them)"
        print(line)
        for f in rep.failed:
            print(f"  could not remove {f}", file=sys.stderr)
        failed += len(rep.failed)
    return 1 if failed else 0
