"""The demo's model: plays scripted replies instead of asking a server (DESIGN §1 ``Model``).

It makes ``agentdata-tui demo`` run the whole pipeline offline — the same runner, sandbox and
evaluator as a real run — so what the demo shows is real behaviour, not a mock-up: commands
really run, tests really pass or fail, the benchmark is really timed. The reply is chosen by
``context.instance_id`` and the number of assistant messages so far (stateless, so resumed
or parallel rollouts replay identically); past the end of a script its last reply repeats.
"""

from __future__ import annotations

import json
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from agentdata_tui.interfaces import ModelError, ModelResponse, RolloutContext

DEMO_MODEL_NAME = "demo-replay (DEMO: scripted replies, no model)"


def demo_data_dir() -> Path:
    return Path(str(resources.files("agentdata_tui") / "demo" / "data"))


class ReplayModel:
    """Implements ``interfaces.Model`` from a mapping instance_id → list of assistant replies."""

    def __init__(
        self,
        replies: dict[str, list[str]],
        *,
        name: str = DEMO_MODEL_NAME,
        latency: float = 0.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.replies = replies
        self.name = name
        self.latency = latency
        self._stop = stop or threading.Event()

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ReplayModel:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ValueError(f"{path}: expected an object mapping instance_id to a list of replies")
        return cls({str(k): [str(x) for x in v] for k, v in data.items()}, **kwargs)

    def query(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        context: RolloutContext | None = None,
    ) -> ModelResponse:
        t0 = time.monotonic()
        if context is None or context.instance_id not in self.replies:
            who = context.instance_id if context else "(no context)"
            raise ModelError(f"the replay model has no script for instance {who}")
        script = self.replies[context.instance_id]
        if not script:
            raise ModelError(f"the replay model's script for {context.instance_id} is empty")
        n = sum(1 for m in messages if m.get("role") == "assistant")
        reply = script[min(n, len(script) - 1)]
        if self.latency:
            self._stop.wait(self.latency)  # paced like a model, so the dashboard has something to show
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        return ModelResponse(
            content=reply,
            prompt_tokens=prompt_chars // 4 + 1,  # a typical ~4 characters per token
            completion_tokens=len(reply) // 4 + 1,
            finish_reason="stop",
            latency_s=round(time.monotonic() - t0, 4),
        )
