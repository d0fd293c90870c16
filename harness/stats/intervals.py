"""Statistics behind the leaderboard and the report: seeded bootstrap intervals, seed-paired
differences, ranks that show ties, Dolan-More performance profiles and the expected best result
after k tuning trials.

Everything here is a pure function of its inputs (numbers in, numbers out; the bootstrap is seeded),
so a leaderboard is reproducible bit for bit from the same run records. Metric direction is always
passed explicitly ("max" or "min"); internally values are turned into a "larger is better" score by
multiplying with +1/-1, the same convention as ``harness.task.Metric.sign``.

Conventions, chosen for honesty at the small seed counts benchmarks use (3-10):

* ``std`` is the sample standard deviation (ddof=1); NaN for fewer than 2 values.
* Confidence intervals are bootstrap intervals of the mean, seeded (default seed 0, 10,000
  resamples). The default method is the *expanded percentile* interval (Hesterberg 2015, "What
  teachers should know about the bootstrap", The American Statistician 69(4), section 5.1): the
  plain percentile interval of the resampled means, but read at the widened level
  ``alpha'/2 = Phi(-sqrt(n/(n-1)) * t_{alpha/2, n-1})``. The plain percentile interval is too
  narrow for small n (its spread uses the divide-by-n variance and normal instead of t
  quantiles; about 90% real coverage at n=10 for a nominal 95%); the expansion repairs most of that
  while keeping the percentile interval's insensitivity to skew. ``method="percentile"`` gives the
  plain interval. With one value no interval exists and (NaN, NaN) is returned: a single seed can
  never show a difference. Even the expanded interval cannot be wider than the range of the values,
  so with 3 seeds its coverage is at most 75%: read 3-seed intervals as optimistic.
* Paired differences are ``a - b`` over the seeds both sides have (finite values only), in metric
  units, so a positive difference is better when direction is "max" and worse when it is "min".
* With tuning replicates (R independent tuning studies, each evaluated on the same seeds), the
  uncertainty has two levels: which configuration a study found (between replicates) and the
  seed (within). ``two_level_ci`` resamples both: replicates, then seeds within each drawn
  replicate, with the replicate means shrunk so that the resampled between-replicate spread matches
  the estimated between-replicate variance (the within-replicate noise is already in the replicate
  means; resampling both levels naively counts it twice: Davison and Hinkley 1997, "Bootstrap
  Methods and their Application", section 3.8). The interval is ``mean +- t_{R-1} * sd`` of the
  resampled means. Its coverage at a nominal 0.95, simulated on normal two-level data (1,000
  simulated sweeps per cell, 3 or 5 seeds per replicate, between : within standard deviations of
  10:1, 1:1, 0.3:1 and 0:1; ``tests/test_stats.py`` re-checks it at a smaller scale), is 0.94-1.00
  for R = 3 and 0.95-1.00 for R = 5: near nominal when tuning luck dominates, conservative when
  seed noise does (the t quantile keeps R - 1 degrees of freedom). The plain two-level percentile
  interval covers only 0.75-0.94 at R = 3 in the same simulation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from harness.vocab import Metric, as_direction

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
SEED = 0
CI_METHODS = ("expanded", "percentile")


def _sign(direction: str) -> float:
    """+1 / -1: the one ``Metric`` of ``harness.vocab`` decides (a bad direction is a ValueError)."""
    return Metric("", as_direction(direction)).sign


def _finite(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[np.isfinite(arr)]


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of the finite values; NaN where undefined."""
    x = _finite(values)
    if x.size == 0:
        return math.nan, math.nan
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    return mean, std


def _expanded_alpha(alpha: float, n: int) -> float:
    """Hesterberg's widened two-sided level for the expanded percentile interval."""
    from scipy.special import ndtr, stdtrit  # normal CDF, Student-t quantile (lighter than scipy.stats)

    t = stdtrit(n - 1, 1.0 - alpha / 2.0)
    return float(2.0 * ndtr(-math.sqrt(n / (n - 1)) * t))


def bootstrap_ci(
    values: Iterable[float],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    method: str = "expanded",
) -> tuple[float, float]:
    """Seeded bootstrap confidence interval of the mean of the finite ``values``.

    ``method`` is "expanded" (default, Hesterberg's expanded percentile interval) or "percentile"
    (Efron's percentile interval); see the module docstring. Returns (NaN, NaN) for fewer than two
    values. The resampling draws only from ``numpy.random.default_rng(seed)``, so the same input
    gives the same interval.
    """
    if method not in CI_METHODS:
        raise ValueError(f"unknown bootstrap method {method!r}; known: {', '.join(CI_METHODS)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = _finite(values)
    n = x.size
    if n < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):  # every resample has the same mean; skip the (exact) resampling
        return float(x[0]), float(x[0])
    alpha = 1.0 - confidence
    if method == "expanded":
        alpha = _expanded_alpha(alpha, n)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over the seeds both sides have: count, mean, bootstrap CI and the seeds used."""

    n: int
    mean: float
    lo: float
    hi: float
    seeds: tuple[int, ...]


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], **ci_options) -> PairedDifference:
    """Pair ``a`` and ``b`` by seed (only seeds where both values are finite) and summarise
    ``a[seed] - b[seed]``: mean and the bootstrap CI of the mean (options as ``bootstrap_ci``)."""
    seeds = sorted(s for s in set(a) & set(b) if math.isfinite(float(a[s])) and math.isfinite(float(b[s])))
    diffs = np.array([float(a[s]) - float(b[s]) for s in seeds], dtype=float)
    if diffs.size == 0:
        return PairedDifference(0, math.nan, math.nan, math.nan, ())
    lo, hi = bootstrap_ci(diffs, **ci_options)
    return PairedDifference(len(seeds), float(diffs.mean()), lo, hi, tuple(int(s) for s in seeds))


@dataclass(frozen=True)
class TwoLevel:
    """A two-level summary: the mean of the replicate means, its interval, the replicate means."""

    mean: float
    lo: float
    hi: float
    replicate_means: tuple[float, ...]

    @property
    def spread(self) -> float:
        """max - min of the replicate means (NaN with fewer than two replicates)."""
        finite = [m for m in self.replicate_means if math.isfinite(m)]
        return max(finite) - min(finite) if len(finite) > 1 else math.nan


def two_level_ci(
    groups: Sequence[Iterable[float]],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> TwoLevel:
    """Mean and confidence interval of values grouped by tuning replicate (one group of eval-seed
    values per replicate; non-finite values dropped, empty groups ignored).

    Point estimate: the mean of the replicate means (every replicate weighs the same). Interval:
    a seeded two-level bootstrap (see the module docstring) read as ``mean +- t_{R-1} * sd``. With
    one replicate it is ``bootstrap_ci`` of that replicate's seeds (tuning luck is then unmeasured:
    the leaderboard says so). Returns NaN bounds when nothing can vary (one replicate, one seed).
    """
    from scipy.special import stdtrit

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    cleaned = [x for x in (_finite(g) for g in groups) if x.size]
    if not cleaned:
        return TwoLevel(math.nan, math.nan, math.nan, ())
    means = np.array([x.mean() for x in cleaned])
    grand = float(means.mean())
    if len(cleaned) == 1:
        lo, hi = bootstrap_ci(cleaned[0], confidence=confidence, n_resamples=n_resamples, seed=seed)
        return TwoLevel(grand, lo, hi, (grand,))
    r = len(cleaned)
    # Variance components (unbalanced-safe moments): within from pooled residuals, between as the
    # spread of replicate means beyond what the within noise explains (floored at 0).
    sizes = np.array([x.size for x in cleaned], dtype=float)
    resid = [x - x.mean() for x in cleaned]
    dof_within = float((sizes - 1).sum())
    within = float(sum((e * e).sum() for e in resid) / dof_within) if dof_within > 0 else 0.0
    spread = float(means.var(ddof=1))
    between = max(0.0, spread - within * float(np.mean(1.0 / sizes)))
    shrink = math.sqrt(between / spread) if spread > 0 else 0.0
    # Residuals rescaled so a with-replacement resample has the unbiased within variance; replicate
    # deviations shrunk to the between variance and rescaled by sqrt(R/(R-1)) for the same reason.
    resid = [e * math.sqrt(e.size / (e.size - 1)) if e.size > 1 else e for e in resid]
    top = grand + shrink * math.sqrt(r / (r - 1)) * (means - grand)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, r, size=(n_resamples, r))
    totals = np.zeros(n_resamples)
    for j in range(r):  # one column of drawn replicates at a time: memory O(n_resamples * seeds)
        col = picks[:, j]
        noise = np.zeros(n_resamples)
        for k in range(r):
            rows = np.flatnonzero(col == k)
            e = resid[k]
            if rows.size and e.size:
                noise[rows] = e[rng.integers(0, e.size, size=(rows.size, e.size))].mean(axis=1)
        totals += top[col] + noise
    resampled = totals / r
    half = float(stdtrit(r - 1, 0.5 + confidence / 2.0)) * float(resampled.std(ddof=1))
    return TwoLevel(grand, grand - half, grand + half, tuple(float(m) for m in means))


def two_level_paired(
    a: Mapping[tuple[int, int], float], b: Mapping[tuple[int, int], float], **ci_options
) -> tuple[int, TwoLevel]:
    """``a - b`` for values keyed by ``(replicate, seed)``: replicate ``r`` of ``a`` is paired with
    replicate ``r`` of ``b`` (replicates are exchangeable, so pairing by index is as good as any
    fixed pairing and keeps the two studies' tuning luck independent), and within a pair the runs
    that share an eval seed. Returns the number of paired runs and the two-level summary of the
    differences (grouped by replicate pair)."""
    keys = sorted(k for k in set(a) & set(b) if math.isfinite(float(a[k])) and math.isfinite(float(b[k])))
    groups: dict[int, list[float]] = {}
    for rep, s in keys:
        groups.setdefault(rep, []).append(float(a[(rep, s)]) - float(b[(rep, s)]))
    return len(keys), two_level_ci([groups[r] for r in sorted(groups)], **ci_options)


def outcome(lo: float, hi: float, direction: str, n: int) -> str:
    """Win/tie/loss of a difference ``a - b`` with CI [lo, hi]: "win" when the CI excludes 0 on
    the better side for ``direction``, "loss" when it excludes 0 on the worse side, "tie" when it
    contains 0 or is undefined (one shared seed), "" when there is nothing to compare (n == 0)."""
    sign = _sign(direction)
    if n == 0:
        return ""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "tie"
    lo_s, hi_s = sorted((sign * lo, sign * hi))
    if lo_s > 0:
        return "win"
    if hi_s < 0:
        return "loss"
    return "tie"


def mean_ranks(means: Sequence[float], direction: str) -> np.ndarray:
    """Rank by mean, 1 = best, exact ties share the average rank; a NaN mean (no finite result)
    ranks after every finite one (several NaNs share the average of the last places). This is the
    per-dataset rank that GraphLand-style average ranks average."""
    score = _sign(direction) * np.asarray(means, dtype=float)
    score = np.where(np.isnan(score), -np.inf, score)
    order = np.argsort(-score, kind="stable")
    ranks = np.empty(score.size, dtype=float)
    position = 0
    while position < score.size:  # runs of equal scores share the mean of their positions
        end = position
        while end + 1 < score.size and score[order[end + 1]] == score[order[position]]:
            end += 1
        ranks[order[position : end + 1]] = (position + end) / 2.0 + 1.0
        position = end + 1
    return ranks


def tie_ranks(means: Sequence[float], los: Sequence[float], his: Sequence[float], direction: str) -> np.ndarray:
    """Competition ranks (1, 1, 3, ...) where statistically indistinguishable entries share a rank.

    Entries are taken best mean first. The first opens a group; each next entry joins the open
    group when its CI overlaps the CI of the group's leader (its best-mean entry), otherwise it
    opens a new group whose rank is its 1-based position in the order. An entry without a CI
    (fewer than two seeds) overlaps everything: it can never be shown to differ. Groups are
    contiguous in mean order, so ranks never decrease as the mean gets worse. Entries with a NaN
    mean all share the last rank. Overlap of two 95% CIs is a conservative test (a difference can
    be significant while the CIs still overlap); the seed-paired difference is the sharper one.
    """
    sign = _sign(direction)
    mean = np.asarray(means, dtype=float)
    lo_arr = np.asarray(los, dtype=float)
    hi_arr = np.asarray(his, dtype=float)
    n = mean.size
    ranks = np.full(n, np.nan)
    valid = [i for i in range(n) if math.isfinite(mean[i])]
    # Best first; equal means keep input order (stable), so the result is deterministic.
    order = sorted(valid, key=lambda i: -sign * mean[i])

    def interval(i: int) -> tuple[float, float]:
        lo, hi = lo_arr[i], hi_arr[i]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return -math.inf, math.inf
        return min(lo, hi), max(lo, hi)

    leader = None
    for position, i in enumerate(order, start=1):
        if leader is not None:
            (a_lo, a_hi), (b_lo, b_hi) = interval(leader), interval(i)
            same = mean[i] == mean[leader] or (a_lo <= b_hi and b_lo <= a_hi)
            if same:
                ranks[i] = ranks[leader]
                continue
        leader = i
        ranks[i] = position
    ranks[[i for i in range(n) if i not in set(valid)]] = len(valid) + 1
    return ranks


def performance_ratios(
    values: Mapping[str, Mapping[str, float]], directions: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """Dolan-More performance ratios r[problem][solver] >= 1 (1 = the best solver on that problem).

    ``values[problem][solver]`` is e.g. the mean test metric of an optimizer on a dataset. For
    strictly positive values the ratio is the classic cost ratio (value/best for "min", best/value
    for "max"); when a problem has a value <= 0 (R2, log-likelihoods) ratios are meaningless, so
    the relative gap ``1 + |value - best| / |best|`` is used there (``1 + |value - best|`` if best is
    0). A missing or non-finite value is "not solved": ratio inf. Reference: Dolan and More (2002),
    "Benchmarking optimization software with performance profiles", Math. Programming 91.
    """
    solvers = sorted({s for row in values.values() for s in row})
    ratios: dict[str, dict[str, float]] = {}
    for problem, row in values.items():
        sign = _sign(directions[problem])
        finite = {s: float(v) for s, v in row.items() if v is not None and math.isfinite(float(v))}
        out = {s: math.inf for s in solvers}
        if finite:
            best = max(finite.values(), key=lambda v: sign * v)
            positive = all(v > 0 for v in finite.values())
            for s, v in finite.items():
                if positive:
                    out[s] = v / best if sign < 0 else best / v
                else:
                    out[s] = 1.0 + abs(v - best) / (abs(best) if best != 0 else 1.0)
        ratios[problem] = out
    return ratios


def performance_profile(ratios: Mapping[str, Mapping[str, float]], taus: Sequence[float]) -> dict[str, np.ndarray]:
    """rho_s(tau): the fraction of problems on which solver s has ratio <= tau, for each tau."""
    tau = np.asarray(taus, dtype=float)
    problems = list(ratios)
    solvers = sorted({s for row in ratios.values() for s in row})
    out = {}
    for s in solvers:
        r = np.array([ratios[p].get(s, math.inf) for p in problems], dtype=float)
        out[s] = (r[None, :] <= tau[:, None]).mean(axis=1) if problems else np.zeros(len(tau))
    return out


def expected_best_after_k(values: Sequence[float], direction: str) -> tuple[np.ndarray, np.ndarray]:
    """Expected best value (and its std) among the first k of the n trials, k = 1..n, over all
    n! orderings of the trials equally likely (i.e. a uniformly random k-subset, no replacement).

    Closed form by order statistics: with the scores sorted ascending s_(1) <= ... <= s_(n),
    P(best of a k-subset is s_(i)) = C(i-1, k-1) / C(n, k), so
    E_k = sum_i s_(i) C(i-1, k-1) / C(n, k) (the without-replacement version of the expected
    validation performance of Dodge et al. 2019, "Show your work", EMNLP). Values must be finite:
    pass a diverged trial as the penalty value the tuner saw.
    """
    from scipy.special import gammaln

    sign = _sign(direction)
    x = np.asarray(values, dtype=float)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("expected_best_after_k needs at least one value, all finite")
    s = np.sort(sign * x)
    n = s.size
    i = np.arange(1, n + 1)[None, :]  # order-statistic index
    k = np.arange(1, n + 1)[:, None]  # subset size
    valid = i >= k
    with np.errstate(invalid="ignore"):
        log_w = (
            gammaln(i)
            - gammaln(k)
            - gammaln(np.maximum(i - k + 1, 1))
            - (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))
        )
    w = np.where(valid, np.exp(np.where(valid, log_w, 0.0)), 0.0)
    w /= w.sum(axis=1, keepdims=True)  # exact in theory; removes rounding drift
    mean = w @ s
    var = np.maximum(w @ (s * s) - mean * mean, 0.0)
    return sign * mean, np.sqrt(var)
