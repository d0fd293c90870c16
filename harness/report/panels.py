"""One panel of each kind of report figure, drawn into a matplotlib ``Axes`` for one benchmark; the
PNG grids (``plots``) and the HTML page's figures (``html``) are assembled from these. Each drawer
adds its legend entries and the notes that say what its lines, bands and marks are to the
``style.Canvas`` (so the figure itself says it, not only a caption). Returns False when it had
nothing to draw.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np

from harness.leaderboard import soft_ref
from harness.report import data as rd
from harness.report.style import REPLICATE_MARKERS, Canvas, bench_title, metric_label, style
from harness.stats import intervals as stats
from harness.vocab import Metric

FAILED = ("diverged", "failed")


def _handle(optimizer: str, *, line: bool = True, marker: str | None = None):
    """The legend entry of ``optimizer``: its line and marker (``marker``: when the figure's markers
    mean something else, e.g. the replicate)."""
    from matplotlib.lines import Line2D

    s = style(optimizer)
    return Line2D(
        [],
        [],
        color=s.color,
        linestyle=s.linestyle if line else "none",
        marker=marker or s.marker,
        markersize=5,
        markerfacecolor="none" if s.hollow else s.color,
        linewidth=1.4,
    )


def _integer_ticks(ax) -> None:
    """Integer ticks (steps, trials); matplotlib is imported only once a figure is drawn."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _title(ax, key) -> None:
    ax.set_title(bench_title(key), fontsize=9)


def _floats(series) -> np.ndarray:
    return np.array([rd.finite(v) for v in series], dtype=float)


# ------------------------------------------------------------------------------------------ curves


def curves(ax, c: Canvas, key, rows, curve_rows) -> bool:
    """Validation metric vs step of the eval runs: per optimizer the mean over seeds, band min..max."""
    ok = rows[rows["status"] == "ok"]
    metric, direction = rows["metric"].iloc[0], rows["direction"].iloc[0]
    data = curve_rows[
        (curve_rows["split"] == "val") & (curve_rows["name"] == metric) & curve_rows["run_id"].isin(set(ok["run_id"]))
    ]
    if data.empty:
        return False
    for optimizer in rd.optimizers_of(ok):
        mine = ok[ok["optimizer"] == optimizer]
        table = (
            data[data["run_id"].isin(set(mine["run_id"]))]
            .pivot_table(index="step", columns="run_id", values="value", aggfunc="last")
            .sort_index()
        )
        if table.empty:
            continue
        steps, values = table.index.to_numpy(dtype=float), table.to_numpy(dtype=float)
        s = style(optimizer)
        with warnings.catch_warnings():  # all-NaN steps (a seed stopped early) are fine
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, lo, hi = np.nanmean(values, axis=1), np.nanmin(values, axis=1), np.nanmax(values, axis=1)
        ax.fill_between(steps, lo, hi, color=s.color, alpha=0.15, linewidth=0)
        ax.plot(steps, mean, **s.line(len(steps)))
        c.add(optimizer, _handle(optimizer), f"{values.shape[1]} seeds")
        branch = _floats(mine["branch_step"]) if "branch_step" in mine else np.array([])
        branch = branch[np.isfinite(branch) & (branch > 0)]
        if branch.size and (mine["branched_from"] != "").any():
            ax.axvline(float(np.median(branch)), color=s.color, linestyle=":", linewidth=1.0)
            c.note(
                "dotted vertical: step S where branched runs start from their parent's checkpoint "
                "(before S the curve is the parent's)"
            )
    _integer_ticks(ax)
    ax.set_xlabel("step")
    ax.set_ylabel(metric_label(metric, direction, "val"), fontsize=8)
    _title(ax, key)
    c.note("line: mean over eval seeds; band: min..max over seeds")
    if rows["status"].isin(FAILED).any():
        c.note("diverged or failed eval runs are left out")
    return True


# ---------------------------------------------------------------------------------- LR sensitivity


def _varying_hparams(rows) -> list[str]:
    """Hyperparameters other than lr that differ between the trials of one optimizer."""
    out = set()
    for _, mine in rows.groupby("optimizer"):
        configs = []
        for text in mine["hparams"].fillna("{}").astype(str):
            try:
                configs.append(json.loads(text))
            except json.JSONDecodeError:
                continue
        names = {k for cfg in configs for k in cfg if k != "lr"}
        out |= {k for k in names if len({json.dumps(cfg.get(k), sort_keys=True) for cfg in configs}) > 1}
    return sorted(out)


def lr_sensitivity(ax, c: Canvas, key, rows, evals=None) -> bool:
    """Every tune trial's objective vs its lr: a scatter, colour per optimizer, marker per tuning
    replicate, hollow for switching optimizers; never joined (other hyperparameters may vary)."""
    if "hp_lr" not in rows.columns:
        return False
    lr = _floats(rows["hp_lr"])
    if not np.isfinite(lr).any():
        return False
    metric, direction = rows["metric"].iloc[0], rows["direction"].iloc[0]
    objective = _floats(rows["objective"])
    good = (rows["status"] == "ok").to_numpy() & np.isfinite(objective) & np.isfinite(lr)
    failed = rows["status"].isin(FAILED).to_numpy() & np.isfinite(lr)
    if good.any():
        span = float(objective[good].max() - objective[good].min()) or abs(float(objective[good].max())) * 0.05 or 1.0
        worst = (
            float(objective[good].max() + 0.08 * span)
            if Metric("", direction).sign < 0
            else float(objective[good].min() - 0.08 * span)
        )
    else:
        worst = 0.0
    replicates = sorted(set(rows["replicate"]))
    chosen = _chosen_trials(evals)
    for optimizer in rd.optimizers_of(rows):
        mask = (rows["optimizer"] == optimizer).to_numpy()
        s = style(optimizer)
        hollow = s.hollow
        for i, rep in enumerate(replicates):
            own = mask & (rows["replicate"] == rep).to_numpy()
            marker = REPLICATE_MARKERS[i % len(REPLICATE_MARKERS)]
            face = "none" if hollow else s.color
            if (own & good).any():
                ax.scatter(
                    lr[own & good],
                    objective[own & good],
                    s=34 if hollow else 18,
                    marker=marker,
                    facecolors=face,
                    edgecolors=s.color,
                    linewidths=1.0,
                    zorder=3,
                )
            if (own & failed).any():
                ax.scatter(
                    lr[own & failed],
                    [worst] * int((own & failed).sum()),
                    s=30,
                    marker="x",
                    color=s.color,
                    linewidths=1.0,
                    zorder=3,
                )
            picked = (
                own & good & rows["trial"].isin(chosen.get((optimizer, rep), set())).to_numpy()
                if "trial" in rows.columns
                else own & False
            )
            if picked.any():
                ax.scatter(
                    lr[picked],
                    objective[picked],
                    s=110,
                    marker="o",
                    facecolors="none",
                    edgecolors="black",
                    linewidths=0.8,
                    zorder=4,
                )
                c.note("ringed: the trial whose configuration was evaluated")
        c.add(optimizer, _handle(optimizer, line=False, marker=REPLICATE_MARKERS[0]))
    if len(replicates) > 1:
        from matplotlib.lines import Line2D

        for i, rep in enumerate(replicates):
            c.add(
                f"replicate {rep}",
                Line2D(
                    [],
                    [],
                    color="0.35",
                    linestyle="none",
                    markersize=5,
                    marker=REPLICATE_MARKERS[i % len(REPLICATE_MARKERS)],
                ),
                last=True,
            )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (hp_lr)")
    ax.set_ylabel(f"objective: {metric_label(metric, direction, 'val')}", fontsize=8)
    _title(ax, key)
    varying = _varying_hparams(rows)
    if varying:
        c.note("one point per tune trial, not joined: {} also vary between trials", varying)
    else:
        c.note("one point per tune trial, not joined")
    if failed.any():
        c.note("x: diverged or failed trial, drawn at the worst edge (not at its penalty)")
    return True


def _chosen_trials(evals) -> dict[tuple[str, int], set]:
    if evals is None or "trial" not in evals.columns:
        return {}
    out: dict[tuple[str, int], set] = {}
    for optimizer, rep, trial in zip(evals["optimizer"], evals["replicate"], evals["trial"]):
        t = rd.finite(trial)
        if math.isfinite(t):
            out.setdefault((optimizer, int(rep)), set()).add(t)
    return out


# ------------------------------------------------------------------------------------- best after k


def best_after_k(ax, c: Canvas, key, rows, evals=None) -> bool:
    """Expected best objective after k trials (random order, exact), ± std, and the best so far in
    the order each replicate's tuner ran; branched optimizers named as such."""
    metric, direction = rows["metric"].iloc[0], rows["direction"].iloc[0]
    sign = Metric("", direction).sign
    drawn, lines, ok_values = False, [], []
    for optimizer in rd.optimizers_of(rows):
        mine = rows[rows["optimizer"] == optimizer]
        values = _floats(mine["objective"])
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        mean, std = stats.expected_best_after_k(values, direction)
        k = np.arange(1, values.size + 1)
        s = style(optimizer)
        ax.fill_between(k, mean - std, mean + std, color=s.color, alpha=0.12, linewidth=0)
        ax.plot(k, mean, **s.line(len(k)))
        lines.append(mean)
        for rep in sorted(set(mine["replicate"])):  # the order each replicate's tuner actually ran
            own = mine[mine["replicate"] == rep]
            trial = _floats(own["trial"]) if "trial" in own else np.arange(len(own), dtype=float)
            in_order = _floats(own["objective"])[np.argsort(trial, kind="stable")]
            in_order = in_order[np.isfinite(in_order)]
            if in_order.size:
                observed = sign * np.maximum.accumulate(sign * in_order)
                ax.step(
                    np.arange(1, in_order.size + 1), observed, where="post", color=s.color, linewidth=0.7, alpha=0.6
                )
                lines.append(observed)
        ok_values += [v for v in _floats(mine.loc[mine["status"] == "ok", "objective"]) if math.isfinite(v)]
        parents = sorted(set(mine["branched_from"]) - {""})
        label = f"{values.size} trials"
        if parents:
            steps = (
                sorted({int(v) for v in _floats(mine["branch_step"]) if math.isfinite(v) and v > 0})
                if "branch_step" in mine
                else []
            )
            label += ", branched"
            at = f" at S={steps[0]}" if len(steps) == 1 else ""
            c.note(
                "branched: trials start from the parent's best tune run at step S and train only the tail ({})",
                [f"{optimizer} from {soft_ref(optimizer) or 'its parent'}{at}"],
            )
        c.add(optimizer, _handle(optimizer), label)
        drawn = True
    if evals is not None:
        untuned = [o for o in rd.optimizers_of(evals) if o not in set(rows["optimizer"])]
        if untuned:
            c.note(
                "no tune trials of their own: {} (a branched optimizer with nothing of its own to tune takes its "
                "parent's tuned configuration)",
                untuned,
            )
    if not drawn:
        return False
    _view(ax, lines, ok_values, c)
    ax.set_xlabel("k (tune trials)")
    _integer_ticks(ax)
    ax.set_ylabel(f"best of k: {metric_label(metric, direction, 'val')}", fontsize=8)
    _title(ax, key)
    c.note(
        "thick: expected best of k trials taken in random order (exact), band ± 1 std over orders; "
        "thin steps: best so far in the order each replicate's tuner ran"
    )
    return True


def _view(ax, lines, ok_values, c: Canvas) -> None:
    """y range: where the curves are, within the range of the ok trials (a diverged trial's penalty
    would squash the view; nothing forces 0 into it)."""
    values = np.concatenate([np.asarray(v, dtype=float) for v in lines]) if lines else np.array([])
    values = values[np.isfinite(values)]
    if not values.size:
        return
    lo, hi = float(values.min()), float(values.max())
    if ok_values:
        lo, hi = max(lo, min(ok_values)), min(hi, max(ok_values))
        if lo > hi:
            lo, hi = min(ok_values), max(ok_values)
        if values.min() < lo or values.max() > hi:
            c.note("curves leaving the view are pulled by diverged trials, counted at their penalty")
    pad = 0.08 * (hi - lo) or 0.05 * abs(hi) or 1.0
    ax.set_ylim(lo - pad, hi + pad)


# --------------------------------------------------------------------------------------- temperature


def temperature(ax, c: Canvas, key, rows, curve_rows) -> bool:
    """tau of the Soft* eval runs after the switch, one line per seed; x from the switch to the end."""
    soft = rows[rows["base_optimizer"].isin(rd.SOFT_OPTIMIZERS)]
    tau = curve_rows[
        (curve_rows["split"] == "opt") & (curve_rows["name"] == "tau") & curve_rows["run_id"].isin(set(soft["run_id"]))
    ]
    tau = tau[np.isfinite(tau["value"].astype(float)) & (tau["value"].astype(float) > 0)]
    if tau.empty:
        return False
    x_lo, x_hi, switches = math.inf, -math.inf, set()
    for optimizer in rd.optimizers_of(soft):
        mine = soft[soft["optimizer"] == optimizer]
        s = style(optimizer)
        drew = False
        for run_id in sorted(mine["run_id"]):
            trace = tau[tau["run_id"] == run_id].sort_values("step")
            if trace.empty:
                continue
            ax.plot(
                trace["step"].to_numpy(dtype=float),
                trace["value"].to_numpy(dtype=float),
                **{**s.line(len(trace)), "linewidth": 0.9, "alpha": 0.85},
            )
            x_lo, x_hi = min(x_lo, float(trace["step"].min())), max(x_hi, float(trace["step"].max()))
            drew = True
        if not drew:
            continue
        n = mine["run_id"].nunique()
        c.add(optimizer, _handle(optimizer), f"{n} seeds" if (mine["phase"] == "eval").all() else f"{n} runs")
        switches.add(switch_step(mine))
    pad = 0.04 * (x_hi - x_lo) or 1.0
    ax.set_xlim(x_lo - pad, x_hi + pad)  # the logged points only: before the first one there is nothing
    switches.discard(None)
    if switches:
        text = ", ".join(f"{int(s)}" for s in sorted(s for s in switches if s is not None))  # None discarded above
        ax.text(0.02, 0.03, f"switch at step S = {text}", transform=ax.transAxes, fontsize=7, color="0.3")
        for switch in switches:
            if switch is not None and x_lo - pad <= switch:
                ax.axvline(switch, color="0.4", linestyle=":", linewidth=1.0)
        c.note("S = floor(alpha_sign K), the step where the sign phase ends (dotted when inside the view)")
    ax.set_yscale("log")
    _integer_ticks(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("temperature tau", fontsize=8)
    _title(ax, key)
    c.note("one line per run (eval runs: per seed), at the eval points; tau starts near tmax (sign-like) and falls")
    return True


def switch_step(rows) -> float | None:
    if "hp_alpha_sign" not in rows.columns:
        return None
    alpha, steps = _floats(rows["hp_alpha_sign"]), _floats(rows["steps"])
    ok = np.isfinite(alpha) & np.isfinite(steps)
    if not ok.any():
        return None
    switches = np.floor(alpha[ok] * steps[ok])
    return float(switches[0]) if np.all(switches == switches[0]) else None


# ------------------------------------------------------------------------------- performance profile


def profile(ax, c: Canvas, board) -> str | None:
    """Dolan-More profile of the leaderboard means; every optimizer drawn, with how many benchmarks
    it ran. Returns a skip note when fewer than two benchmarks have results."""
    from harness import leaderboard

    values: dict[str, dict[str, float]] = {}
    directions: dict[str, str] = {}
    for row in board.rows:
        problem = "/".join((row["task"], row["dataset"], row["size"], row["variant"]))
        values.setdefault(problem, {})[row["optimizer"]] = row["mean"]
        directions[problem] = row["direction"]
    if len(values) < 2:
        return f"performance profile skipped: it needs eval results on at least 2 benchmarks, found {len(values)}"
    ratios = stats.performance_ratios(values, directions)
    finite = sorted({r for row in ratios.values() for r in row.values() if math.isfinite(r)})
    tau_max = max(finite) * 1.02 if finite and max(finite) > 1.0 else 1.05
    taus = np.array(sorted({1.0, *finite, tau_max}))
    curves = stats.performance_profile(ratios, taus.tolist())  # the same floats, as the Sequence it takes
    n = len(values)
    ran = {name: sum(math.isfinite(v.get(name, math.nan)) for v in values.values()) for name in curves}
    for name in sorted(curves, key=leaderboard.display_key):
        s = style(name)
        ax.plot(taus, curves[name], drawstyle="steps-post", **s.line(len(taus)))
        c.add(name, _handle(name), f"{ran[name]}/{n} benchmarks")
    short = [f"{name} ran {ran[name]} of {n}" for name in sorted(curves, key=leaderboard.display_key) if ran[name] < n]
    if short:
        c.note(f"a benchmark an optimizer did not run counts as never within tau: {'; '.join(short)}")
    ax.set_xlim(1.0, tau_max)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("tau (performance ratio to the best optimizer)")
    ax.set_ylabel(f"fraction of the {n} benchmarks within tau", fontsize=8)
    ax.set_title(f"{n} benchmarks, {board.split} metric means", fontsize=9)
    c.note(
        "ratios of each optimizer's mean to the best mean per benchmark (direction-aware); higher and further "
        "left is better"
    )
    return None


# -------------------------------------------------------------------------------------- conditions


def condition(ax, c: Canvas, key, column: str, rows_by_value: dict[float, list[dict]], label: str) -> bool:
    """The leaderboard's mean and 95% interval per optimizer at each value of a condition (budget,
    delay), joined per optimizer: the same configuration family across conditions."""
    names = sorted({r["optimizer"] for rows in rows_by_value.values() for r in rows}, key=lambda n: style(n).index)
    xs = sorted(rows_by_value)
    if not xs or not names:
        return False
    metric = direction = split = ""
    for j, name in enumerate(names):
        points = [(x, r) for x in xs for r in rows_by_value[x] if r["optimizer"] == name]
        if not points:
            continue
        metric, direction, split = (points[0][1][k] for k in ("metric", "direction", "split"))
        shift = (j - (len(names) - 1) / 2) * 0.012  # small dodge so the intervals do not overlap
        x = np.array([p[0] for p in points], dtype=float)
        x = x * (1 + shift) if column == "budget" else x + 4 * shift
        mean = np.array([p[1]["mean"] for p in points], dtype=float)
        lo = np.array([p[1]["ci_lo"] for p in points], dtype=float)
        hi = np.array([p[1]["ci_hi"] for p in points], dtype=float)
        s = style(name)
        ax.errorbar(
            x,
            mean,
            yerr=np.vstack([mean - lo, hi - mean]),
            color=s.color,
            linestyle=s.linestyle,
            marker=s.marker,
            markersize=5 if s.hollow else 4,
            markerfacecolor="none" if s.hollow else s.color,
            linewidth=1.2,
            capsize=2,
            elinewidth=0.8,
        )
        c.add(name, _handle(name))
    if column == "budget":
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:g}" for x in xs])
    ax.set_xlabel(label)
    ax.set_ylabel(metric_label(metric, direction, split), fontsize=8)
    _title(ax, key)
    c.note(
        "points: the leaderboard's mean at each condition; bars: its 95% interval; "
        "points dodged sideways a little so the bars do not hide each other"
    )
    return True
