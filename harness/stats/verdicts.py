"""Verdicts for paired optimizer comparisons: better, worse, equivalent or inconclusive, with a
practical margin per metric, and what it would take to settle an inconclusive one.

A comparison is the paired difference ``d = A - B`` (metric units) with the interval the leaderboard
shows (``harness.stats.intervals.two_level_paired``: two-level with R > 1 tuning replicates, the seed bootstrap
with R = 1). Pure numpy/scipy functions; nothing here reads files.

Verdict (``verdict``), with ``m`` the practical margin and the interval in "larger is better" units:

* **equivalent**: the interval lies strictly inside (-m, +m). This is Schuirmann's two one-sided
  tests (TOST; Schuirmann 1987, "A comparison of the two one-sided tests procedure and the power
  approach for assessing the equivalence of average bioavailability", J. Pharmacokinet. Biopharm.
  15(6)) read off one interval. An interval that excludes 0 but lies inside the margin is
  *equivalent* too (the effect is real but smaller than what matters); ``excludes_zero`` still says
  so, so nothing is hidden.
* **better** / **worse**: otherwise, the interval excludes 0 on the better / worse side.
* **inconclusive**: everything else (it holds 0 and reaches past a margin), and any undefined
  interval (NaN bounds: a single shared seed).

One interval for both decisions: the leaderboard's 95% interval. Excluding 0 is then the two-sided
5% test (at most 2.5% false "better" and 2.5% false "worse" under no effect), and "inside the
margin" is TOST at 2.5% per side instead of the textbook 5% (a 90% interval): a true effect of
exactly the margin is called equivalent at most 2.5% of the time, at the price of needing a somewhat
tighter interval to declare equivalence. Simulated rates: ``tests/test_verdicts.py``.

Minimum detectable effect (``mde``): the true difference that the interval excludes 0 for (on its
side) with probability ``power`` (80%), for the measured variance components and the design.
Components (``variance_components``): one-way random-effects ANOVA by the method of moments on the
per-replicate, per-seed differences (Searle, Casella and McCulloch 1992, "Variance Components",
ch. 3), between-replicate variance ``sb2`` (tuning luck) and within (seed) variance ``sw2``, in the
unweighted-means form ``two_level_ci`` uses (equal to the ANOVA estimator when balanced):
``sw2`` pooled residual variance, ``sb2 = max(0, var(replicate means) - sw2 * mean(1/n_r))``.
The variance of the grand mean of R replicates of n seeds is ``sb2/R + sw2/(R n)``.

The two-level interval is not ``mean +- t_{R-1} * se`` with a chi-square ``se``: its bootstrap
variance (exactly, in expectation over resamples; derived from the resampling scheme of
``two_level_ci``) is ``(sb2_hat + mean_r(s_r^2 / n_r)) / R``, which when balanced is
``max(S, W/n) / R`` with S the variance of the replicate means and W the pooled within variance:
the truncation of ``sb2_hat`` at 0 widens it when seeds dominate. ``two_level_interval`` computes
that interval analytically (vectorised over simulated sweeps); the MDE is calibrated to it: under
normal two-level data ``mean``, S and W are independent, ``S ~ tau2 chi2_{R-1}/(R-1)`` and
``W ~ sw2 chi2_{R(n-1)}/(R(n-1))`` with ``tau2 = sb2 + sw2/n``, so the power at effect
``delta = lam * tau / sqrt(R)`` is ``E[Phi(lam - t_{R-1} sqrt(max(u, rho v)))]`` (u, v the scaled
chi-squares, ``rho = (sw2/n)/tau2``), integrated on an equiprobable grid and solved for lam. Without
seed noise (rho = 0) this is the power of a one-sample t-test, the noncentral t (Cohen 1988,
"Statistical Power Analysis for the Behavioral Sciences", ch. 2); the tests check that case against
``scipy.special.nctdtrinc``. With R = 1 tuning luck is unidentifiable (as in ``harness.stats.intervals``): the
MDE then uses the seeds alone (t with n - 1 degrees of freedom, the interval the expanded bootstrap
approximates) and ``Assessment.tuning_luck`` is False.

The reported MDE plugs in one sweep's estimates, which at few replicates are rough (R - 1 degrees
of freedom for tuning luck): at the true components the power is 80% by construction, but averaged
over sweeps the power at each sweep's own reported MDE is lower when tuning luck dominates (about
0.63-0.68 at R = 3 or 5, 0.73 at R = 10, 0.77 at R = 20; a test checks R = 3 and 5 without seed noise).
``replicates_needed`` searches the smallest R (cap 100) whose MDE is under the margin, at the
current seed count and with unlimited seeds (seeds cannot shrink ``sb2/R``), and the seeds per
replicate that would do it at the current R. Unbalanced designs use the harmonic mean seed count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from harness.vocab import Metric, as_direction

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
MARGIN_KINDS = ("absolute", "relative")
CONFIDENCE = 0.95
POWER = 0.80
REPLICATE_CAP = 100
SEED_CAP = 1000
GRID, BINS = 128, 512  # power integral: points per chi-square, and after binning (MDE error < 0.1%)

# Default margins. Scores on [0, 1] (accuracy, AUC, AP, ...) and R2: 0.005 absolute, half a
# percentage point, the unit such scores are reported in (1% of the mean would be 0.5 points at
# accuracy 0.5 but 0.95 at 0.95, and R2 can sit near 0). Cross-entropy in nats: 0.01 absolute, which
# is 1% of perplexity (ppl = exp(loss)); 1% of a loss of 3 would be 3% perplexity. Everything else
# (perplexity, RMSE, unknown units): 1% of the reference optimizer's mean, the only scale-free choice.
UNIT_SCORES = ("accuracy", "char_acc", "word_acc", "ap", "roc_auc", "auc", "f1")
NAT_LOSSES = ("val_loss", "loss")
METRIC_BOUNDS = {
    **{name: (0.0, 1.0) for name in UNIT_SCORES},
    "r2": (-math.inf, 1.0),
    **{name: (0.0, math.inf) for name in (*NAT_LOSSES, "bpc", "rmse")},
    "perplexity": (1.0, math.inf),
}


@dataclass(frozen=True)
class Margin:
    """A practical margin: ``absolute`` (metric units) or ``relative`` (a fraction of the reference
    optimizer's mean; 0.01 = 1%)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in MARGIN_KINDS:
            raise ValueError(f"margin kind must be one of {', '.join(MARGIN_KINDS)}; got {self.kind!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise ValueError(f"margin value must be a number, got {self.value!r}")
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"margin value must be a finite number > 0, got {self.value!r}")

    def resolve(self, reference_mean: float) -> float:
        """The margin in metric units: ``value`` (absolute) or ``value * |reference_mean|``
        (relative; NaN when the reference mean is not finite, 0 when it is 0)."""
        if self.kind == "absolute":
            return float(self.value)
        ref = float(reference_mean)
        return self.value * abs(ref) if math.isfinite(ref) else math.nan

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.kind == "relative" else f"{self.value:g}"


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"{what} must be a number or a percentage like '1%', got {value!r}") from None
    if isinstance(value, (int, float)):
        return float(value)
    raise ValueError(f"{what} must be a number, got {value!r}")


def parse_margin(spec) -> Margin:
    """A margin from its sweep-file form: ``0.01`` (absolute), ``"1%"`` (relative),
    ``{absolute: 0.01}`` or ``{relative: 0.01}`` (also ``{relative: "1%"}``); a ``Margin`` passes
    through. Anything else is a ValueError naming the valid forms."""
    forms = "0.01 (absolute), '1%' (relative), {absolute: 0.01} or {relative: 0.01}"
    if isinstance(spec, Margin):
        return spec
    if isinstance(spec, Mapping):
        if len(spec) != 1 or next(iter(spec)) not in MARGIN_KINDS:
            raise ValueError(
                f"a margin mapping has exactly one key, absolute or relative; got {dict(spec)!r} (valid forms: {forms})"
            )
        kind, value = next(iter(spec.items()))
        if kind == "absolute" and isinstance(value, str) and value.strip().endswith("%"):
            raise ValueError(f"an absolute margin is in metric units, not a percentage: {value!r}")
        return Margin(kind, _number(value, f"margin {kind}"))
    if isinstance(spec, str) and spec.strip().endswith("%"):
        return Margin("relative", _number(spec, "margin"))
    try:
        return Margin("absolute", _number(spec, "margin"))
    except ValueError as exc:
        raise ValueError(f"{exc} (valid forms: {forms})") from None


def default_margin(metric: Metric | str) -> Margin:
    """The documented default margin for a metric (by name; see the module constants)."""
    name = metric.name if isinstance(metric, Metric) else str(metric)
    if name in UNIT_SCORES or name == "r2":
        return Margin("absolute", 0.005)
    if name in NAT_LOSSES:
        return Margin("absolute", 0.01)
    return Margin("relative", 0.01)


def _scored(lo: float, hi: float, direction: str) -> tuple[float, float]:
    sign = Metric("", as_direction(direction)).sign
    lo_s, hi_s = sorted((sign * float(lo), sign * float(hi)))
    return lo_s, hi_s


def excludes_zero(lo: float, hi: float) -> bool:
    """True when [lo, hi] is a defined interval that does not hold 0."""
    return bool(math.isfinite(lo) and math.isfinite(hi) and (min(lo, hi) > 0 or max(lo, hi) < 0))


def verdict(lo: float, hi: float, margin: float, direction: str) -> str:
    """ "better", "worse", "equivalent" or "inconclusive" for ``d = A - B`` with interval [lo, hi]
    and practical margin ``margin`` (metric units, >= 0; NaN: no margin, so never equivalent).
    "better" means A is better in ``direction`` ("max" or "min"). See the module docstring."""
    margin = float(margin)
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (or NaN for none), got {margin!r}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    lo_s, hi_s = _scored(lo, hi, direction)
    if -margin < lo_s and hi_s < margin:
        return "equivalent"
    if lo_s > 0:
        return "better"
    if hi_s < 0:
        return "worse"
    return "inconclusive"


# ------------------------------------------------------------------ the two-level interval, analytic


def _moments(x: np.ndarray):
    """Per sweep (leading axes) of differences shaped (..., R, n), NaN = missing: replicates with
    data, harmonic mean seeds, grand mean, between and pooled within variance, within dof and the
    bootstrap variance of the grand mean (see the module docstring)."""
    x = np.asarray(x, dtype=float)
    ok = np.isfinite(x)
    nk = ok.sum(-1)
    has = nk > 0
    r = has.sum(-1)
    safe_r = np.maximum(r, 1)
    mk = np.where(ok, x, 0.0).sum(-1) / np.maximum(nk, 1)
    grand = np.where(r > 0, (mk * has).sum(-1) / safe_r, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(r > 1, ((mk - grand[..., None]) ** 2 * has).sum(-1) / np.maximum(r - 1, 1), 0.0)
        ss = (np.where(ok, x - mk[..., None], 0.0) ** 2).sum(-1)
        dof_w = np.clip(nk - 1, 0, None).sum(-1)
        within = np.where(dof_w > 0, ss.sum(-1) / np.maximum(dof_w, 1), 0.0)
        inv_n = (has / np.maximum(nk, 1)).sum(-1) / safe_r
        between = np.maximum(0.0, spread - within * inv_n)
        noise = (np.where(nk > 1, ss / np.maximum(nk - 1, 1), 0.0) / np.maximum(nk, 1)).sum(-1) / safe_r
        var_mean = (between + noise) / safe_r
        seeds = np.where(r > 0, 1.0 / np.where(inv_n > 0, inv_n, np.nan), np.nan)
    return r, seeds, grand, between, within, dof_w, var_mean


def two_level_interval(x, confidence: float = CONFIDENCE):
    """The interval ``harness.stats.intervals.two_level_ci`` converges to as its resamples grow, computed
    in closed form and vectorised: ``x`` holds differences shaped (..., R, n) (NaN = missing);
    returns arrays (mean, lo, hi) over the leading axes. ``mean +- t_{R-1} * sqrt(var)`` with the
    bootstrap variance of the module docstring; with one replicate the t interval over its seeds
    (t_{n-1}), which the expanded bootstrap of ``stats.bootstrap_ci`` approximates; NaN bounds
    where nothing can vary (one replicate with one seed)."""
    from scipy.special import stdtrit

    r, seeds, grand, between, within, dof_w, var_mean = _moments(x)
    one = r == 1
    df = np.where(one, dof_w, r - 1).astype(float)
    var = np.where(one, within / np.where(one, seeds, 1.0), var_mean)
    with np.errstate(invalid="ignore"):
        half = np.where(df > 0, stdtrit(np.maximum(df, 1), 0.5 + confidence / 2.0), np.nan) * np.sqrt(var)
    return grand, grand - half, grand + half


@dataclass(frozen=True)
class Components:
    """Variance components of paired differences: replicates with data, seeds per replicate
    (harmonic mean), between-replicate variance (NaN with one replicate: unidentifiable), within
    (seed) variance, and the within degrees of freedom."""

    replicates: int
    seeds: float
    between: float
    within: float
    df_within: int


def _grid(groups) -> np.ndarray:
    if isinstance(groups, np.ndarray) and groups.ndim == 2:
        return groups.astype(float)
    rows = [np.asarray(list(g), dtype=float).ravel() for g in groups]
    width = max((row.size for row in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        out[i, : row.size] = row
    return out


def variance_components(groups: Sequence[Iterable[float]] | np.ndarray) -> Components:
    """One-way random-effects variance components (method of moments, between truncated at 0) of
    differences grouped by replicate (a list of per-replicate values, or an R x n array; non-finite
    values are missing, empty replicates ignored)."""
    r, seeds, _, between, within, dof_w, _ = _moments(_grid(groups))
    r = int(r)
    return Components(
        r, float(seeds), float(between) if r > 1 else math.nan, float(within) if dof_w > 0 else math.nan, int(dof_w)
    )


def paired_groups(a: Mapping[tuple[int, int], float], b: Mapping[tuple[int, int], float]) -> list[np.ndarray]:
    """``a - b`` keyed by (replicate, seed), grouped by replicate: the pairing of
    ``harness.stats.intervals.two_level_paired`` (replicate r with r, runs sharing a seed within)."""
    keys = sorted(k for k in set(a) & set(b) if math.isfinite(float(a[k])) and math.isfinite(float(b[k])))
    groups: dict[int, list[float]] = {}
    for rep, s in keys:
        groups.setdefault(rep, []).append(float(a[(rep, s)]) - float(b[(rep, s)]))
    return [np.array(groups[r]) for r in sorted(groups)]


# ------------------------------------------------------------------------------- power and MDE


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


@dataclass(frozen=True)
class Assessment:
    """One paired comparison: its verdict with the margin (metric units) and the unrounded bounds,
    whether the interval excludes 0, the MDE at ``POWER`` for the measured components and design,
    and ``need`` (``replicates_needed``). ``tuning_luck`` is False with one replicate: interval and
    MDE then cover seed noise only."""

    verdict: str
    margin: float
    lo: float
    hi: float
    excludes_zero: bool
    mde: float
    replicates: int
    seeds: float
    between: float
    within: float
    tuning_luck: bool
    need: Need


def assess(
    groups: Sequence[Iterable[float]] | np.ndarray,
    lo: float,
    hi: float,
    margin: float,
    direction: str,
    *,
    confidence: float = CONFIDENCE,
    power: float = POWER,
) -> Assessment:
    """Verdict, MDE and what it would take for differences ``groups`` (per replicate, as
    ``paired_groups`` returns) whose leaderboard interval is [lo, hi]; ``margin`` in metric units
    (``Margin.resolve``)."""
    c = variance_components(groups)
    v = verdict(lo, hi, margin, direction)
    if c.replicates == 0 or c.seeds != c.seeds:
        need = Need(None, None, None, "no paired runs")
        return Assessment(
            v, margin, lo, hi, excludes_zero(lo, hi), math.nan, c.replicates, math.nan, math.nan, math.nan, False, need
        )
    m = mde(c.between, c.within, c.replicates, c.seeds, df_within=c.df_within, confidence=confidence, power=power)
    need = replicates_needed(
        margin, c.between, c.within, c.seeds, replicates=c.replicates, confidence=confidence, power=power
    )
    return Assessment(
        v, margin, lo, hi, excludes_zero(lo, hi), m, c.replicates, c.seeds, c.between, c.within, c.replicates > 1, need
    )


# ---------------------------------------------------------------------------------------- display


def metric_bounds(metric: Metric | str) -> tuple[float, float]:
    """The range a metric's values can take ((-inf, inf) when unknown)."""
    name = metric.name if isinstance(metric, Metric) else str(metric)
    return METRIC_BOUNDS.get(name, (-math.inf, math.inf))


def clip_interval(lo: float, hi: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """A single optimizer's mean interval clipped to the metric's range (a mean of accuracies cannot
    exceed 1, though mean + t * se can). Not for differences. NaN stays NaN."""
    low, high = bounds

    def clip(x: float) -> float:
        return x if math.isnan(x) else min(max(float(x), low), high)

    return clip(lo), clip(hi)


def _side(a: float, b: float) -> int:
    return (a > b) - (a < b)


def format_bound(x: float, margin: float = math.nan, decimals: int = 3, noise: float = 1e-9) -> str:
    """``x`` in fixed-point with ``decimals`` decimals (say the table's), and more until the printed
    number sits on the same side of 0, +margin and -margin as ``x``: -0.0003 prints as -0.0003, not
    -0.000, and 0.0049 as 0.0049, not 0.005, against a margin of 0.005. "n/a" when not finite.
    A value within ``noise`` (a billionth) of the margin of 0 is floating-point noise (the mean of paired differences
    of runs that agree but for summation order, -2e-17): it prints as 0."""
    x, margin = float(x) + 0.0, float(margin)  # -0.0 -> 0.0
    if not math.isfinite(x):
        return "n/a"
    if math.isfinite(margin) and margin > 0 and abs(x) < noise * margin:
        x = 0.0
    refs = [0.0] + ([margin, -margin] if math.isfinite(margin) else [])
    for places in range(max(0, decimals), max(0, decimals) + 30):
        text = f"{x:.{places}f}"
        if all(_side(float(text), ref) == _side(x, ref) for ref in refs):
            return text
    return repr(x)
