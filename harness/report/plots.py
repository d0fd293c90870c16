"""``optbench report RESULTS [--out DIR]``: the plots behind a leaderboard, plus an ``index.md``.

Figures (PNG, matplotlib's Agg canvas, no display needed; one panel per benchmark):

* ``curves_<task>.png``: validation metric vs step of the eval runs, mean over seeds with a
  min-max band (diverged seeds left out).
* ``lr_sensitivity_<task>.png``: every tune trial's objective vs its ``hp_lr`` (log x) per
  optimizer; diverged trials drawn as x on the panel's worst edge (their penalty would squash the
  axis).
* ``best_after_k_<task>.png``: expected best objective after k trials over random orderings of
  each optimizer's trials (closed form by order statistics, ``harness.stats.intervals.expected_best_after_k``,
  diverged trials counted at their penalty), ± one std, with the observed best-so-far in trial
  order dashed.
* ``performance_profile.png``: Dolan-More profiles over all benchmarks from each optimizer's mean
  eval metric (direction-aware ratios, ``harness.stats.intervals.performance_ratios``); needs two benchmarks.
* ``temperature.png``: SoftSignum/SoftMuon temperature tau (curves split "opt", name "tau") of the
  eval runs around the sign -> soft switch at step floor(alpha_sign * K) (dotted line).

A figure whose data is absent is skipped, and ``index.md`` says why. ``index.md`` embeds every
figure and the leaderboard Markdown (``harness.leaderboard``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness import leaderboard
from harness.errors import UserError
from harness.leaderboard.load import variants
from harness.outputs import atomic_write_bytes, atomic_write_text
from harness.stats import intervals as stats
from harness.vocab import Metric

# Optimizers with a temperature schedule (their runs log "tau"): the switching optimizers but the hard one.
SOFT_OPTIMIZERS = ("softsignum", "softmuon")
PANEL_SIZE = (4.2, 3.2)  # inches per benchmark panel
MAX_COLUMNS = 3


@dataclass
class Report:
    """What a report run produced: figures written (path, title, caption) and skipped notes."""

    out_dir: Path
    figures: list[tuple[Path, str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- helpers

def _color(optimizer: str) -> str:
    """A fixed colour per optimizer, so every figure agrees (others: by a stable hash of the name)."""
    palette = ("tab:blue", "tab:gray", "tab:orange", "tab:red", "tab:green", "tab:purple",
               "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
    import optimizers

    order = list(optimizers.REGISTRY)
    index = order.index(optimizer) if optimizer in order else len(order) + sum(map(ord, optimizer))
    return palette[index % len(palette)]


def _bench_key(row) -> tuple[str, str, str, str]:
    return tuple(str(row[k]) for k in leaderboard.BENCH_KEYS)


def _bench_title(key: tuple[str, ...]) -> str:
    task, dataset, size, variant = key
    return f"{dataset} [{variant}] ({size})" if variant else f"{dataset} ({size})"


def _grid(n: int):
    """A Figure with ``n`` panels (Agg canvas, no pyplot state) and the list of axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(n, MAX_COLUMNS)
    rows = math.ceil(n / cols)
    width, height = PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows + 0.4
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    # Fixed margins in inches: a layout engine would cost an extra draw pass per figure.
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=1 - 0.75 / height, wspace=0.35, hspace=0.55)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def _save(fig, path: Path) -> None:
    """PNG rendered in memory, then written atomically, so a reader never sees half a figure."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())


def _prepare(frame):
    frame = frame.copy()
    for column in ("task", "dataset", "size", "optimizer", "phase", "status", "direction", "metric"):
        frame[column] = frame[column].fillna("").astype(str)
    frame["variant"] = variants(frame)
    return frame


def _by_task(frame) -> dict[str, dict[tuple, object]]:
    """task -> {benchmark key -> rows}, in sorted order."""
    out: dict[str, dict[tuple, object]] = {}
    for key, rows in sorted(frame.groupby(list(leaderboard.BENCH_KEYS), sort=False), key=lambda kv: kv[0]):
        out.setdefault(key[0], {})[tuple(map(str, key))] = rows
    return out


def _optimizers(rows) -> list[str]:
    return sorted(set(rows["optimizer"]), key=leaderboard.display_key)


# ------------------------------------------------------------------------------------------ plots

def plot_curves(evals, curves, out_dir: Path, split_note: str) -> list[tuple[Path, str, str]]:
    """Validation curves per task (one panel per benchmark) with seed bands."""
    made = []
    ok = evals[evals["status"] == "ok"]
    for task, benches in _by_task(ok).items():
        panels = []
        for key, rows in benches.items():
            metric = rows["metric"].iloc[0]
            data = curves[(curves["split"] == "val") & (curves["name"] == metric)
                          & curves["run_id"].isin(set(rows["run_id"]))]
            if len(data):
                panels.append((key, rows, metric, data))
        if not panels:
            continue
        fig, axes = _grid(len(panels))
        for ax, (key, rows, metric, data) in zip(axes, panels):
            for optimizer in _optimizers(rows):
                ids = set(rows.loc[rows["optimizer"] == optimizer, "run_id"])
                table = data[data["run_id"].isin(ids)].pivot_table(
                    index="step", columns="run_id", values="value", aggfunc="last").sort_index()
                if table.empty:
                    continue
                steps = table.index.to_numpy(dtype=float)
                values = table.to_numpy(dtype=float)
                color = _color(optimizer)
                with warnings.catch_warnings():  # all-NaN steps (a seed stopped early) are fine
                    warnings.simplefilter("ignore", RuntimeWarning)
                    ax.plot(steps, np.nanmean(values, axis=1), color=color,
                            label=f"{optimizer} (n={values.shape[1]})")
                    ax.fill_between(steps, np.nanmin(values, axis=1), np.nanmax(values, axis=1),
                                    color=color, alpha=0.2, linewidth=0)
            direction = rows["direction"].iloc[0]
            ax.set_title(_bench_title(key), fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel(f"val {metric} ({'higher' if direction == 'max' else 'lower'} is better)")
            ax.legend(fontsize=7)
        fig.suptitle(f"{task}: validation curves (eval runs)", fontsize=10)
        path = out_dir / f"curves_{task}.png"
        _save(fig, path)
        made.append((path, f"Validation curves: {task}",
                     "Eval runs (tuned configuration, fresh seeds): mean over seeds, band = min..max "
                     f"over seeds; diverged seeds left out. The leaderboard uses the {split_note}."))
    return made


def plot_lr_sensitivity(tunes, out_dir: Path) -> list[tuple[Path, str, str]]:
    """Objective vs learning rate of every tune trial, per optimizer, log x."""
    made = []
    if "hp_lr" not in tunes.columns:
        return made
    for task, benches in _by_task(tunes).items():
        panels = [(k, r) for k, r in benches.items() if np.isfinite(r["hp_lr"].astype(float)).any()]
        if not panels:
            continue
        fig, axes = _grid(len(panels))
        for ax, (key, rows) in zip(axes, panels):
            ok = rows["status"] == "ok"
            y_ok = rows.loc[ok, "objective"].astype(float)
            finite = y_ok[np.isfinite(y_ok)]
            direction = rows["direction"].iloc[0]
            if len(finite):
                span = float(finite.max() - finite.min()) or abs(float(finite.max())) * 0.05 or 1.0
                worst = float(finite.max() + 0.08 * span) if Metric("", direction).sign < 0 \
                    else float(finite.min() - 0.08 * span)
            else:
                worst = 0.0
            for optimizer in _optimizers(rows):
                mine = rows[rows["optimizer"] == optimizer]
                lr = mine["hp_lr"].astype(float)
                good = (mine["status"] == "ok") & np.isfinite(mine["objective"].astype(float))
                color = _color(optimizer)
                order = np.argsort(lr[good].to_numpy())
                ax.plot(lr[good].to_numpy()[order], mine.loc[good, "objective"].astype(float).to_numpy()[order],
                        "o-", color=color, markersize=4, linewidth=0.8, alpha=0.9, label=optimizer)
                if (~good).any():
                    ax.plot(lr[~good], [worst] * int((~good).sum()), "x", color=color, markersize=7)
            ax.set_xscale("log")
            ax.set_title(_bench_title(key), fontsize=9)
            ax.set_xlabel("lr (hp_lr)")
            ax.set_ylabel(f"objective: val {rows['metric'].iloc[0]}")
            ax.legend(fontsize=7)
        fig.suptitle(f"{task}: LR sensitivity (tune trials)", fontsize=10)
        path = out_dir / f"lr_sensitivity_{task}.png"
        _save(fig, path)
        made.append((path, f"LR sensitivity: {task}",
                     "Every tune trial's objective (validation metric at the end of the budget) "
                     "against its learning rate, from every tuning replicate; other hyperparameters vary "
                     "too. x marks diverged trials (drawn at the worst edge, not at their penalty)."))
    return made


def plot_best_after_k(tunes, out_dir: Path) -> list[tuple[Path, str, str]]:
    """Expected best objective after k trials (random trial order), ± std, per optimizer."""
    from matplotlib.ticker import MaxNLocator

    made = []
    for task, benches in _by_task(tunes).items():
        fig, axes = _grid(len(benches))
        for ax, (key, rows) in zip(axes, benches.items()):
            direction = rows["direction"].iloc[0]
            sign = Metric("", direction).sign
            ok_values = []
            for optimizer in _optimizers(rows):
                mine = rows[rows["optimizer"] == optimizer].copy()
                values = mine["objective"].astype(float).to_numpy()
                values = values[np.isfinite(values)]
                if values.size == 0:
                    continue
                mean, std = stats.expected_best_after_k(values, direction)
                k = np.arange(1, values.size + 1)
                color = _color(optimizer)
                ax.plot(k, mean, color=color, label=f"{optimizer} ({values.size} trials)")
                ax.fill_between(k, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
                replicate = mine["replicate"].fillna(0).astype(int) if "replicate" in mine else pd.Series(0, mine.index)
                for rep in sorted(set(replicate)):  # the order each replicate's tuner actually ran
                    own = mine[replicate == rep]
                    trial = own["trial"].astype(float).to_numpy() if "trial" in own else np.arange(len(own))
                    in_order = own["objective"].astype(float).to_numpy()[np.argsort(trial, kind="stable")]
                    in_order = in_order[np.isfinite(in_order)]
                    if in_order.size:
                        observed = sign * np.maximum.accumulate(sign * in_order)
                        ax.step(np.arange(1, in_order.size + 1), observed, where="post", color=color,
                                linestyle="--", linewidth=0.8, alpha=0.8)
                ok_values += list(mine.loc[mine["status"] == "ok", "objective"].astype(float))
            ok_values = [v for v in ok_values if math.isfinite(v)]
            if ok_values:  # keep the view on real results; penalties would squash it
                lo, hi = min(ok_values), max(ok_values)
                pad = 0.1 * (hi - lo) or 0.05 * abs(hi) or 1.0
                ax.set_ylim(lo - pad, hi + pad)
            ax.set_title(_bench_title(key), fontsize=9)
            ax.set_xlabel("k (trials)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(f"best val {rows['metric'].iloc[0]} after k")
            ax.legend(fontsize=7)
        fig.suptitle(f"{task}: best after k tune trials", fontsize=10)
        path = out_dir / f"best_after_k_{task}.png"
        _save(fig, path)
        made.append((path, f"Best after k trials: {task}",
                     "Solid: expected best objective among k trials taken in a uniformly random order "
                     "from every tuning replicate's trials pooled (exact, by order statistics; diverged trials "
                     "count at their penalty), band ± one std over orderings. Dashed: best-so-far in the order "
                     "the tuner actually ran, one line per replicate."))
    return made


def plot_performance_profile(board, out_dir: Path) -> tuple[Path, str, str] | str:
    """Dolan-More performance profile over all benchmarks; returns a skip note when < 2."""
    values: dict[str, dict[str, float]] = {}
    directions: dict[str, str] = {}
    for row in board.rows:
        problem = "/".join((row["task"], row["dataset"], row["size"], row["variant"]))
        values.setdefault(problem, {})[row["optimizer"]] = row["mean"]
        directions[problem] = row["direction"]
    if len(values) < 2:
        return (f"performance profile skipped: it needs eval results on at least 2 benchmarks, "
                f"found {len(values)}")
    ratios = stats.performance_ratios(values, directions)
    finite = sorted({r for row in ratios.values() for r in row.values() if math.isfinite(r)})
    tau_max = max(finite) * 1.02 if finite and max(finite) > 1.0 else 1.05
    taus = np.array(sorted({1.0, *finite, tau_max}))
    profile = stats.performance_profile(ratios, taus)
    fig, (ax,) = _grid(1)
    for optimizer in sorted(profile, key=leaderboard.display_key):
        ax.step(taus, profile[optimizer], where="post", color=_color(optimizer), label=optimizer)
    ax.set_xlim(1.0, tau_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau (performance ratio to the best optimizer)")
    ax.set_ylabel("fraction of benchmarks within tau")
    ax.set_title(f"{len(values)} benchmarks, {board.split} metric means", fontsize=9)
    fig.suptitle("Performance profile", fontsize=10)
    ax.legend(fontsize=7)
    path = out_dir / "performance_profile.png"
    _save(fig, path)
    return (path, "Performance profile",
            "Dolan-More profile: for each optimizer, the fraction of benchmarks on which its mean is "
            "within a factor tau of the best optimizer's (ratios direction-aware; relative gaps where a "
            "metric can be <= 0; an optimizer with no result counts as never within). Higher and "
            "further left is better.")


def plot_temperature(runs, curves, out_dir: Path) -> tuple[Path, str, str] | str:
    """tau traces of the Soft* optimizers around the switch."""
    soft = runs[runs["optimizer"].isin(SOFT_OPTIMIZERS)]
    phase = "eval" if (soft["phase"] == "eval").any() else None
    if phase:
        soft = soft[soft["phase"] == phase]
    tau = curves[(curves["split"] == "opt") & (curves["name"] == "tau")
                 & curves["run_id"].isin(set(soft["run_id"]))]
    tau = tau[np.isfinite(tau["value"].astype(float)) & (tau["value"].astype(float) > 0)]
    if soft.empty or tau.empty:
        return ("temperature trace skipped: no SoftSignum/SoftMuon runs with a 'tau' curve "
                "(curves split 'opt', name 'tau')")
    soft = soft[soft["run_id"].isin(set(tau["run_id"]))]
    benches = {}
    for key, rows in sorted(soft.groupby(list(leaderboard.BENCH_KEYS), sort=False), key=lambda kv: kv[0]):
        benches[tuple(map(str, key))] = rows
    fig, axes = _grid(len(benches))
    for ax, (key, rows) in zip(axes, benches.items()):
        x_lo = math.inf
        for optimizer in _optimizers(rows):
            mine = rows[rows["optimizer"] == optimizer]
            color = _color(optimizer)
            for i, run_id in enumerate(sorted(mine["run_id"])):
                trace = tau[tau["run_id"] == run_id].sort_values("step")
                ax.plot(trace["step"], trace["value"], ".-", color=color, linewidth=0.8, markersize=3,
                        alpha=0.8, label=optimizer if i == 0 else None)
            switch = _switch_step(mine)
            if switch is not None:
                ax.axvline(switch, color=color, linestyle=":", linewidth=1.0)
                steps = float(np.nanmax(mine["steps"].astype(float)))
                x_lo = min(x_lo, switch - 0.1 * steps)
        if math.isfinite(x_lo):
            ax.set_xlim(left=max(0.0, x_lo))
        ax.set_yscale("log")
        ax.set_title(f"{key[0]} / {_bench_title(key)}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("temperature tau")
        ax.legend(fontsize=7)
    fig.suptitle("Soft* temperature around the sign -> soft switch", fontsize=10)
    path = out_dir / "temperature.png"
    _save(fig, path)
    return (path, "Temperature trace",
            f"tau of SoftSignum/SoftMuon ({phase or 'all'} runs, one line per seed, log scale) at "
            "the eval points; dotted line: the switch step floor(alpha_sign * K). After the switch tau "
            "starts near tmax (sign-like) and falls as the schedule walks up the fitted quantiles of "
            "the update, softening it.")


def _switch_step(rows) -> float | None:
    if "hp_alpha_sign" not in rows.columns:
        return None
    alpha = rows["hp_alpha_sign"].astype(float).to_numpy()
    steps = rows["steps"].astype(float).to_numpy()
    ok = np.isfinite(alpha) & np.isfinite(steps)
    if not ok.any():
        return None
    switches = np.floor(alpha[ok] * steps[ok])
    return float(switches[0]) if np.all(switches == switches[0]) else None


# ------------------------------------------------------------------------------------------ driver

def make_report(results, out_dir=None, *, metric_split: str = "test", allow_mixed: bool = False) -> Report:
    """Write every figure whose data exists and ``index.md`` into ``out_dir`` (default
    ``RESULTS/report``). Raises ``UserError`` when there are no run records at all."""
    from harness.results import store as records

    if metric_split not in leaderboard.METRIC_SPLITS:
        raise UserError(f"unknown metric split {metric_split!r}; known: {', '.join(leaderboard.METRIC_SPLITS)}")
    from harness.outputs import writable_dir

    root = records.results_root(results)
    if root.exists():  # a missing results folder is load_runs' error to name
        writable_dir(Path(out_dir) if out_dir is not None else root / "report", "report folder (--out)")
    frame, skipped_files = leaderboard.load_runs(results)
    if len(frame) == 0:
        raise UserError(f"no run records under {root}: run optbench suite or optbench sweep first")
    leaderboard.check_consistent(frame, allow_mixed=allow_mixed, source=str(root))
    out = Path(out_dir) if out_dir is not None else root / "report"
    report = Report(out_dir=out, warnings=list(skipped_files))
    frame = _prepare(frame)
    evals, _ = leaderboard.latest_evals(frame[frame["phase"] == "eval"])
    tunes = frame[frame["phase"] == "tune"]

    board, board_note = None, ""
    try:
        board = leaderboard.compute(frame, metric_split=metric_split, allow_mixed=allow_mixed, source=str(root))
    except UserError as exc:  # e.g. a sweep still tuning: the tune plots are still useful
        board_note = str(exc)

    wanted = set(evals["run_id"]) | set(frame.loc[frame["optimizer"].isin(SOFT_OPTIMIZERS), "run_id"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curves = records.read_curves(root, wanted)
    report.warnings += [str(w.message) for w in caught]
    missing = len(wanted - set(curves["run_id"]))
    if missing:
        report.warnings.append(f"{missing} run(s) have no readable curves file under {records.curves_dir(root)}")

    split_note = f"{metric_split} metric at the end of the budget"
    if evals.empty:
        report.skipped.append("validation curves skipped: no eval runs (phase eval)")
    else:
        made = plot_curves(evals, curves, out, split_note)
        report.figures += made
        if not made:
            report.skipped.append("validation curves skipped: the eval runs have no validation curves")
    if tunes.empty:
        report.skipped.append("LR sensitivity and best-after-k skipped: no tune runs (phase tune)")
    else:
        made = plot_lr_sensitivity(tunes, out)
        report.figures += made
        if not made:
            report.skipped.append("LR sensitivity skipped: the tune runs have no hp_lr column")
        report.figures += plot_best_after_k(tunes, out)
    if board is None:
        report.skipped.append("performance profile skipped: no leaderboard (see above)")
    else:
        result = plot_performance_profile(board, out)
        (report.skipped.append if isinstance(result, str) else report.figures.append)(result)
    result = plot_temperature(frame, curves, out)
    (report.skipped.append if isinstance(result, str) else report.figures.append)(result)

    _write_index(report, board, board_note)
    return report


def _shift_headings(markdown: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _write_index(report: Report, board, board_note: str) -> None:
    suites = ", ".join(board.suites) if board else ""
    lines = [f"# optbench report{': ' + suites if suites else ''}", ""]
    if board is not None:
        lines += [_shift_headings(leaderboard.render_markdown(board)), ""]
    else:
        lines += ["## Leaderboard", "", f"Not available: {board_note}", ""]
    lines += ["## Figures", ""]
    for path, title, caption in report.figures:
        rel = os.path.relpath(path, report.out_dir)
        lines += [f"### {title}", "", f"![{title}]({rel})", "", caption, ""]
    if report.skipped or report.warnings:
        lines += ["## Skipped", ""]
        lines += [f"- {note}" for note in report.skipped + report.warnings]
        lines.append("")
    path = report.out_dir / "index.md"
    atomic_write_text(path, "\n".join(lines))


# --------------------------------------------------------------------------------------------- CLI

def register(subparsers) -> None:
    """Add ``optbench report``."""
    p = subparsers.add_parser(
        "report",
        help="PNG plots (curves, LR sensitivity, best after k trials, profiles, temperature) + index.md",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", metavar="RESULTS", help="results folder (holds runs/ and curves/)")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default RESULTS/report)")
    p.add_argument("--metric-split", choices=leaderboard.METRIC_SPLITS, default="test",
                   help="metric the leaderboard and profiles compare (default test)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="pool records of different suites or schema versions")
    p.set_defaults(func=_main)


def _main(args) -> int:
    report = make_report(args.results, args.out, metric_split=args.metric_split, allow_mixed=args.allow_mixed)
    for message in report.warnings:
        print(f"optbench report: warning: {message}", file=sys.stderr)
    for note in report.skipped:
        print(f"optbench report: {note}", file=sys.stderr)
    print(f"wrote {len(report.figures)} figure(s) and {report.out_dir / 'index.md'}", file=sys.stderr)
    return 0
