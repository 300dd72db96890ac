"""agentdata-tui: generate, watch, browse, filter and export coding-agent training data."""

from __future__ import annotations

__version__ = "0.1.0"
