"""Report figures assembled from ``panels``: a grid per task (the PNGs) or one panel per benchmark
(the HTML page), each with its legend right of the panels and its notes at the foot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.report import data as rd
from harness.report import panels
from harness.report.style import canvas, finish

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KINDS = ("curves", "lr_sensitivity", "best_after_k", "temperature")
TITLES = {
    "curves": "validation curves (eval runs)",
    "lr_sensitivity": "LR sensitivity (tune trials)",
    "best_after_k": "best after k tune trials",
    "temperature": "Soft* temperature after the switch",
}
CAPTIONS = {
    "curves": "Eval runs (tuned configuration, fresh seeds): mean over seeds, band = min..max over seeds; "
    "diverged seeds left out. The leaderboard uses the {split} metric at the end of the budget.",
    "lr_sensitivity": "Every tune trial's objective (validation metric at the end of the budget) against its "
    "learning rate: one point per trial, never joined (other hyperparameters vary too), "
    "colour per optimizer, marker per tuning replicate, hollow for switching optimizers. "
    "x marks diverged trials (drawn at the worst edge, not at their penalty).",
    "best_after_k": "Thick: expected best objective among k trials taken in a uniformly random order from every "
    "tuning replicate's trials pooled (exact, by order statistics; diverged trials count at their "
    "penalty), band ± one std over orderings. Thin steps: best so far in the order each "
    "replicate's tuner ran. Branched optimizers are named in the legend.",
    "temperature": "tau of SoftSignum/SoftMuon (one line per seed, log scale) at the eval points; dotted line: "
    "the switch step floor(alpha_sign * K). After the switch tau starts near tmax (sign-like) and "
    "falls as the schedule walks up the fitted quantiles of the update, softening it.",
    "profile": "Dolan-More profile: for each optimizer, the fraction of benchmarks on which its mean is within a "
    "factor tau of the best optimizer's (ratios direction-aware; relative gaps where a metric can be "
    "<= 0; an optimizer with no result counts as never within). Higher and further left is better.",
    "budget": "The leaderboard computed at each step budget (fraction of the full budget): mean and 95% interval "
    "per optimizer, joined across budgets.",
    "delay": "The leaderboard computed at each gradient delay: mean and 95% interval per optimizer, joined "
    "across delays.",
    "time_profile": "AlgoPerf performance profile of time to target (steps), one panel per condition with at least "
    "two full-budget benchmarks: the fraction of benchmarks on which an optimizer's median steps to "
    "the target are within tau times the fastest's (a miss never is); the legend gives the integrated "
    "score (r_max = 4).",
    "axis": "The metric against a sweep axis: each cell's mean and 95% interval (the leaderboard's), one line per "
    "optimizer entry without the axis; the tables give each cell's paired difference from the axis's "
    "reference value and SoftX − X.",
}


def rows_for(kind: str, data: rd.ReportData, key) -> tuple | None:
    """The arguments a panel of ``kind`` draws for benchmark ``key`` (None when it has no rows)."""
    evals = rd.by_benchmark(data.evals).get(key) if len(data.evals) else None
    tunes = rd.by_benchmark(data.tunes).get(key) if len(data.tunes) else None
    if kind == "curves":
        return None if evals is None else (evals, data.curves)
    if kind in ("lr_sensitivity", "best_after_k"):
        return None if tunes is None else (tunes, evals)
    if kind == "temperature":
        for rows in (evals, tunes):
            if rows is not None and rows["base_optimizer"].isin(rd.SOFT_OPTIMIZERS).any():
                return rows, data.curves
        return None
    raise ValueError(f"unknown figure kind {kind!r}; known: {', '.join(KINDS)}")


def _draw(kind: str, ax, c, key, args) -> bool:
    return getattr(panels, kind)(ax, c, key, *args)


def grid(kind: str, data: rd.ReportData, keys: list, title: str):
    """One figure with a panel per benchmark of ``keys`` that has data, or None."""
    todo = [(key, args) for key in keys if (args := rows_for(kind, data, key)) is not None]
    if not todo:
        return None
    c = canvas(len(todo), title)
    drawn = 0
    for ax, (key, args) in zip(c.axes, todo):
        if _draw(kind, ax, c, key, args):
            drawn += 1
        else:
            ax.set_visible(False)
    if not drawn:
        return None
    if drawn < len(todo):  # drop the empty panels by drawing again on a smaller grid
        keys = [key for ax, (key, _) in zip(c.axes, todo) if ax.get_visible()]
        return grid(kind, data, keys, title)
    return finish(c)


def task_figures(kind: str, data: rd.ReportData) -> dict[str, Figure]:
    """task -> its figure of ``kind`` (tasks without data left out)."""
    source = data.tunes if kind in ("lr_sensitivity", "best_after_k") else data.evals
    out = {}
    for task, benches in rd.by_task(source).items():
        fig = grid(kind, data, list(benches), f"{task}: {TITLES[kind]}")
        if fig is not None:
            out[task] = fig
    return out


def temperature_figure(data: rd.ReportData):
    """One panel per benchmark with Soft* runs that logged tau (the PNG ``temperature.png``)."""
    frame = data.evals if len(data.evals) else data.tunes
    keys = list(rd.by_benchmark(frame)) if len(frame) else []
    keys += [k for k in rd.by_benchmark(data.tunes) if k not in keys] if len(data.tunes) else []
    return grid("temperature", data, sorted(keys), "Soft* temperature after the sign -> soft switch")


def bench_figure(kind: str, data: rd.ReportData, key):
    """The one-panel figure of ``kind`` for benchmark ``key``, or None."""
    args = rows_for(kind, data, key)
    if args is None:
        return None
    c = canvas(1, TITLES[kind])
    if not _draw(kind, c.axes[0], c, key, args):
        return None
    return finish(c)


def profile_figure(board):
    """(figure, None) or (None, why it was skipped)."""
    c = canvas(1, "Performance profile")
    skipped = panels.profile(c.axes[0], c, board)
    return (None, skipped) if skipped else (finish(c), None)


def condition_figures(cond) -> dict[str, Figure]:
    """task -> one figure with a panel per benchmark: the leaderboard at each value of a condition
    (``conditions.Condition``)."""
    out = {}
    for task in sorted({key[0] for key in cond.by_bench}):
        keys = sorted(key for key in cond.by_bench if key[0] == task)
        c = canvas(len(keys), f"{task}: metric vs {cond.label}")
        for ax, key in zip(c.axes, keys):
            panels.condition(ax, c, key, cond.column, cond.by_bench[key], cond.label)
        out[task] = finish(c)
    return out


def condition_figure(column: str, key, rows_by_value, label: str):
    c = canvas(1, f"metric vs {label}")
    if not panels.condition(c.axes[0], c, key, column, rows_by_value, label):
        return None
    return finish(c)


def time_profile_figure(data: rd.ReportData):
    """One panel per condition with two or more full-budget benchmarks with a target, or None."""
    from harness.report import condition_panels, conditions

    ratios = conditions.profiles(data, "steps")
    if not ratios:
        return None
    c = canvas(len(ratios), "Time to target: performance profiles (steps)")
    for ax, (label, table) in zip(c.axes, ratios.items()):
        condition_panels.time_profile(ax, c, table, label, "steps")
    return finish(c)


def axis_figures(data: rd.ReportData) -> dict[str, Figure]:
    """axis -> one figure with a panel per benchmark: the metric against the axis (``conditions.axes``)."""
    from harness.report import condition_panels, conditions

    out = {}
    for name, rows in conditions.axes(data).items():
        by_bench: dict[tuple, list[dict]] = {}
        for r in rows:
            by_bench.setdefault((r["task"], r["dataset"], r["size"], r["variant"]), []).append(r)
        keys = [k for k in sorted(by_bench) if any(r["comparison"] == "along" for r in by_bench[k])]
        if not keys:
            continue
        c = canvas(len(keys), f"metric vs {name}")
        for ax, key in zip(c.axes, keys):
            condition_panels.axis(ax, c, key, by_bench[key], name, data.metric_split)
        out[name] = finish(c)
    return out
