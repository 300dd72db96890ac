"""Is a measured speedup real? A one-sided Mann–Whitney U test over the raw benchmark repeats.

Why this test: benchmark times are neither normal nor independent of the machine's load, and
repeats are few (5 by default); a rank test assumes neither, and SWE-Perf uses the same one.
The alternative is "patched runs are faster than base runs". ``U`` counts the (base, patched)
pairs where the patched run was faster (ties count one half), so U = n·m when every patched run
beat every base run; p = P(U ≥ observed) when the two samples come from one distribution.

The p-value is exact for small samples: without ties from the classic counting recursion
(5 + 5 repeats: the smallest p is 1/252), with ties by enumerating every split of the pooled
times; beyond that the normal approximation with tie and continuity corrections (as SciPy's
``method="asymptotic"``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

TEST_NAME = "mann_whitney_u"
ALTERNATIVE = "patched_faster"
ALPHA = 0.05
_EXACT_MAX_PAIRS = 2500  # n·m up to this: the counting recursion (no ties)
_EXACT_MAX_SPLITS = 20_000  # C(n+m, n) up to this: enumeration (ties)


@dataclass(frozen=True)
class UTest:
    u: float
    p_value: float
    method: str  # exact | exact_ties | asymptotic

    def as_info(self, alpha: float = ALPHA) -> dict[str, object]:
        """The ``evaluation_info.speedup_test`` block (a shared contract: keep the keys)."""
        return {
            "name": TEST_NAME,
            "alternative": ALTERNATIVE,
            "alpha": alpha,
            "p_value": round(self.p_value, 6),
            "significant": self.p_value <= alpha + 1e-12,
            "u": self.u,
            "method": self.method,
        }


def _u(base: Sequence[float], patched: Sequence[float]) -> float:
    return sum(1.0 if p < b else 0.5 if p == b else 0.0 for b in base for p in patched)


def _counts(n: int, m: int) -> list[int]:
    """Number of orderings of n base and m patched values with U = 0..n·m (no ties)."""
    # f[j][u] for the current i: distributions of U for i base values and j patched values.
    prev = [[1] for _ in range(m + 1)]  # i = 0: U = 0 only
    for i in range(1, n + 1):
        cur = [[1]]  # j = 0
        for j in range(1, m + 1):
            # Place the largest value: a base value (it beats all j patched: +j) or a patched one.
            a, b = prev[j], cur[j - 1]
            size = i * j + 1
            row = [0] * size
            for u, c in enumerate(a):
                row[u + j] += c
            for u, c in enumerate(b):
                row[u] += c
            cur.append(row)
        prev = cur
    return prev[m]


def mann_whitney(base: Sequence[float], patched: Sequence[float]) -> UTest:
    """One-sided test that ``patched`` times are smaller than ``base`` times."""
    n, m = len(base), len(patched)
    if n == 0 or m == 0:
        return UTest(0.0, 1.0, "exact")
    u = _u(base, patched)
    pooled = [*base, *patched]
    ties = len(set(pooled)) < len(pooled)
    if not ties and n * m <= _EXACT_MAX_PAIRS:
        counts = _counts(n, m)
        k = math.ceil(u)  # integral without ties
        return UTest(u, sum(counts[k:]) / math.comb(n + m, n), "exact")
    if ties and math.comb(n + m, n) <= _EXACT_MAX_SPLITS:
        total = hits = 0
        for idx in itertools.combinations(range(n + m), n):
            chosen = set(idx)
            b = [pooled[i] for i in idx]
            p = [pooled[i] for i in range(n + m) if i not in chosen]
            total += 1
            if _u(b, p) >= u - 1e-9:
                hits += 1
        return UTest(u, hits / total, "exact_ties")
    return UTest(u, _asymptotic(u, n, m, pooled), "asymptotic")


def _asymptotic(u: float, n: int, m: int, pooled: list[float]) -> float:
    big = n + m
    tie_term = 0
    for _, group in itertools.groupby(sorted(pooled)):
        t = len(list(group))
        tie_term += t**3 - t
    var = n * m / 12 * ((big + 1) - tie_term / (big * (big - 1)))
    if var <= 0:
        return 1.0
    z = (u - n * m / 2 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))
