"""Time-to-target and AlgoPerf performance profiles: pure functions (numbers in, numbers out).

Torch-free (numpy only); every "is this value good enough" goes through ``harness.vocab.Metric``.

Time-to-target (``time_to_target``). A run reaches the target at the first evaluation whose
validation metric is at least as good as the target (``Metric.reached``: equal counts; NaN never
reaches): its step, and its training seconds (evaluation excluded) when the caller has them. A run
that never reaches it, or diverges before, has time ``inf``. This is the rule of the loop's
``steps_to_target`` and of AlgoPerf (Dahl et al. 2023, "Benchmarking Neural Network Training
Algorithms", arXiv:2306.07179; github.com/mlcommons/algorithmic-efficiency,
``scoring/performance_profile.py``: the first evaluation with metric <= target for a minimised
metric, >= for a maximised one).

Targets (``derive_target``). Declared per benchmark, or derived: the reference optimizer's median
final validation metric at the full budget, a run that ended non-finite counting as the worst value.
The reference then reaches its own target in about half its runs, near the end of the budget.

Medians (``median_ci``). The per-benchmark summary of times is the median over runs, a miss counting
as ``inf`` (so the median is finite only when more than half the runs reached the target, counting
ties as in the even-n rule below). Its interval is the seeded percentile bootstrap of the median
(resample the runs with replacement, take each resample's median, read the order statistics at
alpha/2 and 1 - alpha/2); the endpoints are resampled medians, so they can be ``inf``. No
interpolation between order statistics, so ``inf`` never meets ``inf - inf``. As with every
bootstrap, the interval lies within the range of the values: read intervals from 3-5 runs as
optimistic (with n runs and a continuous distribution the range itself misses the median with
probability 2 * 0.5**n).

Performance profiles (AlgoPerf's definition; Dahl et al. 2023, and the benchmark's
documentation, "AlgoPerf Benchmark Score via Integrated Performance Profiles"; after Dolan and Moré
2002, "Benchmarking optimization software with performance profiles", Math. Programming 91):

* ``t[w][s]``: the time of submission (optimizer) ``s`` on workload (benchmark) ``w``, ``inf`` for a miss.
* ratio ``r[w][s] = t[w][s] / min_s' t[w][s']`` in ``[1, inf]``; ties share the ratio 1.
* profile ``rho_s(tau)`` = the fraction of the ``n`` workloads with ``r[w][s] <= tau``.
* score ``B_s = 1/(r_max - 1) * integral_1^r_max rho_s(tau) dtau`` with ``r_max = 4``, in [0, 1]: 1 for
  the fastest on every workload, 0 for one never within ``r_max`` times the fastest.

How AlgoPerf's scoring code does it, and where this module differs: it takes tau on a *linear* grid
of 100 points over [1, 4] (a ``log`` option exists for plots, not for the score), integrates
``rho`` by the trapezoid rule on that grid and divides by the grid's range, 3. ``rho`` is a step
function, so the trapezoid rule is off by up to half a grid cell per step; here the integral is
exact: a workload with ratio ``r <= r_max`` adds ``(r_max - r) / (r_max - 1) / n`` to ``B_s``, any
other adds 0. A workload that no submission solved: AlgoPerf keeps it in ``n`` (its ratios are
``inf / inf = NaN``, never ``<= tau``) and so does ``time_ratios`` by default, so every profile
stays below 1 there; ``drop_unsolved=True`` leaves such workloads out of ``n``. AlgoPerf's time
per workload is the median over its studies of each study's earliest-reaching trial; here the caller
passes the per-benchmark median over runs (``median_ci``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from harness.errors import UserError
from harness.vocab import Metric, as_direction

R_MAX = 4.0
CONFIDENCE = 0.95
N_RESAMPLES = 10_000
SEED = 0


class ProfileError(UserError, ValueError):
    """Input a time-to-target or a profile cannot be computed from: a ``UserError`` (the CLI exits 2
    with the message) that is also a ``ValueError``."""


# ------------------------------------------------------------------------------------ time-to-target


def _floats(values: Iterable[float], what: str) -> np.ndarray:
    try:
        return np.asarray(list(values), dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ProfileError(f"{what} must be numbers") from None


def time_to_target(
    steps: Sequence[int],
    values: Sequence[float],
    target: float,
    direction: str,
    seconds: float | Sequence[float] | None = None,
) -> tuple[float, float]:
    """``(steps, seconds)`` until the first evaluation whose metric reaches ``target``; ``(inf, inf)``
    when none does.

    ``steps`` / ``values``: a run's evaluation curve (eval steps and the validation metric there; any
    order, no step twice). ``seconds``: ``None`` (seconds unknown: NaN when reached), the training
    seconds per step (a number >= 0: seconds = steps * it), or the cumulative training seconds,
    evaluation excluded, at each evaluation (aligned with ``steps``, non-decreasing in step order)."""
    metric = Metric("", as_direction(direction))
    if target is None or not isinstance(target, (int, float)) or isinstance(target, bool) or math.isnan(target):
        raise ProfileError(
            f"time-to-target needs a target number, got {target!r}: declare one per benchmark "
            "in the sweep file or derive it (derive_target)"
        )
    s, v = _floats(steps, "eval steps"), _floats(values, "eval values")
    if s.size != v.size:
        raise ProfileError(f"an eval curve needs one value per step: {s.size} steps, {v.size} values")
    if not (np.all(np.isfinite(s)) and np.all(s >= 0) and np.all(s == np.floor(s))):
        raise ProfileError("eval steps must be integers >= 0")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    if np.any(np.diff(s) == 0):
        raise ProfileError(f"an eval curve has step {int(s[np.flatnonzero(np.diff(s) == 0)[0]])} twice")
    cumulative = None
    per_step = None
    if isinstance(seconds, bool):  # an int to Python, never a number of seconds
        raise ProfileError("cumulative training seconds must be numbers")
    if isinstance(seconds, (int, float)):
        per_step = float(seconds)
        if not (math.isfinite(per_step) and per_step >= 0):
            raise ProfileError(f"seconds per step must be a number >= 0, got {seconds!r}")
    elif seconds is not None:
        cumulative = _floats(seconds, "cumulative training seconds")
        if cumulative.size != s.size:
            raise ProfileError(
                f"cumulative seconds need one value per eval step: {s.size} steps, {cumulative.size} seconds"
            )
        cumulative = cumulative[order]
        if not (np.all(np.isfinite(cumulative)) and np.all(cumulative >= 0) and np.all(np.diff(cumulative) >= 0)):
            raise ProfileError("cumulative training seconds must be finite, >= 0 and non-decreasing in step order")
    for i in range(s.size):  # one Python check per evaluation (tens to hundreds per run), not per step
        if metric.reached(float(v[i]), float(target)):
            step = float(s[i])
            if per_step is not None:
                return step, step * per_step
            if cumulative is not None:
                return step, float(cumulative[i])
            return step, math.nan
    return math.inf, math.inf


def derive_target(finals: Mapping[str, Sequence[float]], direction: str, reference: str) -> float:
    """The default target of a benchmark: the median of the reference optimizer's final validation
    metrics at the full budget (one per eval run), a non-finite final (a diverged run) counting as
    the worst value. Raises ``ProfileError`` when the reference has no runs or its median is not
    finite (more than half of its runs diverged): declare the target in the sweep file then."""
    metric = Metric("", as_direction(direction))
    runs = finals.get(reference)
    present = ", ".join(sorted(k for k, v in finals.items() if len(v))) or "none"
    if runs is None or len(runs) == 0:
        raise ProfileError(
            f"cannot derive a target: the reference optimizer {reference!r} has no full-budget eval "
            f"runs on this benchmark (optimizers with runs: {present}); declare the target in the "
            "sweep file or evaluate the reference"
        )
    x = _floats(runs, "final metrics")
    worst = -math.inf if metric.sign > 0 else math.inf
    x = np.where(np.isfinite(x), x, worst)
    value = _median_sorted(np.sort(x)[None, :])[0]
    if not math.isfinite(value):
        bad = int(np.sum(~np.isfinite(x)))
        raise ProfileError(
            f"cannot derive a target: {bad} of {x.size} runs of the reference optimizer {reference!r} "
            "ended without a finite final metric, so its median is not a number; declare the target "
            "in the sweep file"
        )
    return float(value)


# ---------------------------------------------------------------------------------- medians with inf


@dataclass(frozen=True)
class MedianCI:
    """The median of a benchmark's times over runs (``inf``: most runs missed), its bootstrap
    interval (NaN with fewer than 2 runs), the number of runs and of misses."""

    median: float
    lo: float
    hi: float
    n: int
    missed: int


def _median_sorted(rows: np.ndarray) -> np.ndarray:
    """Medians of the rows of a row-sorted 2-D array: the middle value, or the mean of the two middle
    values (``inf`` when the upper one is ``inf``; never ``inf - inf``)."""
    n = rows.shape[1]
    a, b = rows[:, (n - 1) // 2], rows[:, n // 2]
    with np.errstate(invalid="ignore"):
        return np.where(a == b, a, (a + b) / 2.0)


def _times(values: Iterable[float]) -> np.ndarray:
    x = _floats(values, "times")
    if np.any(np.isnan(x)) or np.any(x < 0):
        raise ProfileError("times must be numbers >= 0 or inf (a miss); got NaN or a negative value")
    return x


def median_ci(
    values: Iterable[float],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> MedianCI:
    """Median of ``values`` (times, ``inf`` for a miss) and its seeded percentile-bootstrap interval
    (see the module docstring). Fewer than 2 values: no interval (NaN, NaN); equal values: the value."""
    if not 0.0 < confidence < 1.0:
        raise ProfileError(f"confidence must be in (0, 1), got {confidence!r}")
    if not isinstance(n_resamples, int) or n_resamples < 1:
        raise ProfileError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    x = np.sort(_times(values))
    n, missed = int(x.size), int(np.sum(np.isinf(x)))
    if n == 0:
        return MedianCI(math.nan, math.nan, math.nan, 0, 0)
    median = float(_median_sorted(x[None, :])[0])
    if n == 1:
        return MedianCI(median, math.nan, math.nan, 1, missed)
    if np.all(x == x[0]):
        return MedianCI(median, median, median, n, missed)
    rng = np.random.default_rng(seed)
    medians = np.sort(_median_sorted(np.sort(x[rng.integers(0, n, size=(n_resamples, n))], axis=1)))
    alpha = 1.0 - confidence
    lo_i = min(n_resamples - 1, int(math.floor(alpha / 2.0 * n_resamples)))
    hi_i = max(0, int(math.ceil((1.0 - alpha / 2.0) * n_resamples)) - 1)
    return MedianCI(median, float(medians[lo_i]), float(medians[hi_i]), n, missed)


# ------------------------------------------------------------------------------ performance profiles


def time_ratios(
    times: Mapping[str, Mapping[str, float]],
    submissions: Iterable[str] | None = None,
    *,
    drop_unsolved: bool = False,
) -> dict[str, dict[str, float]]:
    """AlgoPerf performance ratios ``r[w][s] = t[w][s] / min_s' t[w][s']`` (``inf`` for a miss).

    ``times[w][s]``: the time of submission ``s`` on workload ``w`` (> 0, or ``inf`` for a miss). A
    submission without a time on a workload (``submissions`` lists them all; default: every one named
    anywhere) missed it. A workload nobody solved keeps ratio ``inf`` for everyone (AlgoPerf) unless
    ``drop_unsolved``, which leaves it out."""
    names = sorted({s for row in times.values() for s in row} if submissions is None else set(submissions))
    out: dict[str, dict[str, float]] = {}
    for workload, row in times.items():
        extra = sorted(set(row) - set(names))
        if extra:
            raise ProfileError(
                f"workload {workload!r} has times of {', '.join(extra)}, not among the submissions {', '.join(names)}"
            )
        t = {s: float(row[s]) if s in row else math.inf for s in names}
        bad = {s: v for s, v in t.items() if math.isnan(v) or v <= 0}
        if bad:
            raise ProfileError(f"workload {workload!r}: times must be > 0 or inf (a miss), got {bad}")
        best = min(t.values(), default=math.inf)
        if math.isinf(best):
            if not drop_unsolved:
                out[workload] = dict.fromkeys(names, math.inf)
            continue
        out[workload] = {s: v / best for s, v in t.items()}
    return out


def _ratio_matrix(ratios: Mapping[str, Mapping[str, float]], r_max: float) -> tuple[list[str], np.ndarray]:
    """(submissions, ratios as a submissions x workloads array), after the checks every profile needs."""
    if not (isinstance(r_max, (int, float)) and math.isfinite(r_max) and r_max > 1.0):
        raise ProfileError(f"r_max must be a number > 1, got {r_max!r}")
    if not ratios:
        raise ProfileError("a performance profile needs at least one workload")
    names = sorted({s for row in ratios.values() for s in row})
    r = np.array([[float(ratios[w].get(s, math.inf)) for w in ratios] for s in names], dtype=float).reshape(
        len(names), len(ratios)
    )
    if np.any(np.isnan(r)) or np.any(r < 1.0):
        raise ProfileError("performance ratios must be >= 1 or inf (time_ratios makes them)")
    return names, r


def profile_steps(
    ratios: Mapping[str, Mapping[str, float]], r_max: float = R_MAX
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The exact profile ``rho_s`` on ``[1, r_max]`` as a step function: for each submission
    ``(taus, rho)`` with ``rho[i] = rho_s(tau)`` for ``taus[i] <= tau < taus[i + 1]`` (plot with
    ``where="post"``). ``taus`` are 1, every ratio in (1, r_max] of any submission, and ``r_max``."""
    names, r = _ratio_matrix(ratios, r_max)
    inside = r[np.isfinite(r) & (r <= r_max)]
    taus = np.unique(np.concatenate(([1.0, float(r_max)], inside)))
    rho = (r[:, None, :] <= taus[None, :, None]).mean(axis=2)
    return {s: (taus.copy(), rho[i]) for i, s in enumerate(names)}


def integrated_score(ratios: Mapping[str, Mapping[str, float]], r_max: float = R_MAX) -> dict[str, float]:
    """AlgoPerf's benchmark score ``B_s = 1/(r_max - 1) * integral_1^r_max rho_s(tau) dtau``, exactly:
    the mean over workloads of ``(r_max - r) / (r_max - 1)`` for ``r <= r_max`` and 0 otherwise."""
    names, r = _ratio_matrix(ratios, r_max)
    credit = np.where(np.isfinite(r) & (r <= r_max), (r_max - r) / (r_max - 1.0), 0.0)
    return {s: float(credit[i].mean()) for i, s in enumerate(names)}
