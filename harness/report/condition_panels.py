"""Panels of the condition figures that are not per-value leaderboards: the time-to-target
performance profile (AlgoPerf) and the metric against an ablation axis. Drawn into a matplotlib
``Axes`` like ``panels``; each adds its legend entries and notes to the ``style.Canvas``."""

from __future__ import annotations

import math

import numpy as np

from harness.leaderboard import display_key
from harness.report.panels import _handle, _title
from harness.report.style import Canvas, metric_label, style
from harness.stats import profiles


def time_profile(ax, c: Canvas, ratios: dict, condition: str, measure: str) -> bool:
    """AlgoPerf's performance profile of the time-to-target medians: the fraction of benchmarks an
    entry reaches the target within tau times the fastest, tau in [1, r_max], exact steps
    (``profiles.profile_steps``), with each entry's integrated score in the legend."""
    if len(ratios) < 2:
        return False
    steps = profiles.profile_steps(ratios)
    scores = profiles.integrated_score(ratios)
    for name in sorted(steps, key=display_key):
        taus, rho = steps[name]
        s = style(name)
        ax.plot(taus, rho, drawstyle="steps-post", **s.line(len(taus)))
        c.add(name, _handle(name), f"score {scores[name]:.2f}")
    ax.set_xlim(1.0, profiles.R_MAX)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(f"tau (time to target in {measure} / the fastest's)")
    ax.set_ylabel(f"fraction of the {len(ratios)} benchmarks", fontsize=8)
    ax.set_title(f"condition: {condition or 'default'}", fontsize=9)
    c.note(
        "AlgoPerf profile: for each optimizer the fraction of benchmarks on which its median time to the target is "
        "within tau times the fastest one's (a miss never is); score = area under it over [1, 4] / 3"
    )
    return True


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def axis(ax, c: Canvas, key, rows: list[dict], name: str, split: str = "test") -> bool:
    """The metric against axis ``name`` on one benchmark: per family (the entry without the axis) its
    mean and 95% interval in each cell, joined across the axis's values (numbers on a numeric axis,
    the values in order otherwise)."""
    along = [r for r in rows if r["comparison"] == "along"]
    if not along:
        return False
    values = list(dict.fromkeys(str(r["value"]) for r in along))
    numeric = all(math.isfinite(_number(v)) for v in values)
    position = {v: (_number(v) if numeric else i) for i, v in enumerate(values)}
    families = sorted({r["family"] for r in along}, key=display_key)
    spread = (max(position.values()) - min(position.values())) or 1.0
    for j, family in enumerate(families):
        mine = [r for r in along if r["family"] == family]
        shift = (j - (len(families) - 1) / 2) * 0.01 * spread
        x = np.array([position[str(r["value"])] for r in mine], dtype=float) + shift
        mean = np.array([r["mean"] for r in mine], dtype=float)
        lo = np.array([r["ci_lo"] for r in mine], dtype=float)
        hi = np.array([r["ci_hi"] for r in mine], dtype=float)
        s = style(family)
        ax.errorbar(
            x,
            mean,
            yerr=np.vstack([mean - lo, hi - mean]),
            color=s.color,
            linestyle=s.linestyle,
            marker=s.marker,
            markersize=4,
            markerfacecolor="none" if s.hollow else s.color,
            linewidth=1.2,
            capsize=2,
            elinewidth=0.8,
        )
        c.add(family, _handle(family))
    ax.set_xticks([position[v] for v in values])
    ax.set_xticklabels(values)
    ax.set_xlabel(name)
    first = along[0]
    ax.set_ylabel(metric_label(first["metric"], first["direction"], split), fontsize=8)
    _title(ax, key)
    c.note(
        f"points: each cell's mean along {name}; bars: its 95% interval (the leaderboard's); one line per "
        "optimizer entry without this axis, dodged sideways a little"
    )
    return True
