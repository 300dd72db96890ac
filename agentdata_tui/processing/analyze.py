"""Statistics of a training-data stream (``analyze``, the browser's statistics pane).

Only small per-example figures are kept (a few numbers each), never the examples, so a
1 GB file is analysed in flat memory. Pass@k uses the unbiased estimator of Chen et al.
(2021): ``1 - C(n-c, k) / C(n, k)`` per instance, averaged over instances.

Speedups (performance tasks) count where the patched code is correct: the distribution and
geometric mean are over examples whose tests passed (``evaluation_info.status`` ``correct``
or ``correct_no_speedup``; ``success`` for records without a status) and whose benchmark ran
(a speedup). Opt@k uses the same estimator as pass@k with "optimized" for "solved": the tests
passed and the speedup is significant (``evaluation_info.speedup_test.significant``) and at
least the instance's ``evaluation_info.min_speedup``. Speedups over 10x (or flagged by the
evaluation, ``speedup_flagged``) are listed for review: they are more often a broken
benchmark than a real optimization.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter as TallyCounter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agentdata_tui.records import Example

if TYPE_CHECKING:  # rich is imported lazily by the renderer only
    from rich.console import Console

HISTOGRAM_BINS = 10
SUSPICIOUS_SPEEDUP = 10.0
PASSED_STATUSES = frozenset({"correct", "correct_no_speedup"})
# Speedup histogram bucket edges (×): slower, about the same, then by doubling.
SPEEDUP_EDGES = (0.0, 0.9, 1.1, 1.5, 2.0, 5.0, 10.0, math.inf)
FLAGGED_ROWS = 20
PER_INSTANCE_ROWS = 25  # rows of the per-instance table in the Rich rendering


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one instance with ``n`` samples of which ``c`` succeeded."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _dist(values: list[float] | list[int]) -> dict[str, Any]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "max": 0}
    return {
        "mean": round(statistics.fmean(values), 4),
        "median": statistics.median(values),
        "max": max(values),
    }


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


class StatsBuilder:
    """Accumulates :func:`compute_stats` figures one example at a time."""

    def __init__(self) -> None:
        self.total = 0
        self.successful = 0
        self.errors = 0
        self.reward_sum = 0.0
        self.model_calls: list[int] = []
        self.msg_lens: list[int] = []
        self.step_lens: list[int] = []
        self.hist = [0] * HISTOGRAM_BINS
        self.exit_status: TallyCounter[str] = TallyCounter()
        self.speedups: list[float] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.with_tokens = 0
        # instance_id -> {(source, sample_index): (attempt, success, reward)}: the latest attempt
        # per sample (``source`` tells apart inputs analysed together: several runs of a task)
        self.samples: dict[str, dict[tuple[int, int], tuple[int, bool, float]]] = {}
        # instance_id -> {(source, sample_index): _Perf}: the latest attempt's speedup figures
        self.perf: dict[str, dict[tuple[int, int], _Perf]] = {}

    def add(self, ex: Example, source: int = 0) -> None:
        self.total += 1
        reward = _finite(ex.reward) or 0.0
        self.successful += bool(ex.success)
        self.errors += ex.error is not None
        self.reward_sum += reward
        self.model_calls.append(int(ex.model_calls or 0))
        self.msg_lens.append(len(ex.messages))
        self.step_lens.append(ex.assistant_steps)
        self.hist[min(max(int(reward * HISTOGRAM_BINS), 0), HISTOGRAM_BINS - 1)] += 1
        self.exit_status[ex.exit_status if ex.exit_status is not None else "none"] += 1
        speedup = _finite(ex.speedup)
        if speedup is not None:
            self.speedups.append(speedup)
        has_tokens = False
        for step in ex.steps:
            if step.prompt_tokens is not None:
                self.prompt_tokens += step.prompt_tokens
                has_tokens = True
            if step.completion_tokens is not None:
                self.completion_tokens += step.completion_tokens
                has_tokens = True
        self.with_tokens += has_tokens
        per = self.samples.setdefault(ex.instance_id, {})
        key = (source, ex.sample_index)
        prev = per.get(key)
        if prev is None or ex.attempt >= prev[0]:
            per[key] = (ex.attempt, bool(ex.success), reward)
        perf = _Perf.of(ex, speedup)
        if perf is not None:
            slot = self.perf.setdefault(ex.instance_id, {})
            old = slot.get(key)
            if old is None or ex.attempt >= old.attempt:
                slot[key] = perf

    def build(self) -> dict[str, Any]:
        total = self.total
        stats: dict[str, Any] = {
            "total": total,
            "successful": self.successful,
            "failed": total - self.successful,
            "errors": self.errors,
            "success_rate": round(self.successful / total, 6) if total else 0.0,
            "average_reward": round(self.reward_sum / total, 6) if total else 0.0,
            "model_calls": {**_dist(self.model_calls), "total": sum(self.model_calls)},
            "trajectory_length": {"messages": _dist(self.msg_lens), "assistant_steps": _dist(self.step_lens)},
            "reward_histogram": [
                {
                    "low": round(i / HISTOGRAM_BINS, 2),
                    "high": round((i + 1) / HISTOGRAM_BINS, 2),
                    "count": n,
                }
                for i, n in enumerate(self.hist)
            ],
            "exit_status": dict(self.exit_status.most_common()),
            "speedup": None,
            "tokens": None,
            "instances": self._instances(),
        }
        if self.speedups or self.perf:
            # Every example with a benchmark first (as before), then the figures that count
            # only correct patches (see the module docstring).
            sp = self.speedups
            positive = [s for s in sp if s > 0]
            stats["speedup"] = {
                "count": len(sp),
                "mean": round(statistics.fmean(sp), 4) if sp else None,
                "median": round(statistics.median(sp), 4) if sp else None,
                "min": round(min(sp), 4) if sp else None,
                "max": round(max(sp), 4) if sp else None,
                "geometric_mean": round(statistics.geometric_mean(positive), 4) if positive else None,
                "above_1": sum(1 for s in sp if s > 1.0),
                **speedup_figures(self.perf),
            }
        if self.with_tokens:
            stats["tokens"] = {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "total": self.prompt_tokens + self.completion_tokens,
                "examples_with_tokens": self.with_tokens,
            }
        return stats

    def _instances(self) -> dict[str, Any]:
        counts = [len(v) for v in self.samples.values()]
        out: dict[str, Any] = {
            "count": len(self.samples),
            "solved_at_least_once": sum(1 for v in self.samples.values() if any(s for _, s, _ in v.values())),
            "samples_per_instance": {
                "min": min(counts) if counts else 0,
                "max": max(counts) if counts else 0,
                "mean": round(statistics.fmean(counts), 4) if counts else 0.0,
            },
            "pass_at_k": None,
            "per_instance": None,
        }
        if not counts or max(counts) < 2:
            return out
        # Every instance must have n >= k for the estimator, so K is the smallest sample count.
        k_max = min(counts)
        out["pass_at_k"] = {
            str(k): round(
                statistics.fmean(
                    pass_at_k(len(v), sum(s for _, s, _ in v.values()), k) for v in self.samples.values()
                ),
                6,
            )
            for k in range(1, k_max + 1)
        }
        per = []
        for iid, v in self.samples.items():
            rewards = [r for _, _, r in v.values()]
            succ = sum(s for _, s, _ in v.values())
            per.append(
                {
                    "instance_id": iid,
                    "samples": len(v),
                    "successes": succ,
                    "success_rate": round(succ / len(v), 6),
                    "mean_reward": round(statistics.fmean(rewards), 6),
                    "reward_variance": round(statistics.pvariance(rewards), 6),
                }
            )
        out["per_instance"] = per
        return out


class _Perf:
    """One rollout of a performance task, as Opt@k and the speedup figures need it."""

    __slots__ = ("attempt", "sample_index", "passed", "speedup", "significant", "min_speedup", "flagged")

    def __init__(
        self,
        attempt: int,
        sample_index: int,
        passed: bool,
        speedup: float | None,
        significant: bool,
        min_speedup: float | None,
        flagged: bool,
    ) -> None:
        self.attempt, self.sample_index, self.passed, self.speedup = attempt, sample_index, passed, speedup
        self.significant, self.min_speedup, self.flagged = significant, min_speedup, flagged

    @classmethod
    def of(cls, ex: Example, speedup: float | None) -> _Perf | None:
        info = ex.evaluation_info if isinstance(ex.evaluation_info, dict) else {}
        if speedup is None:
            speedup = _finite(_num(info.get("speedup")))
        min_speedup = _finite(_num(info.get("min_speedup")))
        if speedup is None and min_speedup is None:
            return None  # not a performance task (no benchmark ran, no threshold recorded)
        status = info.get("status")
        passed = status in PASSED_STATUSES if isinstance(status, str) and status else bool(ex.success)
        test = info.get("speedup_test")
        significant = isinstance(test, dict) and test.get("significant") is True
        flagged = info.get("speedup_flagged") is True or (
            speedup is not None and speedup > SUSPICIOUS_SPEEDUP
        )
        return cls(ex.attempt, ex.sample_index, passed, speedup, significant, min_speedup, flagged)

    @property
    def optimized(self) -> bool:
        """Correct, significantly faster, and by at least the instance's threshold."""
        if not (self.passed and self.significant and self.speedup is not None):
            return False
        return self.speedup >= (self.min_speedup if self.min_speedup is not None else 1.0)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _geomean(values: list[float]) -> float | None:
    positive = [v for v in values if v > 0]
    return round(statistics.geometric_mean(positive), 4) if positive else None


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def speedup_figures(perf: dict[str, dict[tuple[int, int], _Perf]]) -> dict[str, Any]:
    """The speedup distribution over correct patches, per-task best-of-k, Opt@k, flagged list."""
    passed = sorted(
        p.speedup for v in perf.values() for p in v.values() if p.passed and p.speedup is not None
    )
    distribution: dict[str, Any] = {"count": len(passed)}
    if passed:
        distribution.update(
            geometric_mean=_geomean(passed),
            mean=round(statistics.fmean(passed), 4),
            median=round(statistics.median(passed), 4),
            min=round(passed[0], 4),
            max=round(passed[-1], 4),
            p10=round(_quantile(passed, 0.1), 4),
            p90=round(_quantile(passed, 0.9), 4),
        )
    distribution["histogram"] = [
        {
            "low": lo,
            "high": None if math.isinf(hi) else hi,
            "count": sum(1 for x in passed if lo <= x < hi),
        }
        for lo, hi in itertools.pairwise(SPEEDUP_EDGES)
    ]
    per_task = []
    for iid, v in perf.items():
        ok = [p.speedup for p in v.values() if p.passed and p.speedup is not None]
        per_task.append(
            {
                "instance_id": iid,
                "rollouts": len(v),
                "correct_with_speedup": len(ok),
                "best_speedup": round(max(ok), 4) if ok else None,
                "optimized": sum(p.optimized for p in v.values()),
            }
        )
    bests = [t["best_speedup"] for t in per_task if t["best_speedup"] is not None]
    counts = [len(v) for v in perf.values()]
    opt_at_k = None
    if counts:
        k_max = min(counts)
        opt_at_k = {
            str(k): round(
                statistics.fmean(
                    pass_at_k(len(v), sum(p.optimized for p in v.values()), k) for v in perf.values()
                ),
                6,
            )
            for k in range(1, k_max + 1)
        }
    flagged = [
        {"instance_id": iid, "sample_index": p.sample_index, "attempt": p.attempt, "speedup": p.speedup}
        for iid, v in perf.items()
        for p in v.values()
        if p.flagged
    ]
    flagged.sort(key=lambda r: -(r["speedup"] or 0.0))
    return {
        "correct": distribution,
        "best_of_k": {
            "tasks": len(per_task),
            "tasks_with_a_correct_speedup": len(bests),
            "geometric_mean": _geomean(bests),
            "per_task": sorted(per_task, key=lambda t: (-(t["best_speedup"] or 0.0), t["instance_id"])),
        },
        "opt_at_k": opt_at_k,
        "optimized_tasks": sum(1 for t in per_task if t["optimized"]),
        "flagged": flagged,
    }


def compute_stats(examples: Iterable[Example], sources: Iterable[int] | None = None) -> dict[str, Any]:
    """The figures ``analyze --json`` prints; JSON-able. Consumes the stream once.

    ``sources``: per example, which input it came from (the TUI opens several runs of the
    same tasks together): samples of different inputs are different rollouts."""
    builder = StatsBuilder()
    if sources is None:
        for ex in examples:
            builder.add(ex)
    else:
        for ex, source in zip(examples, sources, strict=True):
            builder.add(ex, source)
    return builder.build()


# -- rendering -------------------------------------------------------------------


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e6 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def histogram_lines(histogram: list[dict[str, Any]], width: int = 40) -> list[str]:
    """A text bar chart of the reward histogram (shared with the TUI's statistics pane)."""
    peak = max((b["count"] for b in histogram), default=0)
    lines = []
    for i, b in enumerate(histogram):
        bracket = "]" if i == len(histogram) - 1 else ")"
        bar = "█" * (round(b["count"] / peak * width) if peak else 0)
        if b["count"] and not bar:
            bar = "▏"
        lines.append(f"[{b['low']:.1f}, {b['high']:.1f}{bracket} {bar} {b['count']}")
    return lines


def render_stats(stats: dict[str, Any], console: Console) -> None:
    """Rich tables and a text bar chart of the histogram."""
    from rich.table import Table
    from rich.text import Text

    overview = Table(title="Overview", show_header=False, title_justify="left")
    overview.add_column("figure", style="bold")
    overview.add_column("value", justify="right")
    overview.add_row("examples", _fmt(stats["total"]))
    overview.add_row("successful", _fmt(stats["successful"]))
    overview.add_row("failed", _fmt(stats["failed"]))
    overview.add_row("success rate", f"{stats['success_rate'] * 100:.1f}%")
    overview.add_row("average reward", f"{stats['average_reward']:.4f}")
    overview.add_row("with errors", _fmt(stats["errors"]))
    inst = stats["instances"]
    overview.add_row("instances", _fmt(inst["count"]))
    overview.add_row("solved at least once", _fmt(inst["solved_at_least_once"]))
    if stats["tokens"]:
        tok = stats["tokens"]
        overview.add_row("prompt tokens", _fmt(tok["prompt"]))
        overview.add_row("completion tokens", _fmt(tok["completion"]))
        overview.add_row("total tokens", _fmt(tok["total"]))
    console.print(overview)

    dist = Table(title="Per example", title_justify="left")
    for col in ("", "mean", "median", "max", "total"):
        dist.add_column(col, justify="left" if not col else "right", style="bold" if not col else None)
    mc = stats["model_calls"]
    dist.add_row("model calls", _fmt(mc["mean"]), _fmt(mc["median"]), _fmt(mc["max"]), _fmt(mc["total"]))
    for name, key in (("messages", "messages"), ("assistant steps", "assistant_steps")):
        d = stats["trajectory_length"][key]
        dist.add_row(name, _fmt(d["mean"]), _fmt(d["median"]), _fmt(d["max"]), "")
    console.print(dist)

    console.print(Text("Reward distribution", style="bold italic"))
    for line in histogram_lines(stats["reward_histogram"]):
        console.print(Text(line))

    exits = Table(title="Exit status", title_justify="left")
    exits.add_column("exit status")
    exits.add_column("count", justify="right")
    exits.add_column("share", justify="right")
    for status, n in stats["exit_status"].items():
        share = n / stats["total"] * 100 if stats["total"] else 0.0
        exits.add_row(Text(status), _fmt(n), f"{share:.1f}%")
    console.print(exits)

    if stats["speedup"]:
        sp = stats["speedup"]
        t = Table(title="Speedup (examples with a benchmark)", title_justify="left")
        for col in ("count", "mean", "median", "geometric mean", "min", "max", "> 1×"):
            t.add_column(col, justify="right")
        t.add_row(
            *(_fmt(sp[k]) for k in ("count", "mean", "median", "geometric_mean", "min", "max", "above_1"))
        )
        console.print(t)
        if "correct" in sp:
            render_speedup_figures(sp, console)

    if inst["pass_at_k"]:
        spi = inst["samples_per_instance"]
        console.print(
            Text(
                f"pass@k (unbiased estimator; {spi['min']}–{spi['max']} samples per instance)",
                style="bold italic",
            )
        )
        t = Table()
        t.add_column("k", justify="right")
        t.add_column("pass@k", justify="right")
        for k, v in inst["pass_at_k"].items():
            t.add_row(k, f"{v:.4f}")
        console.print(t)
        per = sorted(
            inst["per_instance"], key=lambda r: (r["success_rate"], r["mean_reward"], r["instance_id"])
        )
        shown = per[:PER_INSTANCE_ROWS]
        t = Table(title="Per instance (hardest first)", title_justify="left")
        for col, just in (
            ("instance", "left"),
            ("samples", "right"),
            ("success rate", "right"),
            ("mean reward", "right"),
            ("reward variance", "right"),
        ):
            t.add_column(col, justify=just)
        for r in shown:
            t.add_row(
                Text(r["instance_id"]),
                _fmt(r["samples"]),
                f"{r['success_rate'] * 100:.0f}%",
                f"{r['mean_reward']:.3f}",
                f"{r['reward_variance']:.4f}",
            )
        if len(per) > len(shown):
            t.caption = f"{len(per) - len(shown)} more instances: use --json for all"
        console.print(t)


def speedup_histogram_lines(histogram: list[dict[str, Any]], width: int = 30) -> list[str]:
    peak = max((b["count"] for b in histogram), default=0)
    lines = []
    for b in histogram:
        label = f"≥ {b['low']:g}×" if b["high"] is None else f"{b['low']:g}–{b['high']:g}×"
        bar = "█" * (round(b["count"] / peak * width) if peak else 0)
        if b["count"] and not bar:
            bar = "▏"
        lines.append(f"{label:>10} {bar} {b['count']}")
    return lines


def render_speedup_figures(sp: dict[str, Any], console: Console) -> None:
    """Speedups of correct patches, best-of-k per task, Opt@k and the flagged list."""
    from rich.table import Table
    from rich.text import Text

    dist = sp["correct"]
    t = Table(title="Speedup of correct patches (tests passed, benchmark ran)", title_justify="left")
    cols = ("count", "geometric_mean", "median", "mean", "p10", "p90", "min", "max")
    for col in cols:
        t.add_column(col.replace("_", " "), justify="right")
    t.add_row(*(_fmt(dist.get(k)) for k in cols))
    console.print(t)
    if dist["count"]:
        for line in speedup_histogram_lines(dist["histogram"]):
            console.print(Text(line))
    best = sp["best_of_k"]
    console.print(
        Text.assemble(
            ("Best of k per task: ", "bold italic"),
            f"geometric mean {_fmt(best['geometric_mean'])}× over {best['tasks_with_a_correct_speedup']} of "
            f"{best['tasks']} task(s) with a correct, benchmarked rollout",
        )
    )
    if sp["opt_at_k"]:
        console.print(
            Text.assemble(
                ("Opt@k", "bold italic"),
                f" (unbiased estimator): a rollout with a significant speedup ≥ its task's min_speedup;"
                f" {sp['optimized_tasks']} of {sp['best_of_k']['tasks']} task(s) optimized at least once",
            )
        )
        t = Table()
        t.add_column("k", justify="right")
        t.add_column("Opt@k", justify="right")
        for k, v in sp["opt_at_k"].items():
            t.add_row(k, f"{v:.4f}")
        console.print(t)
    flagged = sp["flagged"]
    if flagged:
        t = Table(title=f"Flagged speedups (>10×): {len(flagged)} to review", title_justify="left")
        for col, just in (
            ("instance", "left"),
            ("sample", "right"),
            ("attempt", "right"),
            ("speedup", "right"),
        ):
            t.add_column(col, justify=just)
        for r in flagged[:FLAGGED_ROWS]:
            t.add_row(
                Text(r["instance_id"]), str(r["sample_index"]), str(r["attempt"]), f"{r['speedup']:.2f}×"
            )
        if len(flagged) > FLAGGED_ROWS:
            t.caption = f"{len(flagged) - FLAGGED_ROWS} more: use --json for all"
        console.print(t)
