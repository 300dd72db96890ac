from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = REPO / "tests" / "data" / "mini-swe-agent"


@pytest.fixture
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture
def unisolated(monkeypatch):
    """Local sandboxes without bubblewrap, for tests whose commands leave marks in the host's files
    (a flaky setup's marker, timing spans): isolated commands cannot reach them by design."""
    from agentdata_tui.sandbox.isolation import bwrap_path

    monkeypatch.setenv("AGENTDATA_BWRAP", "")
    bwrap_path.cache_clear()
    yield
    monkeypatch.delenv("AGENTDATA_BWRAP")
    bwrap_path.cache_clear()
