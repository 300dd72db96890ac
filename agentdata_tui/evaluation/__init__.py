"""Evaluation of a rollout's patch (DESIGN §4): the built-in evaluator or an eval server.

``make_evaluator`` picks one from ``--eval-server``: ``local`` (the default) grades in a fresh
sandbox of the rollout's kind; a URL or ``HOST:PORT`` sends the patch to an eval server.
"""

from __future__ import annotations

from agentdata_tui.evaluation.builtin import BuiltinEvaluator, SandboxFactory, reward_for_speedup
from agentdata_tui.evaluation.client import EvalServerClient, EvaluationError, normalize_eval_url
from agentdata_tui.interfaces import Evaluator

__all__ = [
    "BuiltinEvaluator",
    "EvalServerClient",
    "EvaluationError",
    "make_evaluator",
    "normalize_eval_url",
    "reward_for_speedup",
]


def make_evaluator(
    eval_server: str | None, sandbox_factory: SandboxFactory, *, token: str | None = None, pool_size: int = 4
) -> Evaluator:
    url = normalize_eval_url(eval_server or "local")
    if url is None:
        return BuiltinEvaluator(sandbox_factory)
    return EvalServerClient(url, token, pool_size=pool_size)
