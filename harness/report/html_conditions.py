"""The report page's condition sections: per benchmark the leaderboard at each step budget and
gradient delay with the delay-robustness table (in its drill-down), and in the Overview the
time-to-target table with its performance profiles and the metric against each sweep axis with its
table. Everything is read off the leaderboard's condition tables (``harness.report.conditions``);
sections appear only when the records hold their data."""

from __future__ import annotations

import math

from harness import leaderboard
from harness.leaderboard import render_md as md
from harness.report import conditions as cond
from harness.report import data as rd
from harness.report import figures
from harness.report.html_parts import Charts, E, _badge, _flag_list, _main_cell, _td


def condition_section(data: rd.ReportData, c: cond.Condition, key, charts: Charts) -> str:
    per_value = c.by_bench.get(key)
    if not per_value:
        return ""
    title = "Step budgets" if c.column == "budget" else "Gradient delay"
    parts = [f'<section class="condition" data-condition="{E(c.column)}"><h3>{title}</h3>']
    if c.column == "budget" and cond.best_changes(per_value):
        parts.append(
            '<p class="alert">The best optimizer changes with the budget: '
            + "; ".join(
                f"{v:g}: {', '.join(r['optimizer'] for r in rows if r['best_mean'])}"
                for v, rows in sorted(per_value.items())
            )
            + ".</p>"
        )
    fig = figures.condition_figure(c.column, key, per_value, c.label)
    parts.append(charts.figure(fig, c.column, figures.CAPTIONS[c.column], f"metric vs {c.label}"))
    names = sorted({r["optimizer"] for rows in per_value.values() for r in rows}, key=leaderboard.display_key)
    used: set = set()
    head = "".join(f"<th>{E(c.column)} {v:g}</th>" for v in sorted(per_value))
    body = []
    for name in names:
        cells = [_td(E(name), leaderboard.display_key(name)[0], "")]
        for v in sorted(per_value):
            row = next((r for r in per_value[v] if r["optimizer"] == name), None)
            if row is None:
                cells.append(_td("—", None))
                continue
            d = md._decimals(per_value[v])
            versus = "best" if row["best_mean"] else row["vs_best_verdict"]
            cells.append(
                _td(
                    f"{_main_cell(row, d, used)} [{md._num(row['ci_lo'], d)}, "
                    f"{md._num(row['ci_hi'], d)}] rank {row['rank']} {_badge(versus)}",
                    row["mean"],
                )
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts.append(
        f'<div class="scroll"><table class="sortable"><thead><tr><th>optimizer</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>" + _flag_list(used)
    )
    if c.column == "delay":
        parts.append(_degradation_table(data, c, key))
    return "".join(parts) + "</section>"


def _degradation_table(data: rd.ReportData, c: cond.Condition, key) -> str:
    found = cond.degradation(data, key)
    if not found:
        return '<p class="skip">No paired runs at delay 0 and another delay.</p>'
    base = c.by_bench[key][0.0]
    d, margin = md._decimals(base), found[0]["margin"]
    body = []
    for g in found:
        rank = g["rank_by_degradation"]
        change = (
            "—"
            if not g["n"]
            else f"{md._signed(g['diff'], margin, d)} [{md._signed(g['lo'], margin, d)}, {md._signed(g['hi'], margin, d)}]"
        )
        gain = -g["degradation"] if math.isfinite(g["degradation"]) else None
        delay = f"{g['delay']:g}"
        body.append(
            f"<tr>{_td(E(g['optimizer']), None, '')}{_td(delay, g['delay'])}"
            f"{_td('—' if rank is None else str(rank), rank)}"
            f"{_td(change, gain)}{_td(_badge(g['verdict'], f' (margin ±{margin:.3g})'), None, '')}"
            f"{_td(str(g['n']), g['n'])}</tr>"
        )
    return (
        "<p>Delay robustness: Δ = metric(delay d) − metric(delay 0), paired (replicate r with r, shared eval "
        "seeds), the leaderboard's 95% interval and verdict against the margin at delay 0; ranked by "
        'degradation, the optimizer that loses least first.</p><div class="scroll"><table class="sortable">'
        "<thead><tr><th>optimizer</th><th>delay</th><th>rank by degradation</th><th>Δ [95% CI]</th>"
        f"<th>verdict</th><th>paired runs</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _time(median: float, lo: float, hi: float, digits: str) -> str:
    def one(v: float) -> str:
        return "∞" if math.isinf(v) else format(v, digits)

    if math.isnan(median):
        return "n/a"
    return one(median) + (f" [{one(lo)}, {one(hi)}]" if not math.isnan(lo) else "")


def _time_table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        bench = f"{r['task']} / {r['dataset']} ({r['size']})" + (f" [{r['variant']}]" if r["variant"] else "")
        target = (
            "none" if not math.isfinite(r["target"]) else f"{'≥' if r['direction'] == 'max' else '≤'} {r['target']:.4g}"
        )
        reached = "—" if r["reached"] is None else f"{r['reached']}/{r['n_runs'] - r['n_missing']}"
        steps = r["median_steps"] if math.isfinite(r["median_steps"]) else 1e300
        body.append(
            f"<tr>{_td(E(bench), None, '')}{_td(E(r['optimizer']), None, '')}"
            f'<td title="{E(r["target_rule"])}">{E(target)}</td>{_td(reached, r["reached"] or 0)}'
            f"{_td(_time(r['median_steps'], r['steps_lo'], r['steps_hi'], '.0f'), steps)}"
            f"{_td(_time(r['median_seconds'], r['seconds_lo'], r['seconds_hi'], '.3g'), None)}</tr>"
        )
    return (
        '<div class="scroll"><table class="sortable" id="time-to-target"><thead><tr><th>benchmark</th>'
        '<th>optimizer</th><th title="declared in the records, else the median final validation metric of '
        'adamw (else the first optimizer in registry order) at the full budget; hover a cell for its rule">'
        "target</th><th>reached</th><th>median steps [95% CI]</th><th>median train seconds [95% CI]</th>"
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _axis_table(name: str, rows: list[dict]) -> str:
    soft = {
        (r["task"], r["dataset"], r["size"], r["variant"], r["optimizer"]): r for r in rows if r["comparison"] == "soft"
    }
    body = []
    for r in (r for r in rows if r["comparison"] == "along"):
        bench = f"{r['task']} / {r['dataset']} ({r['size']})" + (f" [{r['variant']}]" if r["variant"] else "")
        cells = [
            _td(E(bench), None, ""),
            _td(E(r["family"]), None, ""),
            _td(E(str(r["value"])), None),
            _td(f"{r['mean']:.4g} [{r['ci_lo']:.4g}, {r['ci_hi']:.4g}]", r["mean"]),
        ]
        for x in (r, soft.get((r["task"], r["dataset"], r["size"], r["variant"], r["optimizer"]))):
            if x is None or not x["n"]:
                cells.append(_td("—", None))
                continue
            m = x["margin"]
            cells.append(
                _td(
                    f"{md._signed(x['diff'], m, 4)} [{md._signed(x['lo'], m, 4)}, "
                    f"{md._signed(x['hi'], m, 4)}] {_badge(x['verdict'], f' (margin ±{m:.3g})')}"
                    + (f" MDE {x['mde']:.3g}" if x["mde"] is not None and math.isfinite(x["mde"]) else ""),
                    x["diff"],
                )
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    ref = next((r["ref_value"] for r in rows if r["comparison"] == "along"), "")
    return (
        f'<div class="scroll"><table class="sortable" data-axis="{E(name)}"><thead><tr><th>benchmark</th>'
        f"<th>optimizer</th><th>{E(name)}</th><th>mean [95% CI]</th><th>Δ vs {E(name)} = {E(str(ref))}</th>"
        f"<th>SoftX − X</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def overview_sections(data: rd.ReportData, charts: Charts) -> tuple[list[str], list[str]]:
    """(HTML parts, skip notes) of the Overview's time-to-target and axis sections; nothing when the
    records hold no budgets, delays or axes."""
    parts: list[str] = []
    notes: list[str] = []
    rows = cond.time_rows(data)
    if rows:
        parts.append(
            '<section class="conditions" data-section="time-to-target"><h3>Time to target</h3>'
            "<p>Steps and training seconds (evaluation excluded) until the validation metric first "
            "reaches the target, per eval run from its curve; median over runs (a miss counts as ∞) with "
            "a 95% bootstrap interval.</p>" + _time_table(rows)
        )
        fig = figures.time_profile_figure(data)
        if fig is None:
            notes.append(
                "time-to-target profile skipped: it needs at least 2 full-budget benchmarks with a target "
                "under one condition"
            )
        else:
            parts.append(
                charts.figure(
                    fig, "time_profile", figures.CAPTIONS["time_profile"], "time-to-target performance profile"
                )
            )
        parts.append("</section>")
    axes = cond.axes(data)
    if axes:
        made = figures.axis_figures(data)
        for name, axis_rows in axes.items():
            parts.append(
                f'<section class="conditions" data-section="axis" data-axis="{E(name)}"><h3>Axis: {E(name)}</h3>'
            )
            if name in made:
                parts.append(charts.figure(made[name], "axis", figures.CAPTIONS["axis"], f"metric vs {name}"))
            parts.append(_axis_table(name, axis_rows) + "</section>")
    return parts, notes
