"""Snapshots of every screen at 120×40 and the browser at 80×24 (clock frozen, data fixed).

Regenerate after an intended change with ``pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.snapshot_apps import SCREENS, browser


@pytest.mark.parametrize("name", list(SCREENS))
def test_screen(name: str, snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    app, ready = SCREENS[name]()
    assert snap_compare(app, terminal_size=(120, 40), run_before=ready)


def test_browser_at_80x24(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app, ready = browser()
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_dashboard_at_80x24(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app, ready = SCREENS["dashboard"]()
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)
