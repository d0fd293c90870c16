"""Verdicts for paired optimizer comparisons: better, worse, equivalent or inconclusive, with a
practical margin per metric; the interval and variance components they rest on; and the assessment
that adds the MDE and what it would take to settle an inconclusive one (``harness.stats.power``).

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
that interval analytically (vectorised over simulated sweeps); the MDE (``harness.stats.power``)
is calibrated to it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from harness.stats.power import CONFIDENCE, POWER, Need, mde, replicates_needed
from harness.vocab import Metric, as_direction

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
MARGIN_KINDS = ("absolute", "relative")

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


# -------------------------------------------------------- the assessment: verdict, MDE, what it takes


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
