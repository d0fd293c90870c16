"""``optbench report RESULTS --html``: one self-contained page (``report.html``) that works offline.

Tabs (plain sections without JavaScript):

* **Leaderboard**: one row per (benchmark, optimizer) of ``harness.leaderboard.compute``, the
  numbers and marks as ``optbench leaderboard`` prints them (its own cell formatting, not a copy),
  sortable; every flag carries its explanation (hover) and is listed under the table where it
  occurs; then the aggregate table.
* **Benchmarks**: a drill-down per benchmark: its facts (metric, margin, target), its rows, the
  validation curves with seed bands, LR sensitivity per replicate, best-after-k with branched
  optimizers named, the temperature schedule of the Soft* runs, and, when the records hold other
  step budgets or gradient delays, a section for each (``html_conditions``).
* **Overview**: the performance profile; with budgets, delays or axes in the records, the
  time-to-target table and its performance profiles, and the metric against each sweep axis with
  its table; skipped figures and warnings.
* **Provenance**: what the runs recorded (commit, versions, devices, origins of plugins), the
  benchmark variants, and what made the page.

Charts are matplotlib figures inlined as SVG (``style.svg_text``): no chart library, nothing loaded
from the network, nothing to keep up to date in JavaScript (docs/report.md). The inline script only
sorts tables and switches tabs (``assets``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from harness import leaderboard
from harness.leaderboard import render_md as md
from harness.report import assets, figures, provenance
from harness.report import conditions as cond
from harness.report import data as rd
from harness.report.html_parts import (  # noqa: F401  (slug, FLAGS: the page's public names)
    FLAGS,
    VERDICT_ORDER,
    Charts,
    E,
    _badge,
    _flag,
    _flag_list,
    _main_cell,
    _td,
    slug,
)
from harness.report.style import bench_title, metric_label


def _comparison(row: dict, prefix: str, d: int, used: set, ref: str) -> tuple[str, float | None]:
    if not row.get(f"{prefix}_n"):
        return "—", None
    raw = md._comparison_cell(row, prefix, d)
    found = re.match(r"^(.*?\*\*\w+\*\*)(?: \((.*)\))?$", raw)
    main, extra = (found.group(1), found.group(2) or "") if found else (raw, "")
    margin = f" (margin ±{row['margin']:.3g}; {row[f'{prefix}_n']} paired runs; Δ = {row['optimizer']} − {ref})"
    text = re.sub(r"\*\*(\w+)\*\*", lambda m: _badge(m.group(1), margin), E(main))
    extra = E(extra)
    if "MDE" in extra:
        used.add("MDE")
        extra = re.sub(
            r"MDE ([^;]+)",
            lambda m: f'<abbr class="flag" title="{E(FLAGS["MDE"])}">MDE {m.group(1)}</abbr>',
            extra,
            count=1,
        )
    if "R≥" in extra:
        used.add("R≥k")
        extra = re.sub(
            r"R≥(\d+)", lambda m: f'<abbr class="flag" title="{E(FLAGS["R≥k"])}">R≥{m.group(1)}</abbr>', extra, count=1
        )
    elif row.get("need_note") and row[f"{prefix}_verdict"] == "inconclusive":
        used.add("R≥k: n/a")
        extra += f'; <abbr class="flag" title="{E(row["need_note"])}">R≥k: n/a</abbr>'
    if extra:
        text += f'<br><span class="extra">{extra.lstrip("; ")}</span>'
    sign = 1.0 if row["direction"] == "max" else -1.0
    return text, sign * row[f"{prefix}_diff"]


def _row_cells(row: dict, d: int, used: set, replicated: bool) -> list[str]:
    rank = str(row["rank"]) + (_flag("=", None, used) if row["rank_tied"] else "")
    versus = "best" if row["best_mean"] else row["vs_best_verdict"]
    total = row["n_seeds"] + row["n_failed"]
    cells = [
        _td(rank, row["rank"]),
        _td(_main_cell(row, d, used), row["mean"]),
        _td(f"[{md._num(row['ci_lo'], d)}, {md._num(row['ci_hi'], d)}]", row["ci_lo"]),
        _td(f"{row['n_seeds']}/{total}", row["n_seeds"]),
        _td(_badge(versus), VERDICT_ORDER.get(versus, 5), ""),
    ]
    text, gain = _comparison(row, "vs_adamw", d, used, "adamw")
    cells.append(_td(text, gain, "num"))
    text, gain = _comparison(row, "soft", d, used, row.get("soft_ref") or "")
    if row.get("soft_shared") and text != "—":
        text += " " + _flag("branched", None, used)
    cells.append(_td(text, gain, "num"))
    if replicated:
        spread = f"{row['n_replicates']}: {md._num(row['replicate_spread'], d)}"
        if row["rank_stable"] is False:
            spread += " " + _flag("‡", None, used)
        cells.append(_td(spread, row["replicate_spread"]))
    fail = (
        "n/a"
        if not math.isfinite(row["tune_failure_rate"])
        else f"{row['tune_failure_rate']:.0%} of {row['tune_trials']}"
    )
    cells.append(_td(fail, row["tune_failure_rate"]))
    cells.append(_td(E(md._steps_cell(row, d)), row["median_steps_to_target"]))
    return cells


HEADER = [
    ("rank", "1 + the number of optimizers decisively better (verdict 'better' against it)"),
    ("mean ± std", "mean (of the replicate means) ± std over the eval seeds, the leaderboard's marks"),
    ("95% CI of mean", "two-level over replicates and seeds with R > 1, a t interval over seeds with R = 1"),
    ("seeds ok", "eval runs with a finite value / all eval runs"),
    ("vs best", "verdict of the paired comparison with the best-mean optimizer"),
    ("Δ vs adamw [95% CI]", "paired difference optimizer − adamw, its interval and verdict"),
    (
        "SoftX − X [95% CI]",
        "paired difference of a switching optimizer and the optimizer it is before "
        "its switch (softsignum, hardswitchsign − signum; softmuon − muon)",
    ),
    ("replicates: spread", "tuning replicates and the spread (max − min) of their means"),
    ("tune failures", "share of tune trials that diverged or failed"),
    ("steps to target", "median steps to the validation target over the eval runs (a miss = infinite)"),
]


def _header(first: list[tuple[str, str]], replicated: bool) -> str:
    cols = first + [h for h in HEADER if replicated or h[0] != "replicates: spread"]
    return "<thead><tr>" + "".join(f'<th title="{E(t)}">{E(n)}</th>' for n, t in cols) + "</tr></thead>"


def leaderboard_table(board, keys: list, table_id: str = "board", only=None) -> str:
    """The per-(benchmark, optimizer) table; ``only``: one benchmark's key (no benchmark columns)."""
    replicated = any((r.get("n_replicates") or 0) > 1 for r in board.rows)
    by_bench: dict[tuple, list[dict]] = {}
    for row in board.rows:
        by_bench.setdefault(tuple(row[k] for k in leaderboard.BENCH_KEYS), []).append(row)
    used: set = set()
    body = []
    first = [] if only else [("benchmark", "task / dataset (size) [variant]; click for its drill-down")]
    first.append(("optimizer", "optimizer name (registry order)"))
    for index, key in enumerate(keys):
        if key not in by_bench or (only is not None and key != only):
            continue
        rows = by_bench[key]
        d = md._decimals(rows)
        for row in sorted(rows, key=lambda r: (r["rank"], leaderboard.display_key(r["optimizer"]))):
            cells = (
                []
                if only
                else [_td(f'<a href="#{slug(key)}">{E(row["task"])} / {E(bench_title(key))}</a>', index, "bench")]
            )
            cells.append(_td(E(row["optimizer"]), leaderboard.display_key(row["optimizer"])[0], ""))
            cells += _row_cells(row, d, used, replicated)
            cls = ' class="best-row"' if row["best_mean"] else ""
            body.append(
                f'<tr{cls} data-bench="{E(slug(key))}" data-optimizer="{E(row["optimizer"])}">'
                + "".join(cells)
                + "</tr>"
            )
    table = (
        f'<div class="scroll"><table id="{E(table_id)}" class="sortable board">{_header(first, replicated)}'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    return table + _flag_list(used)


def aggregate_table(board) -> str:
    scopes = sorted({a["scope"] for a in board.aggregate} - {"all"}) + ["all"]
    names = sorted({a["optimizer"] for a in board.aggregate}, key=leaderboard.display_key)
    agg = {(a["scope"], a["optimizer"]): a for a in board.aggregate}
    head = (
        [("optimizer", "optimizer name")]
        + [
            (f"avg rank: {s}", f"rank by mean on each benchmark of {s}, averaged (± std over benchmarks; n)")
            for s in scopes
        ]
        + [
            ("best or tied", "benchmarks where its rank is 1 / benchmarks it ran"),
            ("B/W/E/I vs adamw", "verdicts against adamw: better / worse / equivalent / inconclusive"),
            ("B/W/E/I SoftX vs X", "verdicts of a switching optimizer against the one it is before its switch"),
        ]
    )
    body = []
    for name in names:
        cells = [_td(E(name), leaderboard.display_key(name)[0], "")]
        for scope in scopes:
            a = agg.get((scope, name))
            if a is None:
                cells.append(_td("—", None))
                continue
            std = f" ± {a['rank_std']:.2f}" if math.isfinite(a["rank_std"]) else ""
            cells.append(_td(f"{a['avg_rank']:.2f}{std} ({a['n_benchmarks']})", a["avg_rank"]))
        a = agg[("all", name)]
        cells.append(_td(f"{a['n_best']}/{a['n_benchmarks']}", a["n_best"]))
        for prefix in ("vs_adamw", "soft"):
            counts = [a[f"{prefix}_{v}"] for v in ("better", "worse", "equivalent", "inconclusive")]
            cells.append(_td("—" if counts[0] is None else "/".join(map(str, counts)), counts[0]))
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = "<thead><tr>" + "".join(f'<th title="{E(t)}">{E(n)}</th>' for n, t in head) + "</tr></thead>"
    return f'<div class="scroll"><table id="aggregate" class="sortable">{thead}<tbody>{"".join(body)}</tbody></table></div>'


def _md_inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", E(text))


# -------------------------------------------------------------------------------------- the figures


def _facts(board, key) -> str:
    rows = [r for r in board.rows if tuple(r[k] for k in leaderboard.BENCH_KEYS) == key] if board else []
    if not rows:
        return '<p class="muted">No leaderboard entry (no eval runs of this benchmark).</p>'
    r = rows[0]
    d = md._decimals(rows)
    target = (
        "none"
        if not math.isfinite(r["target"])
        else f"validation {r['metric']} {'≥' if r['direction'] == 'max' else '≤'} {md._num(r['target'], max(d, 2))}"
    )
    return (
        f'<p class="facts">Metric: <b>{E(metric_label(r["metric"], r["direction"], board.split))}</b> '
        f"({E(r['metric'])}); margin ±{r['margin']:.3g} ({E(r['margin_rule'])}); target: {E(target)}.</p>"
    )


def bench_section(data: rd.ReportData, key, charts: Charts, extra: list[cond.Condition]) -> str:
    split = data.metric_split
    parts = [
        f'<section class="bench" id="{E(slug(key))}"><h2>{E(key[0])} / {E(bench_title(key))}</h2>',
        _facts(data.board, key),
    ]
    if data.board is not None:
        parts.append(leaderboard_table(data.board, [key], table_id=f"table-{slug(key)}", only=key))
    figs, missing = [], []
    for kind in figures.KINDS:
        fig = figures.bench_figure(kind, data, key)
        caption = figures.CAPTIONS[kind].format(split=split)
        if fig is None:
            if kind != "temperature":
                missing.append(figures.TITLES[kind])
            continue
        figs.append(charts.figure(fig, kind, caption, f"{figures.TITLES[kind]}: {key[0]} / {bench_title(key)}"))
    parts.append(f'<div class="figs">{"".join(figs)}</div>')
    if missing:
        parts.append(f'<p class="skip">No data for: {E(", ".join(missing))}.</p>')
    from harness.report.html_conditions import condition_section

    for c in extra:
        parts.append(condition_section(data, c, key, charts))
    return "".join(parts) + "</section>"


# ------------------------------------------------------------------------------------------- page


def build_page(data: rd.ReportData) -> tuple[str, int]:
    """The page's HTML and the number of charts in it."""
    board = data.board
    suites = ", ".join(board.suites) if board else ""
    charts = Charts()
    keys = sorted(
        set(rd.by_benchmark(data.evals))
        | set(rd.by_benchmark(data.tunes))
        | ({tuple(r[k] for k in leaderboard.BENCH_KEYS) for r in board.rows} if board else set())
    )
    extra = [cond.compute(data, column) for column in data.conditions]
    if board is not None:
        intro = (
            f"From {board.n_eval} eval runs and {board.n_tune} tune runs (suite {E(suites or '?')}; schema "
            f"version {E(', '.join(map(str, board.schema_versions)))}); metric on the <b>{E(board.split)}</b> "
            "split."
        )
        lead = (
            [f"<p>{intro}</p>", f"<details><summary>How to read it</summary><p>{_md_inline(md.LEGEND)}</p></details>"]
            + [f'<p class="muted">Note: {E(n)}.</p>' for n in board.notes]
            + ["<h2>Leaderboard</h2>", leaderboard_table(board, keys), "<h2>Aggregate</h2>", aggregate_table(board)]
        )
    else:
        lead = [f'<p class="alert">No leaderboard: {E(data.board_note)}</p>']
    if extra:
        lead.insert(
            0,
            '<p class="alert">The records hold other conditions ('
            + "; ".join(f"{E(c.label)}: {', '.join(f'{v:g}' for v in c.values)}" for c in extra)
            + "). This leaderboard is the one at the full budget and no delay; each benchmark's drill-down "
            "has a section with the leaderboard at every value.</p>",
        )
    bench_nav = "".join(f'<a href="#{E(slug(k))}">{E(k[0])} / {E(bench_title(k))}</a>' for k in keys)
    benches = "".join(bench_section(data, k, charts, extra) for k in keys)
    overview, notes = [], []
    if board is not None:
        fig, skipped = figures.profile_figure(board)
        overview.append(charts.figure(fig, "profile", figures.CAPTIONS["profile"], "performance profile"))
        notes += [skipped] if skipped else []
    else:
        notes.append("performance profile skipped: no leaderboard")
    from harness.report.html_conditions import overview_sections

    more, skipped_more = overview_sections(data, charts)
    overview += more
    notes += skipped_more
    notes += data.warnings
    overview += [f'<p class="skip">{E(n)}</p>' for n in notes]
    title = f"optbench report{': ' + suites if suites else ''}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{E(title)}</title>
<style>{assets.CSS}</style>
<script>{assets.HEAD_SCRIPT}</script>
</head><body>
<h1>{E(title)}</h1>
<p class="muted">Results folder {E(str(data.root))}. Everything on this page is in this one file: it needs no network.</p>
<div id="js-errors" role="alert"></div>
<nav class="tabs"><a href="#leaderboard">Leaderboard</a><a href="#benchmarks">Benchmarks</a>
<a href="#overview">Overview</a><a href="#provenance">Provenance</a></nav>
<section class="tab" id="leaderboard">{"".join(lead)}</section>
<section class="tab" id="benchmarks"><h2>Benchmarks</h2><nav class="benches">{bench_nav}</nav>{benches}</section>
<section class="tab" id="overview"><h2>Overview</h2>{"".join(overview)}</section>
<section class="tab" id="provenance"><h2>Provenance</h2>{provenance.section(data, keys)}</section>
<script>{assets.SCRIPT}</script>
</body></html>
"""
    return page, charts.count


def write_page(data: rd.ReportData, path: str | Path) -> tuple[Path, int]:
    """Write the page atomically (mode 0666 less the umask). Returns (path, charts in it)."""
    from harness.outputs import atomic_write_text

    page, n = build_page(data)
    atomic_write_text(Path(path), page)
    return Path(path), n
