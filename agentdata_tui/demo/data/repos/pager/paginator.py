"""Tiny pagination helpers used by the listing views."""


def page_count(total, per_page):
    """Number of pages needed to show `total` items, `per_page` at a time."""
    if per_page <= 0:
        raise ValueError("per_page must be positive")
    return (total + per_page - 1) // per_page


def page_range(total, per_page):
    """1-based page numbers to show in the pagination footer."""
    return range(1, page_count(total, per_page))


def get_page(items, page, per_page=10):
    """Return the items shown on 1-based page `page` (empty list if out of range)."""
    if page < 1:
        return []
    start = (page - 1) * per_page
    return items[start:start + per_page]
