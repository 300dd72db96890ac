"""Snapshots of every screen at 120×40 and at 80×24 (clock frozen, data fixed).

Regenerate after an intended change with ``pytest tests/tui/test_snapshots.py --snapshot-update``
and look at the SVGs it wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.snapshot_apps import SCREENS

SIZES = {"120x40": (120, 40), "80x24": (80, 24)}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(SCREENS))
def test_screen(name: str, size: str, snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    app, ready = SCREENS[name]()
    assert snap_compare(app, terminal_size=SIZES[size], run_before=ready)
