"""Generation subcommands: ``generate_single``, ``generate-multi``, ``check`` and ``demo`` (DESIGN §2).

Thin: flags in, a :class:`~agentdata_tui.runner.RunSpec` and its components out, then the
core's runner. Heavy imports (requests, the agent, docker) happen inside the handlers so that
``agentdata-tui --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from agentdata_tui.cli.common import non_negative_int, positive_int
from agentdata_tui.errors import UserError

DEFAULT_BASE_URL = "http://localhost:8000/v1"
LOCAL_WARNING = (
    "warning: environment_class 'local': commands the model writes run on THIS machine, as your user "
    "(in a temporary copy of each repo, with a scrubbed environment{how}). Use --environment-class docker "
    "to isolate them fully."
)

_GEN_EPILOG = """examples:
  agentdata-tui generate-multi --dataset tasks.json --base-url http://gpu1:8000/v1 --model Qwen/Qwen3-8B \\
      --workers 16 --output runs/qwen.json
  agentdata-tui generate-multi --dataset tasks.json --docker-server 10.0.0.5:2375 --eval-server 10.0.0.5:9528 \\
      --samples-per-task 4 --temperature 1.0 --max-tokens 8000 --retry-errors 2
  agentdata-tui generate-multi --dataset tasks.json --output runs/qwen.json --resume   # after a crash or a stop

The run folder runs/qwen.run/ (examples.jsonl, events.jsonl, run.json) fills as rollouts end;
runs/qwen.json is written at the end and on Ctrl+C/SIGTERM. Watch it live: agentdata-tui watch runs/qwen.json"""


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model server")
    g.add_argument(
        "--api-key",
        default=None,
        help="API key of the model server (default: $OPENAI_API_KEY); never written to any file",
    )
    g.add_argument(
        "--base-url",
        default=None,
        metavar="URL[,URL...]",
        help="OpenAI-compatible base URL; several (comma-separated) replicas of the same model share the "
        "rollouts: each rollout sticks to one, a failing one is taken out and re-probed (default: the "
        f"config's model.endpoints, else $OPENAI_BASE_URL, else {DEFAULT_BASE_URL})",
    )
    g.add_argument(
        "--model",
        default=None,
        help="model name (default: the config's model_name, else the one model the server lists)",
    )


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sandbox and evaluation")
    g.add_argument(
        "--docker-server",
        default=None,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="Docker Engine API endpoint(s); implies --environment-class docker_remote unless given",
    )
    g.add_argument(
        "--eval-server",
        default="local",
        metavar="URL|HOST:PORT|local",
        help="eval server for grading patches, or 'local' for the built-in evaluator (default: local)",
    )
    g.add_argument(
        "--eval-token",
        default=None,
        help="Bearer token for the eval server (default: $AGENTDATA_EVAL_TOKEN); never written to any file",
    )
    g.add_argument(
        "--environment-class",
        default=None,
        help="sandbox: local, docker, docker_remote, or your own class as pkg.module:Class "
        "(default: the config's environment.environment_class)",
    )
    g.add_argument(
        "-c",
        "--config",
        action="append",
        default=None,
        metavar="FILE|KEY.PATH=VALUE",
        help="agent config, repeatable as mini-swe-agent's -c: each a YAML file (mini-swe-agent's own "
        "configs work unchanged) or a key.path=value override, merged in order "
        "(e.g. -c mini_textbased.yaml -c model.model_class=litellm_textbased); "
        "default: the bundled mini.yaml, which overrides alone also apply to",
    )
    g.add_argument(
        "--allow-unisolated-local",
        action="store_true",
        help="run a real model's commands in the local sandbox even without bubblewrap (bwrap), which "
        "otherwise keeps them from this machine's processes, secrets and files. Without bwrap and "
        "without this flag the local sandbox is refused",
    )


def _add_run_flags(p: argparse.ArgumentParser, *, multi: bool) -> None:
    g = p.add_argument_group("run")
    g.add_argument(
        "--output",
        default="training_data.json",
        help="training-data file to write (default: ./training_data.json); its run folder is OUTPUT "
        "with .run instead of .json",
    )
    g.add_argument(
        "--workers",
        type=positive_int,
        default=4 if multi else 1,
        help=f"rollouts at once (default: {4 if multi else 1})",
    )
    g.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampling temperature (default: the config's, else the server's)",
    )
    g.add_argument(
        "--max-tokens",
        type=positive_int,
        default=None,
        help="max tokens per reply (default: the config's, else the server's)",
    )
    g.add_argument(
        "--samples-per-task",
        type=positive_int,
        default=1,
        help="rollouts per task, numbered by sample_index (default: 1)",
    )
    g.add_argument(
        "--retry-errors",
        type=non_negative_int,
        default=0,
        help="give each (instance, sample) whose attempt ended in ModelError/SandboxError up to N more tries in "
        "this invocation (with --resume too: a fresh budget each time); an attempt whose only failure was its "
        "evaluation is re-graded from its recorded patch instead of re-run. Every attempt stays in "
        "examples.jsonl, the output holds the last (default: 0)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUTPUT's run folder: (instance, sample) pairs with a recorded attempt "
        "are skipped, the rest run; the task selection run.json records is used (refused if the model, "
        "config, dataset or selection changed, unless --force)",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="with --resume: resume even if model/config/dataset/selection changed, moving nothing; without: "
        "start over, setting the run folder and a stale OUTPUT aside (OUTPUT.run.old-<time>, "
        "OUTPUT.old-<time>); nothing else is moved",
    )
    g.add_argument(
        "--log-file", default=None, help="also write a log of the run (rollouts, errors) to this file"
    )
    if multi:
        s = p.add_argument_group("task selection (applied in this order)")
        s.add_argument(
            "--instance-ids", default=None, help="only these instance_ids (comma or space separated)"
        )
        s.add_argument(
            "--filter",
            default=None,
            metavar="REGEX",
            help="only instance_ids matching this regular expression",
        )
        s.add_argument(
            "--slice",
            default=None,
            metavar="A:B",
            help="only instances A..B-1 of the dataset (either side may be empty)",
        )
        s.add_argument("--shuffle", action="store_true", help="shuffle the selected instances (see --seed)")
        s.add_argument(
            "--seed",
            type=int,
            default=None,
            help="random seed for --shuffle (default: drawn, recorded in run.json)",
        )
        s.add_argument(
            "--max-tasks", type=positive_int, default=None, help="at most N tasks (after the above)"
        )
        x = p.add_argument_group("executor")
        x.add_argument(
            "--executor",
            choices=["thread", "ray"],
            default="thread",
            help="thread: worker threads in this process (default); ray: one threaded actor per node of a "
            "Ray cluster runs the rollouts (needs the [ray] extra), this process records them",
        )
        x.add_argument(
            "--ray-address",
            default=None,
            metavar="ADDR",
            help="with --executor ray: the cluster's address, e.g. 10.0.0.5:6379 or auto (default: "
            "$RAY_ADDRESS, else a Ray started on this machine for the run)",
        )


def register(add) -> None:
    p = add(
        "generate-multi",
        help="run the agent over a dataset, many rollouts at once, and record training data",
        description=(
            "Runs a mini-swe-agent-style agent on every selected task of the dataset (--workers rollouts "
            "at once), evaluates each patch (reward 0..1, speedup for benchmark tasks) and records each "
            "rollout with its conversation, steps and git diff. Flags override the config file."
        ),
        epilog=_GEN_EPILOG,
    )
    p.add_argument(
        "--dataset", required=True, help='dataset file: a JSON array, {"instances": [...]} or JSONL'
    )
    _add_model_flags(p)
    _add_server_flags(p)
    _add_run_flags(p, multi=True)
    p.set_defaults(func=run_generate_multi)

    p = add(
        "generate_single",
        help="run the agent on one instance → a training-data file with one example",
        description=(
            "One rollout of one instance: --instance is an instance JSON object, a dataset with one "
            "instance, or a training-data file with one example (e.g. to re-run it)."
        ),
        epilog=(
            "example:\n  agentdata-tui generate_single --instance task_001.json --model Qwen/Qwen3-8B "
            "--output one.json"
        ),
    )
    p.add_argument(
        "--instance", required=True, help="instance JSON (or a file holding exactly one instance/example)"
    )
    _add_model_flags(p)
    _add_server_flags(p)
    _add_run_flags(p, multi=False)
    p.set_defaults(func=run_generate_single)

    p = add(
        "check",
        help="test the model server, docker server(s) and eval server of these flags/config",
        description=(
            "Asks each configured server whether it answers: the model server (GET /models, and whether "
            "--model is among them), the Docker server(s) (ping), the eval server (GET /health). "
            "Prints what answered; exits 1 when something did not."
        ),
        epilog="example:\n  agentdata-tui check --base-url http://gpu1:8000/v1 --eval-server 10.0.0.5:9528",
    )
    _add_model_flags(p)
    _add_server_flags(p)
    p.set_defaults(func=run_check)

    p = add(
        "demo",
        help="the whole pipeline offline on the bundled demo dataset (no servers)",
        description=(
            "Runs five small real tasks (four bug fixes, one performance task) through the same runner, "
            "local sandbox and built-in evaluator as a real run, with a scripted replay model (DEMO: no "
            "model is asked). Writes the training data and prints the analyze summary. In a terminal it "
            "opens the live dashboard; --headless keeps to plain output."
        ),
        epilog="examples:\n  agentdata-tui demo\n  agentdata-tui demo --headless --output /tmp/demo.json",
    )
    p.add_argument("--headless", action="store_true", help="plain terminal output, no dashboard")
    p.add_argument(
        "--output",
        default="demo_training_data.json",
        help="where to write (default: ./demo_training_data.json)",
    )
    p.add_argument("--workers", type=positive_int, default=4, help="rollouts at once (default: 4)")
    p.add_argument(
        "--latency",
        type=float,
        default=None,
        help="seconds the replay model waits per reply, so a dashboard has something to show "
        "(default: 0 headless, 0.4 with the dashboard)",
    )
    p.add_argument("--resume", action="store_true", help="continue a stopped demo run in OUTPUT's run folder")
    p.set_defaults(func=run_demo)


# -- shared helpers ---------------------------------------------------------------------------


def resolve_api_key(args: argparse.Namespace, config=None) -> str | None:
    """``--api-key``, else the config's ``model_kwargs.api_key``, else ``$OPENAI_API_KEY``."""
    from_config = config.model.api_key() if config is not None else None
    return args.api_key or from_config or os.environ.get("OPENAI_API_KEY") or None


def resolve_base_url(args: argparse.Namespace, config=None) -> str:
    return resolve_base_urls(args, config)[0]


def resolve_base_urls(args: argparse.Namespace, config=None) -> list[str]:
    """``--base-url A,B``, else the config's ``model.endpoints``, else its ``model_kwargs.api_base``
    / ``base_url`` (mini-swe-agent's), else $OPENAI_BASE_URL, else the default."""
    from agentdata_tui.model.pool import split_endpoints

    if args.base_url:
        urls = split_endpoints(args.base_url)
        if not urls:
            raise UserError(f"--base-url {args.base_url!r}: no URL in it")
        return urls
    if config is not None and config.model.endpoints:
        return split_endpoints(config.model.endpoints)
    if config is not None and config.model.api_base():
        return [config.model.api_base().rstrip("/")]
    return [(os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")]


def load_run_config(args: argparse.Namespace):
    """The merged ``--config`` layers (files and ``key.path=value`` overrides, in order)."""
    from agentdata_tui.config import load_configs

    return load_configs(getattr(args, "config", None) or [])


def print_unused_keys(config) -> None:
    """The keys understood but not used, in one line on stderr, once a run starts."""
    line = config.unused_keys_line()
    if line:
        print(f"note: {line}", file=sys.stderr)


def resolve_eval_token(args: argparse.Namespace) -> str | None:
    return args.eval_token or os.environ.get("AGENTDATA_EVAL_TOKEN") or None


def _environment(args: argparse.Namespace, config) -> tuple[str, list[str]]:
    from agentdata_tui.sandbox.docker import parse_servers

    servers = parse_servers(args.docker_server)
    kind = args.environment_class or ("docker_remote" if servers else config.environment.environment_class)
    if kind == "docker_remote" and not servers:
        raise UserError("environment_class docker_remote needs --docker-server HOST:PORT[,HOST:PORT...]")
    from agentdata_tui.sandbox import resolve_class

    resolve_class(kind)  # an unknown class is named now, before any server is asked
    return kind, servers


def _model_defaults(config, args: argparse.Namespace) -> tuple[float | None, int | None]:
    kw = config.model.model_kwargs
    temperature = args.temperature if args.temperature is not None else kw.get("temperature")
    max_tokens = (
        args.max_tokens
        if args.max_tokens is not None
        else kw.get("max_tokens", kw.get("max_completion_tokens"))
    )
    return temperature, max_tokens


# -- generate -----------------------------------------------------------------------------------


def run_generate_multi(args: argparse.Namespace) -> int:
    from agentdata_tui.dataset import load_dataset
    from agentdata_tui.runner.execute import check_output_path
    from agentdata_tui.runner.selection import Selection, parse_ids, resolve_selection, select_instances
    from agentdata_tui.runner.store import RunStore

    dataset = load_dataset(args.dataset)
    given = Selection(
        instance_ids=parse_ids(args.instance_ids) if args.instance_ids else None,
        filter=args.filter,
        slice=args.slice,
        shuffle=args.shuffle,
        seed=args.seed,
        max_tasks=args.max_tasks,
    )
    recorded = None
    if args.resume:
        previous = RunStore(check_output_path(args.output)).read_run_json()
        rec = previous.get("selection", (previous.get("metadata") or {}).get("selection"))
        recorded = rec if isinstance(rec, dict) else None
    selection = resolve_selection(given, recorded, resume=args.resume, force=args.force)
    instances = select_instances(dataset.instances, selection)
    return _generate(args, dataset, instances, selection.public(), command="generate-multi")


def run_generate_single(args: argparse.Namespace) -> int:
    from agentdata_tui.dataset import load_dataset

    dataset = load_dataset(args.instance)
    if len(dataset.instances) != 1:
        raise UserError(
            f"{args.instance}: holds {len(dataset.instances)} instances; generate_single takes one "
            "(use generate-multi --dataset with --instance-ids to pick some)"
        )
    return _generate(
        args, dataset, [_as_instance(i) for i in dataset.instances], {}, command="generate_single"
    )


def _as_instance(inst):
    """An example of a training-data file used as an instance: without the recorded rollout."""
    from agentdata_tui.dataset import Instance
    from agentdata_tui.records import Example

    recorded = set(Example.model_fields) - {"instance_id", "problem_statement"}
    data = {k: v for k, v in inst.to_dict().items() if k not in recorded}
    return Instance.model_validate(data)


def _generate(
    args: argparse.Namespace, dataset, instances, selection: dict[str, Any], *, command: str
) -> int:
    from agentdata_tui import __version__
    from agentdata_tui.agent.loop import tools_for
    from agentdata_tui.evaluation import normalize_eval_url
    from agentdata_tui.model.client import public_url, resolve_model_name, served_model_name
    from agentdata_tui.model.pool import build_model
    from agentdata_tui.runner.execute import check_output_path, refuse_if_in_use

    config = load_run_config(args)
    output = check_output_path(args.output)
    refuse_if_in_use(output)
    kind, servers = _environment(args, config)
    from agentdata_tui.sandbox.isolation import bwrap_path, check_isolation

    check_isolation(kind, real_model=True, allow_unisolated=getattr(args, "allow_unisolated_local", False))
    eval_url = normalize_eval_url(args.eval_server)
    api_key = resolve_api_key(args, config)
    eval_token = resolve_eval_token(args)
    secrets = [s for s in (api_key, eval_token, config.model.api_key()) if s]
    base_urls = resolve_base_urls(args, config)
    base_url = base_urls[0]
    model_name = resolve_model_name(base_url, api_key, args.model, config.model)
    listed = _probe_model_servers(base_urls, api_key)  # also: make sure someone answers at all
    served = served_model_name(model_name, listed)
    temperature, max_tokens = _model_defaults(config, args)
    tools = tools_for(config)
    if kind in ("docker", "docker_remote"):
        from agentdata_tui.sandbox.docker import images_needed, preflight

        preflight(servers, images_needed(instances, config.environment), config.environment.pull_policy)
    executor = _executor(
        args,
        config=config,
        dataset=dataset,
        base_urls=base_urls,
        api_key=api_key,
        model_name=model_name,
        served_name=served,
        environment_class=kind,
        docker_servers=servers,
        eval_server=eval_url,
        eval_token=eval_token,
        secrets=secrets,
    )
    model = build_model(
        base_urls,
        api_key,
        model_name,
        config.model,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        pool_size=args.workers,
        served_name=served,
    )
    from agentdata_tui.runner.logs import setup_logging

    setup_logging(args.log_file, secrets)
    print_unused_keys(config)
    if kind == "local":
        how = ", isolated by bubblewrap" if bwrap_path() else ", NOT isolated: bubblewrap is missing"
        print(LOCAL_WARNING.format(how=how), file=sys.stderr)
    metadata = {
        "model_name": model_name,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "config_file": config.path,
        "dataset_file": str(dataset.path),
        "workers": args.workers,
        "tool_version": __version__,
        "config_sha256": config.sha256,
        "dataset_sha256": dataset.sha256,
        "base_url": ",".join(public_url(u) for u in base_urls),
        "environment_class": kind,
        "docker_servers": servers,
        "eval_server": eval_url or "local",
        "samples_per_task": args.samples_per_task,
        "retry_errors": args.retry_errors,
        "selection": selection,
        "generator": f"agentdata-tui {command}",
        "config_sources": config.sources,
        "action_mode": config.action_mode,
    }
    if executor is not None:
        metadata["executor"] = "ray"
    if served != model_name:
        metadata["served_model_name"] = served
    if tools:
        metadata["tools"] = tools
    from agentdata_tui.runner.execute import RunRequest, execute_run

    request = RunRequest(
        dataset=dataset,
        instances=instances,
        config=config,
        output=output,
        model=model,
        metadata=metadata,
        environment_class=kind,
        docker_servers=servers,
        eval_server=eval_url,
        eval_token=eval_token,
        secrets=secrets,
        workers=args.workers,
        samples_per_task=args.samples_per_task,
        retry_errors=args.retry_errors,
        resume=args.resume,
        force=args.force,
        log_file=args.log_file,
        executor=executor,
    )
    try:
        return execute_run(request)
    finally:
        model.close()


def _executor(args: argparse.Namespace, **recipe: Any):
    """``--executor ray``: the Ray executor over the run's parts (Ray is imported only then)."""
    if getattr(args, "executor", "thread") != "ray":
        if getattr(args, "ray_address", None):
            raise UserError("--ray-address is for --executor ray")
        return None
    from agentdata_tui.runner.ray_executor import PartsRecipe, RayExecutor, import_ray

    import_ray()  # a clear one-line error when the extra is not installed
    temperature, max_tokens = args.temperature, args.max_tokens
    parts = PartsRecipe(temperature=temperature, max_tokens=max_tokens, **recipe)
    return RayExecutor(args.ray_address or os.environ.get("RAY_ADDRESS") or None, parts)


def _probe_model_servers(base_urls: list[str], api_key: str | None) -> list[str] | None:
    """With several endpoints the run needs one that answers; the others are said and re-probed.
    Returns the models the first answering endpoint lists (None when none gave a usable list)."""
    if len(base_urls) == 1:
        return _probe_model_server(base_urls[0], api_key)
    failed: list[str] = []
    listed: list[str] | None = None
    for url in base_urls:
        try:
            models = _probe_model_server(url, api_key)
        except UserError as exc:
            failed.append(str(exc))
            continue
        if listed is None:
            listed = models
    if len(failed) == len(base_urls):
        raise UserError(f"none of the {len(base_urls)} model endpoints answers: {failed[0]}")
    for text in failed:
        print(f"warning: {text}; the run starts on the others and retries it", file=sys.stderr)
    return listed


def _probe_model_server(base_url: str, api_key: str | None) -> list[str] | None:
    """The models the server lists (None when it has no usable list). A server that cannot be
    reached fails the run now, not after every rollout's retries."""
    from agentdata_tui.interfaces import ModelError
    from agentdata_tui.model.client import list_models, public_url

    try:
        return list_models(base_url, api_key, timeout=15)
    except ModelError as exc:
        text = str(exc)
        if "cannot reach" in text or "no answer" in text:
            raise UserError(
                f"{text} (check it with: agentdata-tui check --base-url {public_url(base_url)})"
            ) from None
        print(f"warning: {text}; going on with the run", file=sys.stderr)  # e.g. a server without /models
        return None


# -- check -----------------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    from agentdata_tui.evaluation import EvalServerClient, normalize_eval_url
    from agentdata_tui.interfaces import ModelError
    from agentdata_tui.model.client import list_models, public_url, served_model_name

    config = load_run_config(args)
    failures = 0
    api_key = resolve_api_key(args, config)
    wanted = args.model or config.model.model_name
    for base_url in resolve_base_urls(args, config):
        try:
            models = list_models(base_url, api_key)
        except ModelError as exc:
            print(f"FAIL  model server {public_url(base_url)}: {exc}")
            failures += 1
            continue
        shown = ", ".join(models[:10]) + (f", ... ({len(models)} in all)" if len(models) > 10 else "")
        print(f"ok    model server {public_url(base_url)}: answers; models: {shown or '(none)'}")
        served = served_model_name(wanted, models) if wanted else None
        if wanted and served not in models:
            print(f"FAIL  model {wanted!r} is not among the served models")
            failures += 1
        elif wanted:
            as_name = f" (as {served!r})" if served != wanted else ""
            print(f"ok    model {wanted!r} is served{as_name}")
    kind, servers = _environment(args, config)
    if kind in ("docker", "docker_remote"):
        from agentdata_tui.sandbox.docker import preflight

        for srv in servers or [None]:
            name = srv or "local docker daemon"
            try:
                preflight([srv] if srv else None, [], config.environment.pull_policy)
            except UserError as exc:
                print(f"FAIL  {exc}")
                failures += 1
            else:
                print(f"ok    docker server {name}: answers")
    elif kind == "local":
        print("ok    sandbox: local (commands run on this machine in temporary copies)")
    else:
        print(f"ok    sandbox: {kind} (importable)")
    eval_url = normalize_eval_url(args.eval_server)
    if eval_url is None:
        print("ok    evaluation: built-in evaluator (local)")
    else:
        ok, msg = EvalServerClient(eval_url, resolve_eval_token(args), retries=1, backoff=0.5).health()
        print(("ok    " if ok else "FAIL  ") + msg)
        failures += not ok
    if failures:
        print(f"{failures} check(s) failed")
    return 1 if failures else 0


# -- demo --------------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    if not args.headless and sys.stdout.isatty():
        try:
            from agentdata_tui.cli.tui import run_demo_tui
        except (ImportError, AttributeError):
            pass
        else:
            return run_demo_tui(args)
    from agentdata_tui.demo.run import run_demo_headless

    return run_demo_headless(args)
