"""The Markdown sections of the condition and axis tables (``harness.leaderboard.conditions``): metric
vs budget, time to target with its performance profiles, delay robustness, and the ablation axes.
Each appears only when the records hold its data (``Extras.active`` and rows of its own), so the
Markdown of records without budgets, delays or axes is what it was before them."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.leaderboard import render_text as md
from harness.leaderboard.load import display_key


def _bench(row: dict) -> str:
    label = f"{row['task']} / {row['dataset']} ({row['size']})"
    return f"{label} [{row['variant']}]" if row["variant"] else label


def _decimals(board) -> dict[tuple, int]:
    by: dict[tuple, list[dict]] = {}
    for r in board.rows:
        by.setdefault((r["task"], r["dataset"], r["size"]), []).append(r)
    return {k: md.decimals(v) for k, v in by.items()}


def _d(decimals: dict, row: dict) -> int:
    return decimals.get((row["task"], row["dataset"], row["size"]), 4)


def _interval(mean: float, lo: float, hi: float, d: int) -> str:
    return f"{md.num(mean, d)} [{md.num(lo, d)}, {md.num(hi, d)}]"


def _delta(row: dict, d: int, prefix: str = "") -> str:
    """``Δ [lo, hi] **verdict** (MDE m)`` of the comparison fields ``<prefix>diff`` etc. of ``row``."""
    if not row.get(f"{prefix}n"):
        return "—"
    m = row["margin"]
    text = (
        f"{md.signed(row[f'{prefix}diff'], m, d)} [{md.signed(row[f'{prefix}lo'], m, d)}, "
        f"{md.signed(row[f'{prefix}hi'], m, d)}] **{row[f'{prefix}verdict']}**"
    )
    mde = row.get(f"{prefix}mde")
    return text + (f" (MDE {md.num(mde, d)})" if mde is not None and math.isfinite(mde) else "")


def sections(board) -> list[str]:
    """The Markdown lines of every section the board's records have data for ([] when none)."""
    extras = getattr(board, "extras", None)
    if extras is None or not extras.active:
        return []
    decimals = _decimals(board)
    return (
        _budgets(extras.budget_rows, decimals)
        + _times(extras.time_rows, extras.profile_rows, decimals)
        + _delays(extras.delay_rows, decimals)
        + _axes(extras.axis_rows, decimals)
    )


def _budgets(rows: Sequence[dict], decimals) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "## Metric vs budget",
        "",
        "The leaderboard at each step budget (fraction of the full budget; WSD decay branches): mean [95% "
        "interval], rank and verdict against the best at that budget.",
        "",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["dataset"], r["size"], r["variant"]), []).append(r)
    for group in groups.values():
        budgets = sorted({r["budget"] for r in group})
        names = sorted({r["optimizer"] for r in group}, key=display_key)
        cell = {(r["optimizer"], r["budget"]): r for r in group}
        d = _d(decimals, group[0])
        arrow = "↑" if group[0]["direction"] == "max" else "↓"
        lines += [f"### {_bench(group[0])}: {group[0]['metric']} {arrow}", ""]
        if group[0]["best_changes"]:
            bests = "; ".join(
                f"{b:g}: " + ", ".join(r["optimizer"] for r in group if r["budget"] == b and r["best_mean"])
                for b in budgets
            )
            lines += [f"**The best optimizer changes with the budget** ({bests}).", ""]
        body = []
        for name in names:
            cells = [name]
            for b in budgets:
                at = cell.get((name, b))
                if at is None:
                    cells.append("—")
                    continue
                versus = "best" if at["best_mean"] else (at["vs_best_verdict"] or "—")
                cells.append(f"{_interval(at['mean'], at['ci_lo'], at['ci_hi'], d)} rank {at['rank']}, {versus}")
            body.append(cells)
        lines += md.md_table(
            ["optimizer"] + [f"budget {b:g}" for b in budgets], body, ["---"] + ["--:"] * len(budgets)
        ) + [""]
    return lines


def _time(median: float, lo: float, hi: float, seconds: bool) -> str:
    if math.isnan(median):
        return "n/a"
    fmt = (
        (lambda v: "∞" if math.isinf(v) else f"{v:.3g}")
        if seconds
        else (lambda v: "∞" if math.isinf(v) else f"{v:.0f}")
    )
    return fmt(median) + (f" [{fmt(lo)}, {fmt(hi)}]" if not math.isnan(lo) else "")


def _times(rows: Sequence[dict], profile: Sequence[dict], decimals) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "## Time to target",
        "",
        "Steps and training seconds (evaluation excluded) until the validation metric first reaches the "
        "target, per eval run from its curve; median over runs, a miss counting as ∞, with a 95% bootstrap "
        "interval. Target: declared in the records, else the median final validation metric of adamw (else "
        "the first optimizer in registry order) at the full budget.",
        "",
    ]
    body = []
    for r in rows:
        d = max(_d(decimals, r), 2)
        target = (
            "none"
            if not math.isfinite(r["target"])
            else f"{'≥' if r['direction'] == 'max' else '≤'} {md.num(r['target'], d)}"
        )
        reached = "—" if r["reached"] is None else f"{r['reached']}/{r['n_runs'] - r['n_missing']}"
        body.append(
            [
                _bench(r),
                r["optimizer"],
                f"{target} ({r['target_rule'].split(':')[0]})",
                reached,
                _time(r["median_steps"], r["steps_lo"], r["steps_hi"], False),
                _time(r["median_seconds"], r["seconds_lo"], r["seconds_hi"], True),
            ]
        )
    lines += md.md_table(
        ["benchmark", "optimizer", "target", "reached", "median steps [95% CI]", "median seconds [95% CI]"],
        body,
        ["---", "---", "---", "--:", "--:", "--:"],
    )
    if profile:
        lines += [
            "",
            "AlgoPerf integrated performance-profile scores (r_max = 4; 1 = fastest on every benchmark) "
            "over the full-budget benchmarks of each condition:",
            "",
        ]
        body = [
            [
                r["condition"] or "default",
                r["measure"],
                r["optimizer"],
                f"{r['score']:.3f}",
                f"{r['n_ran']}/{r['n_benchmarks']}",
            ]
            for r in profile
        ]
        lines += md.md_table(
            ["condition", "measure", "optimizer", "score", "benchmarks run"], body, ["---", "---", "---", "--:", "--:"]
        )
    return lines + [""]


def _delays(rows: Sequence[dict], decimals) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "## Delay robustness",
        "",
        "Δ = metric(delay d) − metric(delay 0) per optimizer, paired by replicate and seed, with the "
        "leaderboard's 95% interval and verdict against the delay-0 margin; ranked by degradation, the "
        "optimizer that loses least first.",
        "",
    ]
    body = []
    for r in rows:
        d = _d(decimals, r)
        rank = "—" if r["rank_by_degradation"] is None else str(r["rank_by_degradation"])
        body.append(
            [
                _bench(r),
                f"{r['delay']:g}",
                rank,
                r["optimizer"],
                f"{md.num(r['mean_delay0'], d)} → {md.num(r['mean_delayed'], d)}",
                _delta(r, d),
            ]
        )
    return (
        lines
        + md.md_table(
            ["benchmark", "delay", "rank", "optimizer", "mean: delay 0 → d", "Δ [95% CI]"],
            body,
            ["---", "--:", "--:", "---", "--:", "--:"],
        )
        + [""]
    )


def _axes(rows: Sequence[dict], decimals) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "## Axes",
        "",
        "Each cell of a sweep axis against the cell at the axis's reference value (its smallest), paired by "
        "replicate and seed, and SoftX − X in each cell; verdicts against the reference cell's margin.",
        "",
    ]
    for axis in dict.fromkeys(r["axis"] for r in rows):
        mine = [r for r in rows if r["axis"] == axis]
        along = [r for r in mine if r["comparison"] == "along"]
        soft = {
            (r["task"], r["dataset"], r["size"], r["variant"], r["optimizer"]): r
            for r in mine
            if r["comparison"] == "soft"
        }
        ref = along[0]["ref_value"] if along else ""
        lines += [f"### {axis} ({mine[0]['kind']} axis; reference value {ref})", ""]
        body = []
        for r in along:
            d = _d(decimals, r)
            s = soft.get((r["task"], r["dataset"], r["size"], r["variant"], r["optimizer"]))
            body.append(
                [
                    _bench(r),
                    r["family"],
                    r["value"],
                    _interval(r["mean"], r["ci_lo"], r["ci_hi"], d),
                    _delta(r, d),
                    f"{_delta(s, d)} vs {s['reference']}" if s else "—",
                ]
            )
        lines += md.md_table(
            ["benchmark", "optimizer", axis, "mean [95% CI]", f"Δ vs {axis} = {ref}", "SoftX − X"],
            body,
            ["---", "---", "--:", "--:", "--:", "--:"],
        ) + [""]
    return lines
