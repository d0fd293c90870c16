"""The leaderboard as paper-style Markdown: per task a mean ± std table (best mean in bold, entries
statistically tied with it marked ≈), the paired differences, a details table, then the aggregate
table. Pure rendering of a computed ``harness.leaderboard.Leaderboard``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from harness.leaderboard import BASELINE, Leaderboard, _display_key, soft_ref


def _decimals(rows: Sequence[dict]) -> int:
    """Decimals for one benchmark: the typical std shown with 2 significant digits (4 significant
    digits of the mean when no std exists), clamped to 0..8."""
    stds = sorted(r["std"] for r in rows if math.isfinite(r["std"]) and r["std"] > 0)
    if stds:
        scale, digits = stds[len(stds) // 2], 2
    else:
        means = [abs(r["mean"]) for r in rows if math.isfinite(r["mean"]) and r["mean"] != 0]
        if not means:
            return 4
        scale, digits = max(means), 4
    return int(min(8, max(0, digits - 1 - math.floor(math.log10(scale)))))


def _num(value: float, decimals: int, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    if float(text) == 0.0:  # no "-0.000": rounding to zero has no sign
        text = text.replace("-", "+" if signed else "")
    return text


def _bench_label(row: dict) -> str:
    return f"{row['dataset']} [{row['variant']}]" if row["variant"] else row["dataset"]


def _md_table(header: Sequence[str], body: Iterable[Sequence[str]], align: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def render_markdown(board: Leaderboard, title: str | None = None) -> str:
    """Paper-style Markdown: per task a mean ± std table (best mean in bold, entries statistically
    tied with it marked ≈), the paired differences, a details table, then the aggregate table."""
    suites = ", ".join(board.suites) or "?"
    lines = [f"# {title or f'Leaderboard: {suites}'}", ""]
    lines.append(
        f"From {board.n_eval} eval runs and {board.n_tune} tune runs (suite {suites}; schema version "
        f"{', '.join(map(str, board.schema_versions))}); metric on the **{board.split}** split. "
        "Cells: mean ± std over the eval seeds (same seeds for every optimizer). **Bold**: best "
        "mean. ≈: shares rank 1 with it (95% CIs overlap). †: some eval runs diverged or failed "
        "and are left out. ‡: its rank differs between tuning replicates. Δ: seed-paired difference "
        "optimizer − reference, mean [95% CI]; win/loss only when the CI excludes 0. \"branched\": "
        "the SoftX runs started from the X run of the same seed at S, so the pair is the same run up to S "
        "and Δ measures the tail alone."
    )
    for note in board.notes:
        lines += ["", f"Note: {note}."]
    by_section: dict[tuple, list[dict]] = {}
    for row in board.rows:
        by_section.setdefault((row["task"], row["size"]), []).append(row)
    for (task, size), rows in by_section.items():
        benches: dict[str, list[dict]] = {}
        for row in rows:
            benches.setdefault(_bench_label(row), []).append(row)
        labels = list(benches)
        decimals = {b: _decimals(benches[b]) for b in labels}
        names = sorted({r["optimizer"] for r in rows}, key=_display_key)
        cell = {(b, r["optimizer"]): r for b in labels for r in benches[b]}
        arrows = {b: "↑" if benches[b][0]["direction"] == "max" else "↓" for b in labels}
        lines += ["", f"## {task} ({size})", ""]
        header = ["optimizer"] + [f"{b} ({benches[b][0]['metric']} {arrows[b]})" for b in labels]
        body = []
        for name in names:
            cells = [name]
            for b in labels:
                r = cell.get((b, name))
                cells.append(_main_cell(r, benches[b], decimals[b]) if r else "—")
            body.append(cells)
        lines += _md_table(header, body, ["---"] + ["--:"] * len(labels))
        n_counts = sorted({r["n_seeds"] + r["n_failed"] for r in rows})
        lines += ["", f"Eval seeds per entry: {', '.join(map(str, n_counts))}."]

        comparisons = [(n, BASELINE) for n in names if n != BASELINE] + [
            (n, soft_ref(n)) for n in names if soft_ref(n) in names]
        diff_body = []
        for name, ref in comparisons:
            prefix = "vs_adamw" if ref == BASELINE else "soft"
            shared = prefix == "soft" and any(cell.get((b, name), {}).get("soft_shared") for b in labels)
            cells = [f"{name} − {ref}" + (" (branched: same run to S)" if shared else "")]
            for b in labels:
                r = cell.get((b, name))
                n = r.get(f"{prefix}_n") if r else None
                if not r or not n:
                    cells.append("—")
                    continue
                out = r["vs_adamw"] if prefix == "vs_adamw" else r["soft_outcome"]
                d = decimals[b]
                cells.append(f"{_num(r[f'{prefix}_diff'], d, True)} [{_num(r[f'{prefix}_lo'], d, True)}, "
                             f"{_num(r[f'{prefix}_hi'], d, True)}] {out}")
            diff_body.append(cells)
        if diff_body:
            lines += ["", "Paired differences (Δ = optimizer − reference over shared seeds):", ""]
            lines += _md_table(["Δ"] + labels, diff_body, ["---"] + ["--:"] * len(labels))

        lines += ["", "Details:", ""]
        replicated = any((r.get("n_replicates") or 0) > 1 for r in rows)
        detail = []
        for b in labels:
            d = decimals[b]
            for r in sorted(benches[b], key=lambda r: (r["rank"], _display_key(r["optimizer"]))):
                rank = f"{r['rank']}=" if r["rank_tied"] else str(r["rank"])
                fail = "n/a" if not math.isfinite(r["tune_failure_rate"]) else \
                    f"{r['tune_failure_rate']:.0%} of {r['tune_trials']}"
                cells = [b, r["optimizer"], rank, f"{r['n_seeds']}/{r['n_seeds'] + r['n_failed']}",
                         f"[{_num(r['ci_lo'], d)}, {_num(r['ci_hi'], d)}]"]
                if replicated:
                    spread = r["replicate_spread"]
                    cells.append(f"{r['n_replicates']}: {_num(spread, d)}" + (" ‡" if r["rank_stable"] is False else ""))
                detail.append(cells + [fail, _steps_cell(r)])
        header = ["dataset", "optimizer", "rank", "seeds ok", "95% CI"] + \
            (["replicates: spread of means"] if replicated else []) + ["tune failures", "median steps to target"]
        lines += _md_table(header, detail, ["---", "---"] + ["--:"] * (len(header) - 2))

    lines += ["", "## Aggregate", "",
              "Average rank (rank by mean on each benchmark, averaged; ± std over benchmarks), "
              "benchmarks where the optimizer is best or tied with the best, and wins/ties/losses "
              "of the paired difference against AdamW and of SoftX against X.", ""]
    scopes = sorted({a["scope"] for a in board.aggregate} - {"all"}) + ["all"]
    names = sorted({a["optimizer"] for a in board.aggregate}, key=_display_key)
    agg = {(a["scope"], a["optimizer"]): a for a in board.aggregate}
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
        cells.append("—" if name == BASELINE else
                     f"{a['wins_vs_adamw']}/{a['ties_vs_adamw']}/{a['losses_vs_adamw']}")
        cells.append(f"{a['soft_wins']}/{a['soft_ties']}/{a['soft_losses']} vs {soft_ref(name)}"
                     if soft_ref(name) else "—")
        body.append(cells)
    header = (["optimizer"] + [f"avg rank: {s} (n)" for s in scopes]
              + ["best or tied", "W/T/L vs adamw", "W/T/L SoftX vs X"])
    lines += _md_table(header, body, ["---"] + ["--:"] * (len(scopes) + 3))
    return "\n".join(lines) + "\n"


def _main_cell(row: dict, bench_rows: Sequence[dict], decimals: int) -> str:
    if row["n_seeds"] == 0:
        return "failed"
    text = _num(row["mean"], decimals)
    if math.isfinite(row["std"]):
        text += f" ± {_num(row['std'], decimals)}"
    sign = 1.0 if row["direction"] == "max" else -1.0
    best = max((r["mean"] for r in bench_rows if math.isfinite(r["mean"])), key=lambda m: sign * m)
    if row["mean"] == best:
        text = f"**{text}**"
    elif row["rank"] == 1:
        text += " ≈"
    if row["n_failed"]:
        text += " †"
    if row.get("rank_stable") is False:
        text += " ‡"
    return text


def _steps_cell(row: dict) -> str:
    if not math.isfinite(row["target"]):
        return "no target"
    median = row["median_steps_to_target"]
    reached = f"{row['reached_target']}/{row['n_seeds'] + row['n_failed']} reached"
    return f"{int(median)} ({reached})" if math.isfinite(median) else f"not reached ({reached})"
