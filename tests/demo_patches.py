"""Patches of the bundled demo tasks, shared by the evaluation, eval-server and regrade tests."""

from __future__ import annotations

from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "agentdata_tui" / "demo" / "data"
PAGER = "demo__pager-last-page"
# The reference fix of demo__pager-last-page (the off-by-one in page_range).
PAGER_FIX = "\n".join(
    [
        "--- a/paginator.py",
        "+++ b/paginator.py",
        "@@ -10,7 +10,7 @@ def page_count(total, per_page):",
        " ",
        " def page_range(total, per_page):",
        '     """1-based page numbers to show in the pagination footer."""',
        "-    return range(1, page_count(total, per_page))",
        "+    return range(1, page_count(total, per_page) + 1)",
        " ",
        " ",
        " def get_page(items, page, per_page=10):",
        "",
    ]
)
