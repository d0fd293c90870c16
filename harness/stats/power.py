"""Power of the leaderboard's paired comparison: the minimum detectable effect (``mde``), the
probability of an *equivalent* verdict (``equivalence_probability``) and what it would take to bring
the MDE under the margin (``replicates_needed``). Pure numpy/scipy functions of variance components
and a design; the verdict rule, the components and the interval these are calibrated to live in
``harness.stats.verdicts`` (whose ``assess`` puts the two together).

Minimum detectable effect (``mde``): the true difference that the interval excludes 0 for (on its
side) with probability ``power`` (80%), for the measured variance components (``variance_components``:
between-replicate variance ``sb2``, tuning luck, and within (seed) variance ``sw2``) and the design.
The variance of the grand mean of R replicates of n seeds is ``sb2/R + sw2/(R n)``.

The MDE is calibrated to the leaderboard's two-level interval, whose bootstrap variance when balanced
is ``max(S, W/n) / R`` with S the variance of the replicate means and W the pooled within variance
(``harness.stats.verdicts.two_level_interval``): under normal two-level data ``mean``, S and W are
independent, ``S ~ tau2 chi2_{R-1}/(R-1)`` and ``W ~ sw2 chi2_{R(n-1)}/(R(n-1))`` with
``tau2 = sb2 + sw2/n``, so the power at effect ``delta = lam * tau / sqrt(R)`` is
``E[Phi(lam - t_{R-1} sqrt(max(u, rho v)))]`` (u, v the scaled chi-squares, ``rho = (sw2/n)/tau2``),
integrated on an equiprobable grid and solved for lam. Without seed noise (rho = 0) this is the power
of a one-sample t-test, the noncentral t (Cohen 1988, "Statistical Power Analysis for the Behavioral
Sciences", ch. 2); the tests check that case against ``scipy.special.nctdtrinc``. With R = 1 tuning
luck is unidentifiable (as in ``harness.stats.intervals``): the MDE then uses the seeds alone (t with
n - 1 degrees of freedom, the interval the expanded bootstrap approximates) and
``Assessment.tuning_luck`` is False.

The reported MDE plugs in one sweep's estimates, which at few replicates are rough (R - 1 degrees
of freedom for tuning luck): at the true components the power is 80% by construction, but averaged
over sweeps the power at each sweep's own reported MDE is lower when tuning luck dominates (about
0.63-0.68 at R = 3 or 5, 0.73 at R = 10, 0.77 at R = 20; a test checks R = 3 and 5 without seed noise).
``replicates_needed`` searches the smallest R (cap 100) whose MDE is under the margin, at the
current seed count and with unlimited seeds (seeds cannot shrink ``sb2/R``), and the seeds per
replicate that would do it at the current R. Unbalanced designs use the harmonic mean seed count.
Simulated rates: ``tests/test_verdicts.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CONFIDENCE = 0.95  # the leaderboard's interval (harness.stats.verdicts uses this one)
POWER = 0.80
REPLICATE_CAP = 100
SEED_CAP = 1000
GRID, BINS = 128, 512  # power integral: points per chi-square, and after binning (MDE error < 0.1%)


def _scaled_chi2(df: int, grid: int) -> np.ndarray:
    """Equiprobable midpoints of chi2_df / df."""
    from scipy.special import chdtri  # inverse survival function of the chi-square

    p = (np.arange(grid) + 0.5) / grid
    return chdtri(float(df), 1.0 - p) / df


def _ratio_grid(df_b: int, df_w: int, rho: float) -> np.ndarray:
    """sqrt(max(u, rho v)), the estimated over the true standard error, as BINS equiprobable points:
    the 1-D grid of u, or the GRID x GRID grid of (u, v) sorted and averaged in BINS blocks."""
    if rho > 0 and df_w > 0:
        u, v = _scaled_chi2(df_b, GRID), _scaled_chi2(df_w, GRID)
        q = np.sort(np.sqrt(np.maximum(u[:, None], rho * v[None, :])).ravel())
        return q.reshape(BINS, -1).mean(axis=1)
    return np.sqrt(_scaled_chi2(df_b, BINS))


@lru_cache(maxsize=65536)
def _factor(df_b: int, df_w: int, rho: float, confidence: float, power: float) -> float:
    """lam with E[Phi(lam - t_{df_b} * sqrt(max(u, rho v)))] = power (see the module docstring)."""
    from scipy.optimize import brentq
    from scipy.special import ndtr, stdtrit

    t = float(stdtrit(df_b, 0.5 + confidence / 2.0))
    q = t * _ratio_grid(df_b, df_w, rho)
    return float(
        brentq(lambda lam: float(ndtr(lam - q).mean()) - power, 0.0, float(q.max()) + 10.0, xtol=1e-9, rtol=1e-9)
    )


def _design(between: float, within: float, replicates: int, seeds: float, df_within: int | None):
    """(df_b, df_w, rho, se) of the design: se the true standard error of the grand mean."""
    if replicates < 1 or not seeds >= 1:
        raise ValueError(f"need replicates >= 1 and seeds >= 1, got {replicates!r}, {seeds!r}")
    df_w = int(round(replicates * (seeds - 1))) if df_within is None else int(df_within)
    within = 0.0 if df_w == 0 and not math.isfinite(within) else float(within)
    if replicates == 1:  # tuning luck unidentifiable: seeds only, t with n - 1 dof
        return df_w, 0, 0.0, math.sqrt(within / seeds) if df_w > 0 else math.nan
    tau2 = float(between) + within / seeds
    rho = within / seeds / tau2 if tau2 > 0 else 0.0
    return replicates - 1, df_w, rho, math.sqrt(tau2 / replicates)


def mde(
    between: float,
    within: float,
    replicates: int,
    seeds: float,
    *,
    df_within: int | None = None,
    confidence: float = CONFIDENCE,
    power: float = POWER,
) -> float:
    """Minimum detectable effect: the true difference the leaderboard's interval excludes 0 for with
    probability ``power``, for variance components ``between`` (tuning luck; ignored with one
    replicate) and ``within`` (seeds), R ``replicates`` of ``seeds`` seeds each (``df_within``
    defaults to R (n - 1)). NaN when undefined (non-finite components, one replicate with one seed)."""
    df_b, df_w, rho, se = _design(between, within, replicates, seeds, df_within)
    if not math.isfinite(se) or df_b < 1 or (replicates > 1 and not math.isfinite(between)):
        return math.nan
    if se == 0:
        return 0.0
    return _factor(df_b, df_w, round(rho, 6), confidence, power) * se


def equivalence_probability(
    margin: float,
    between: float,
    within: float,
    replicates: int,
    seeds: float,
    *,
    effect: float = 0.0,
    df_within: int | None = None,
    confidence: float = CONFIDENCE,
) -> float:
    """Probability that the interval lies inside (-margin, margin) (verdict "equivalent") at true
    difference ``effect``, by the same integral as ``mde``."""
    from scipy.special import ndtr, stdtrit

    df_b, df_w, rho, se = _design(between, within, replicates, seeds, df_within)
    if not (math.isfinite(se) and df_b >= 1 and math.isfinite(margin)) or margin <= 0:
        return math.nan
    if se == 0:
        return float(abs(effect) < margin)
    q = float(stdtrit(df_b, 0.5 + confidence / 2.0)) * _ratio_grid(df_b, df_w, round(rho, 6))
    a, d = margin / se, effect / se
    return float(np.maximum(0.0, ndtr(a - d - q) - ndtr(-a - d + q)).mean())


@dataclass(frozen=True)
class Need:
    """What would bring the MDE under the margin: the smallest number of replicates at the current
    seeds, the same with unlimited seeds (a floor: seeds cannot shrink between/R), and the seeds per
    replicate that would do it at the current number of replicates. None where impossible within
    the caps or undefined; ``reason`` says why ("" when every field is set)."""

    replicates: int | None
    replicates_unlimited_seeds: int | None
    seeds: int | None
    reason: str


def _smallest(ok, low: int, high: int) -> int | None:
    """Smallest integer in [low, high] with ok(k), for ok monotone (False ... True); None if none."""
    if not ok(high):
        return None
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid + 1, high)
    return low


def replicates_needed(
    margin: float,
    between: float,
    within: float,
    seeds: float,
    *,
    replicates: int | None = None,
    cap: int = REPLICATE_CAP,
    confidence: float = CONFIDENCE,
    power: float = POWER,
) -> Need:
    """Smallest R in [2, cap] with ``mde(between, within, R, seeds) < margin`` (see ``Need``);
    ``replicates`` is the current R, for the seeds that would do it there."""
    if not (math.isfinite(margin) and margin > 0):
        return Need(
            None,
            None,
            None,
            "no margin (a relative margin of a reference mean that is 0 or undefined): nothing to bring the MDE under",
        )
    if replicates == 1 or not math.isfinite(between):
        return Need(
            None,
            None,
            None,
            "one replicate: tuning luck (between-replicate variance) is "
            "unidentifiable; run R >= 2 replicates (3 or more) to measure it",
        )
    if not math.isfinite(within):
        within = 0.0

    def under(b: float, w: float, r: int, n: float) -> bool:
        return mde(b, w, r, n, confidence=confidence, power=power) < margin

    reasons = []
    n_now = max(1.0, float(seeds))
    need_r = _smallest(lambda r: under(between, within, r, n_now), 2, cap)
    if need_r is None:
        reasons.append(
            f"even {cap} replicates of {n_now:g} seeds leave the MDE at "
            f"{mde(between, within, cap, n_now, confidence=confidence, power=power):.3g} "
            f">= margin {margin:.3g}"
        )
    need_inf = _smallest(lambda r: under(between, 0.0, r, n_now), 2, cap)
    if need_inf is None:
        reasons.append(
            f"tuning luck alone (between-replicate variance {between:.3g}) keeps the MDE >= "
            f"margin up to {cap} replicates, however many seeds"
        )
    need_n = None
    if replicates is not None:
        if under(between, 0.0, replicates, n_now):
            need_n = _smallest(lambda n: under(between, within, replicates, n), 1, SEED_CAP)
        if need_n is None:
            reasons.append(f"no seed count up to {SEED_CAP} brings the MDE under the margin at {replicates} replicates")
    return Need(need_r, need_inf, need_n, "; ".join(reasons))
