"""The agent loop (mini-swe-agent semantics): ``loop.Agent`` and its ``AgentResult``."""

from agentdata_tui.agent.loop import Agent, AgentResult

__all__ = ["Agent", "AgentResult"]
