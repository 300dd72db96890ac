"""Summary statistics for the metrics dashboard."""


def mean(values):
    return sum(values) / len(values)


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    mid = n // 2
    if n % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def summarize(values):
    """Return count, mean, median, min and max of `values` (any iterable of numbers)."""
    values = list(values)
    avg = mean(values)
    return {
        "count": len(values),
        "mean": avg,
        "median": median(values),
        "min": min(values),
        "max": max(values),
    }
