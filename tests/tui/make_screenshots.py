"""Regenerate ``screenshots/*.svg``: every screen at 120×40 with frozen data and clock.

    python tests/tui/make_screenshots.py

Uses the same frozen apps as the snapshot tests (``snapshot_apps.py``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # tests/: `tui.*` and `servers.*` as in pytest

from tui.snapshot_apps import SCREENS  # noqa: E402


async def shoot(name: str, out_dir: Path, size: tuple[int, int] = (120, 40)) -> Path:
    app, ready = SCREENS[name]()
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await pilot.pause()
        app.save_screenshot(filename=f"{name}.svg", path=str(out_dir))
    return out_dir / f"{name}.svg"


def main() -> int:
    out_dir = REPO / "screenshots"
    out_dir.mkdir(exist_ok=True)
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="agentdata-screens.") as tmp:
        os.chdir(tmp)
        os.environ["XDG_CONFIG_HOME"] = str(Path(tmp) / "xdg")
        try:
            for name in SCREENS:
                print(asyncio.run(shoot(name, out_dir)).relative_to(REPO))
        finally:
            os.chdir(home)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
