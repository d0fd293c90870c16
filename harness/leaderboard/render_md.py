"""The leaderboard as paper-style Markdown: per task a mean ± std table (best mean in bold, every
other entry marked by its verdict against it), the paired comparisons with their verdicts and
minimum detectable effects, a details table, then the aggregate table. Pure rendering of a computed
``Leaderboard``; every mark is read off the comparisons, so the tables tell one story."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.leaderboard.load import display_key, soft_entry
from harness.leaderboard.render_text import decimals as _decimals
from harness.leaderboard.render_text import md_table as _md_table
from harness.leaderboard.render_text import num as _num
from harness.leaderboard.render_text import signed as _signed
from harness.stats.verdicts import VERDICTS

BASELINE = "adamw"
SHORT = {"better": "B", "worse": "W", "equivalent": "E", "inconclusive": "I"}

LEGEND = (
    "How to read it. Cells: mean ± std over the eval seeds (the same seeds for every optimizer). **Bold**: the "
    "best mean. Other entries of rank 1 (tied with the best) are marked by their paired comparison with it: ≈ "
    "equivalent, ? inconclusive; unmarked entries rank lower. Verdicts of a paired difference Δ = optimizer − reference (replicate r with r, "
    "runs sharing an eval seed within; 95% interval): **better** / **worse**: the interval excludes 0 and is not "
    "inside ±margin; **equivalent**: it lies inside ±margin (a real but smaller difference included); "
    "**inconclusive**: neither, so more runs are needed. MDE: the smallest true difference this design detects "
    "with 80% power; R≥k: the tuning replicates that would bring the MDE under the margin. Rank: 1 + the number "
    "of optimizers whose verdict against it is better (rank 1 = best or tied with the best). †: some eval runs "
    'diverged or failed and are left out. ‡: its rank changes between tuning replicates. "branched": the SoftX '
    "runs started from the X run of the same seed at S, so Δ measures the tail alone."
)


def _bench_label(row: dict) -> str:
    return f"{row['dataset']} [{row['variant']}]" if row["variant"] else row["dataset"]


def render_markdown(board, title: str | None = None) -> str:
    """Paper-style Markdown of ``board`` (see the module docstring)."""
    suites = ", ".join(board.suites) or "?"
    lines = [f"# {title or f'Leaderboard: {suites}'}", ""]
    lines.append(
        f"From {board.n_eval} eval runs and {board.n_tune} tune runs (suite {suites}; schema version "
        f"{', '.join(map(str, board.schema_versions))}); metric on the **{board.split}** split."
    )
    lines += ["", LEGEND]
    lines += [line for note in board.notes for line in ("", f"Note: {note}.")]
    sections: dict[tuple, list[dict]] = {}
    for row in board.rows:
        sections.setdefault((row["task"], row["size"]), []).append(row)
    for (task, size), rows in sections.items():
        lines += ["", f"## {task} ({size})", ""] + _section(rows)
    from harness.leaderboard.render_conditions import sections as condition_sections

    return "\n".join(lines + [""] + _aggregate(board.aggregate) + condition_sections(board)) + "\n"


def _section(rows: list[dict]) -> list[str]:
    benches: dict[str, list[dict]] = {}
    for row in rows:
        benches.setdefault(_bench_label(row), []).append(row)
    labels = list(benches)
    decimals = {b: _decimals(benches[b]) for b in labels}
    names = sorted({r["optimizer"] for r in rows}, key=display_key)
    cell = {(b, r["optimizer"]): r for b in labels for r in benches[b]}
    arrows = {b: "↑" if benches[b][0]["direction"] == "max" else "↓" for b in labels}
    header = ["optimizer"] + [f"{b} ({benches[b][0]['metric']} {arrows[b]})" for b in labels]
    body = [
        [name] + [_main_cell(cell[(b, name)], decimals[b]) if (b, name) in cell else "—" for b in labels]
        for name in names
    ]
    lines = _md_table(header, body, ["---"] + ["--:"] * len(labels))
    n_counts = sorted({r["n_seeds"] + r["n_failed"] for r in rows})
    lines += [
        "",
        f"Eval seeds per entry: {', '.join(map(str, n_counts))}. Margins: "
        + "; ".join(f"{b} ±{benches[b][0]['margin']:.3g} ({benches[b][0]['margin_rule']})" for b in labels)
        + ".",
    ]
    lines += _paired(names, labels, cell, decimals)
    return lines + ["", "Details:", ""] + _details(labels, benches, decimals)


def _paired(names, labels, cell, decimals) -> list[str]:
    pairs = [(n, BASELINE, "vs_adamw") for n in names if n != BASELINE] + [
        (n, ref, "soft") for n in names if (ref := soft_entry(n, names)) in names
    ]
    body = []
    for name, ref, prefix in pairs:
        shared = prefix == "soft" and any(cell.get((b, name), {}).get("soft_shared") for b in labels)
        cells = [f"{name} − {ref}" + (" (branched: same run to S)" if shared else "")]
        for b in labels:
            r = cell.get((b, name))
            cells.append(_comparison_cell(r, prefix, decimals[b]) if r and r.get(f"{prefix}_n") else "—")
        body.append(cells)
    if not body:
        return []
    return ["", "Paired comparisons (Δ = optimizer − reference):", ""] + _md_table(
        ["Δ"] + labels, body, ["---"] + ["--:"] * len(labels)
    )


def _comparison_cell(r: dict, prefix: str, d: int) -> str:
    m = r["margin"]
    text = (
        f"{_signed(r[f'{prefix}_diff'], m, d)} [{_signed(r[f'{prefix}_lo'], m, d)}, "
        f"{_signed(r[f'{prefix}_hi'], m, d)}] **{r[f'{prefix}_verdict']}**"
    )
    extra = []
    if math.isfinite(r[f"{prefix}_mde"]):
        extra.append(f"MDE {_num(r[f'{prefix}_mde'], d)}")
    if r[f"{prefix}_verdict"] == "inconclusive" and r[f"{prefix}_replicates_needed"] is not None:
        extra.append(f"R≥{r[f'{prefix}_replicates_needed']}")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _details(labels, benches, decimals) -> list[str]:
    replicated = any((r.get("n_replicates") or 0) > 1 for b in labels for r in benches[b])
    body = []
    for b in labels:
        d = decimals[b]
        for r in sorted(benches[b], key=lambda r: (r["rank"], display_key(r["optimizer"]))):
            rank = f"{r['rank']}=" if r["rank_tied"] else str(r["rank"])
            versus = "best" if r["best_mean"] else (r["vs_best_verdict"] or "—")
            fail = (
                "n/a"
                if not math.isfinite(r["tune_failure_rate"])
                else f"{r['tune_failure_rate']:.0%} of {r['tune_trials']}"
            )
            cells = [
                b,
                r["optimizer"],
                rank,
                versus,
                f"{r['n_seeds']}/{r['n_seeds'] + r['n_failed']}",
                f"[{_num(r['ci_lo'], d)}, {_num(r['ci_hi'], d)}]",
            ]
            if replicated:
                cells.append(
                    f"{r['n_replicates']}: {_num(r['replicate_spread'], d)}"
                    + (" ‡" if r["rank_stable"] is False else "")
                )
            body.append(cells + [fail, _steps_cell(r, d)])
    header = (
        ["dataset", "optimizer", "rank", "vs best", "seeds ok", "95% CI of mean"]
        + (["replicates: spread of means"] if replicated else [])
        + ["tune failures", "median steps to target"]
    )
    return _md_table(header, body, ["---", "---"] + ["--:"] * (len(header) - 2))


def _main_cell(row: dict, decimals: int) -> str:
    if row["n_seeds"] == 0:
        return "failed"
    text = _num(row["mean"], decimals)
    if math.isfinite(row["std"]):
        text += f" ± {_num(row['std'], decimals)}"
    if row["best_mean"]:
        text = f"**{text}**"
    elif row["rank"] == 1:  # best or tied: equivalent to the best, or not yet told apart from it
        text += " ≈" if row["vs_best_verdict"] == "equivalent" else " ?"
    if row["n_failed"]:
        text += " †"
    if row.get("rank_stable") is False:
        text += " ‡"
    return text


def _steps_cell(row: dict, decimals: int) -> str:
    if not math.isfinite(row["target"]):
        return "no target"
    op = "≥" if row["direction"] == "max" else "≤"
    goal = f"val {row['metric']} {op} {_num(row['target'], max(decimals, 2))}"
    reached = f"{row['reached_target']}/{row['n_seeds'] + row['n_failed']} reached"
    median = row["median_steps_to_target"]
    return f"{goal}: {int(median)} ({reached})" if math.isfinite(median) else f"{goal}: not reached ({reached})"


def _aggregate(aggregate: Sequence[dict]) -> list[str]:
    lines = [
        "## Aggregate",
        "",
        "Average rank (rank by mean on each benchmark, averaged; ± std over benchmarks), benchmarks where the "
        "optimizer is best or tied with the best (rank 1), and its verdicts against AdamW and of SoftX against X "
        "(B/W/E/I: better / worse / equivalent / inconclusive).",
        "",
    ]
    scopes = sorted({a["scope"] for a in aggregate} - {"all"}) + ["all"]
    names = sorted({a["optimizer"] for a in aggregate}, key=display_key)
    agg = {(a["scope"], a["optimizer"]): a for a in aggregate}
    body = []
    for name in names:
        cells = [name]
        for scope in scopes:
            a = agg.get((scope, name))
            if a is None:
                cells.append("—")
                continue
            std = f" ± {a['rank_std']:.2f}" if math.isfinite(a["rank_std"]) else ""
            cells.append(f"{a['avg_rank']:.2f}{std} ({a['n_benchmarks']})")
        a = agg[("all", name)]
        cells.append(f"{a['n_best']}/{a['n_benchmarks']}")
        for prefix in ("vs_adamw", "soft"):
            counts = [a[f"{prefix}_{v}"] for v in VERDICTS]
            cells.append("—" if counts[0] is None else "/".join(str(c) for c in counts))
        body.append(cells)
    header = (
        ["optimizer"]
        + [f"avg rank: {s} (n)" for s in scopes]
        + ["best or tied", "B/W/E/I vs adamw", "B/W/E/I SoftX vs X"]
    )
    return lines + _md_table(header, body, ["---"] + ["--:"] * (len(scopes) + 3))
