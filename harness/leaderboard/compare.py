"""The comparisons a leaderboard is made of: each optimizer's summary on a benchmark, and the paired
comparison of every pair of optimizers, with a verdict against the benchmark's practical margin.

Ranks, "best or tied", the marks in the tables and every paired column come from these pairwise
comparisons, so they cannot disagree: an optimizer's rank is 1 + the number of optimizers whose
comparison with it is *better* (``ranks``). The interval of a comparison is the two-level interval
of ``harness.stats.verdicts.two_level_interval`` (replicates, then seeds within; with one replicate a t
interval over the paired seeds), the interval its minimum detectable effect is calibrated to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from harness.stats import verdicts
from harness.vocab import Metric

Values = Mapping[tuple[int, int], float]  # (replicate, seed) -> value; NaN: diverged or failed
FLIP = {"better": "worse", "worse": "better", "equivalent": "equivalent", "inconclusive": "inconclusive", "": ""}


@dataclass(frozen=True)
class Summary:
    """One optimizer on one benchmark: counts, mean of the replicate means, std over all values,
    the interval of the mean (clipped to the metric's range) and the spread of replicate means."""

    n_seeds: int
    n_failed: int
    n_replicates: int
    mean: float
    std: float
    lo: float
    hi: float
    spread: float


def _by_replicate(values: Values) -> dict[int, list[float]]:
    groups: dict[int, list[float]] = {}
    for (rep, _), v in sorted(values.items()):
        if math.isfinite(v):
            groups.setdefault(rep, []).append(v)
    return groups


def _grid(groups: Sequence[Sequence[float]]) -> np.ndarray:
    width = max((len(g) for g in groups), default=0)
    out = np.full((len(groups), width), np.nan)
    for i, g in enumerate(groups):
        out[i, : len(g)] = g
    return out


def summarise(values: Values, metric: Metric) -> Summary:
    """``Summary`` of eval values keyed by (replicate, seed)."""
    finite = [v for v in values.values() if math.isfinite(v)]
    groups = _by_replicate(values)
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
    if not groups:
        return Summary(0, len(values), 0, math.nan, std, math.nan, math.nan, math.nan)
    mean, lo, hi = (float(x) for x in verdicts.two_level_interval(_grid(list(groups.values()))))
    lo, hi = verdicts.clip_interval(lo, hi, verdicts.metric_bounds(metric))
    means = [float(np.mean(g)) for g in groups.values()]
    spread = max(means) - min(means) if len(means) > 1 else math.nan
    return Summary(len(finite), len(values) - len(finite), len(groups), mean, std, lo, hi, spread)


@dataclass(frozen=True)
class Comparison:
    """``a - b`` over the (replicate, seed) pairs both have (finite on both sides): the mean
    difference, its interval, the verdict against ``margin`` and what it would take to settle it."""

    n: int
    diff: float
    lo: float
    hi: float
    verdict: str  # better | worse | equivalent | inconclusive; "" when nothing is paired
    excludes_zero: bool
    mde: float
    replicates_needed: int | None
    need_note: str
    seeds_needed: int | None = None  # eval seeds per replicate, at the current replicates, for MDE < margin

    @classmethod
    def empty(cls) -> Comparison:
        return cls(0, math.nan, math.nan, math.nan, "", False, math.nan, None, "nothing to compare")

    def reversed(self) -> Comparison:
        """``b - a``: the same evidence seen from the other side."""
        return replace(self, diff=-self.diff, lo=-self.hi, hi=-self.lo, verdict=FLIP[self.verdict])

    def fields(self, prefix: str) -> dict:
        """The CSV cells of this comparison under ``prefix`` (``vs_adamw``, ``soft``, ``vs_best``)."""
        return {
            f"{prefix}_n": self.n,
            f"{prefix}_diff": self.diff,
            f"{prefix}_lo": self.lo,
            f"{prefix}_hi": self.hi,
            f"{prefix}_verdict": self.verdict,
            f"{prefix}_excludes_zero": self.excludes_zero if self.n else None,
            f"{prefix}_mde": self.mde,
            f"{prefix}_replicates_needed": self.replicates_needed,
            f"{prefix}_seeds_needed": self.seeds_needed,
        }


def compare(a: Values, b: Values, margin: float, metric: Metric) -> Comparison:
    """The paired comparison ``a - b`` (replicate r with r, seeds shared within)."""
    groups = verdicts.paired_groups(a, b)
    n = sum(len(g) for g in groups)
    if n == 0:
        return Comparison.empty()
    diff, lo, hi = (float(x) for x in verdicts.two_level_interval(_grid([list(g) for g in groups])))
    got = verdicts.assess(groups, lo, hi, margin, metric.direction)
    return Comparison(
        n, diff, lo, hi, got.verdict, got.excludes_zero, got.mde, got.need.replicates, got.need.reason, got.need.seeds
    )


def pairwise(values: Mapping[str, Values], margin: float, metric: Metric) -> dict[tuple[str, str], Comparison]:
    """Every ordered pair ``(a, b)`` of optimizers: the comparison ``a - b`` (computed once per pair)."""
    names = list(values)
    out: dict[tuple[str, str], Comparison] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            c = compare(values[a], values[b], margin, metric)
            out[(a, b)], out[(b, a)] = c, c.reversed()
    return out


def ranks(names: Sequence[str], pairs: Mapping[tuple[str, str], Comparison]) -> dict[str, int]:
    """Rank = 1 + the number of optimizers decisively better than this one (verdict "better").
    Rank 1 = best or tied with the best: nothing beats it by more than the margin with confidence."""
    return {a: 1 + sum(pairs[(b, a)].verdict == "better" for b in names if b != a) for a in names}


def rank_stability(values: Mapping[str, Values], margin: float, metric: Metric) -> dict[str, bool]:
    """Per optimizer: is its rank the same in every replicate? Within replicate r, b beats a when
    b's replicate mean is better than a's by more than the margin (so twins that differ by less
    share every rank and get the same flag). Empty with fewer than two replicates."""
    reps = sorted({r for v in values.values() for r, _ in v})
    if len(reps) < 2:
        return {}
    level = np.nan_to_num(margin, nan=0.0)
    seen: dict[str, set[int]] = {name: set() for name in values}
    for rep in reps:
        means = {}
        for name, v in values.items():
            vals = [x for (r, _), x in v.items() if r == rep and math.isfinite(x)]
            if vals:
                means[name] = metric.sign * float(np.mean(vals))
        for name, m in means.items():
            seen[name].add(1 + sum(other - m > level for o, other in means.items() if o != name))
    return {name: len(r) <= 1 for name, r in seen.items()}
