"""Sandboxes: where a rollout's commands run (DESIGN §4).

``environment_class`` picks one: ``local`` (a temporary copy of the instance's repo on this
machine), ``docker`` (the local Docker daemon), ``docker_remote`` (the ``--docker-server``
endpoints), or a user's own class named by import path (``package.module:Class`` or
``package.module.Class``) constructed with the same arguments.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from agentdata_tui.config import EnvironmentConfig
from agentdata_tui.dataset import Instance
from agentdata_tui.errors import UserError
from agentdata_tui.interfaces import Sandbox

BUILTIN_CLASSES = {
    "local": "agentdata_tui.sandbox.local:LocalSandbox",
    "docker": "agentdata_tui.sandbox.docker:DockerSandbox",
    "docker_remote": "agentdata_tui.sandbox.docker:DockerSandbox",
}


@dataclass
class SandboxContext:
    """Everything a sandbox may need besides the instance and the environment config."""

    run_id: str = ""
    rollout_id: str = ""
    repo_dir: Path | None = None  # local sandbox: the instance's repo_path, resolved
    docker_servers: list[str] = field(default_factory=list)  # HOST:PORT, for docker_remote
    environment_class: str = "local"
    # False for an evaluation sandbox: nothing will ask for its diff, so no base tree is taken
    # (a local copy then costs one shell and ``git init``, not also ``git add -A`` of the tree).
    diff_base: bool = True


def resolve_class(name: str) -> type:
    target = BUILTIN_CLASSES.get(name, name)
    if ":" in target:
        module_name, _, attr = target.partition(":")
    elif "." in target:
        module_name, _, attr = target.rpartition(".")
    else:
        raise UserError(
            f"unknown environment_class '{name}' (use local, docker, docker_remote or an import path like pkg.mod:Class)"
        )
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"environment_class '{name}': cannot import {target} ({exc})") from None
    return cls


def make_sandbox(instance: Instance, config: EnvironmentConfig, context: SandboxContext) -> Sandbox:
    """Construct (not start) the sandbox of one rollout."""
    cls = resolve_class(context.environment_class or config.environment_class)
    return cls(instance, config, context=context)


def tag_run(sandbox: object, run_id: str) -> None:
    """Give a sandbox its run's id when its maker was built before the run had one.

    Docker containers are labelled with it (``cleanup --run-id``, ``docker ps --filter``);
    the sandbox reads ``context.run_id`` when it starts.
    """
    ctx = getattr(sandbox, "context", None)
    if run_id and isinstance(ctx, SandboxContext) and not ctx.run_id:
        ctx.run_id = run_id
