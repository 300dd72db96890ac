"""The launch screen's connection tests (Textual-free): the same checks as ``agentdata-tui check``.

Each returns a :class:`CheckResult` with a one-line answer for the screen; they call the
core clients (model client, eval client, docker sandbox) and never raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CheckResult:
    server: str  # model | docker | eval
    ok: bool
    message: str
    models: list[str] = field(default_factory=list)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def check_model(base_url: str, api_key: str, timeout: float = 10.0) -> CheckResult:
    """``GET {base_url}/models``: the served models, offered in the model field."""
    from agentdata_tui.model.client import list_models

    try:
        models = [str(m) for m in list_models(base_url, api_key or None, timeout=timeout)]
    except Exception as exc:
        return CheckResult("model", False, f"✗ {base_url}: {_short(exc)}")
    if not models:
        return CheckResult("model", True, "✓ reachable, but it lists no models")
    shown = ", ".join(models[:5]) + (f" (+{len(models) - 5})" if len(models) > 5 else "")
    return CheckResult("model", True, f"✓ {len(models)} model(s): {shown}", models)


def check_eval(url: str, token: str | None = None) -> CheckResult:
    """``GET {eval}/health`` (``local`` needs no server)."""
    if not url or url == "local":
        return CheckResult("eval", True, "✓ built-in evaluator (no server needed)")
    from agentdata_tui.evaluation.client import EvalServerClient

    try:
        ok, line = EvalServerClient(url, token or None).health()
    except Exception as exc:
        return CheckResult("eval", False, f"✗ {url}: {_short(exc)}")
    return CheckResult("eval", bool(ok), ("✓ " if ok else "✗ ") + line)


def check_docker(servers: str, environment_class: str, images: list[str] | None = None) -> CheckResult:
    """Ping each docker endpoint (the local daemon when none is given) and look for the images."""
    if environment_class not in ("docker", "docker_remote") and not servers:
        return CheckResult("docker", True, "✓ local sandbox: no docker server needed")
    from agentdata_tui.sandbox.docker import preflight

    endpoints: list[str | None] = [s for s in servers.split(",") if s] or [None]
    answers: list[str] = []
    ok = True
    for endpoint in endpoints:
        name = endpoint or "local daemon"
        try:
            preflight([endpoint] if endpoint else None, images or [])
            what = f", {len(images)} image(s) present" if images else ""
            answers.append(f"✓ {name}: answers{what}")
        except Exception as exc:
            ok = False
            answers.append(f"✗ {_short(exc)}")
    return CheckResult("docker", ok, "; ".join(answers))
