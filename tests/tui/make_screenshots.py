"""Regenerate ``screenshots/*.svg``: every screen at 120×40 with frozen data and clock, and the
main ones at 80×24 too (``NAME-80x24.svg``).

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

SMALL = ("launch", "dashboard", "browser", "export_dialog", "compare")


async def shoot(name: str, out_dir: Path, size: tuple[int, int] = (120, 40)) -> Path:
    app, ready = SCREENS[name]()
    filename = f"{name}.svg" if size == (120, 40) else f"{name}-{size[0]}x{size[1]}.svg"
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await pilot.pause()
        app.save_screenshot(filename=filename, path=str(out_dir))
    return out_dir / filename


def main() -> int:
    out_dir = REPO / "screenshots"
    out_dir.mkdir(exist_ok=True)
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="agentdata-screens.") as tmp:
        os.chdir(tmp)
        os.environ["XDG_CONFIG_HOME"] = str(Path(tmp) / "xdg")
        try:
            for name in SCREENS:
                sizes = [(120, 40)] + ([(80, 24)] if name in SMALL else [])
                for size in sizes:
                    with tempfile.TemporaryDirectory(prefix=f"{name}.", dir=tmp) as one:
                        os.chdir(one)  # each screen writes its data afresh
                        print(asyncio.run(shoot(name, out_dir, size)).relative_to(REPO))
        finally:
            os.chdir(home)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
