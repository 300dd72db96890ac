from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = REPO / "tests" / "data" / "mini-swe-agent"


@pytest.fixture
def samples_dir() -> Path:
    return SAMPLES
