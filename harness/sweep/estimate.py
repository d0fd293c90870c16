"""``optbench plan SWEEP``: what a sweep will run and cost, before anything runs.

It validates the sweep file exactly as ``optbench sweep`` does (the same ``load``: a file the sweep
would refuse exits 2 here too), then counts, per phase, the planned runs and optimizer steps:

- **tune**: ``trials`` runs per study (a ``transfer_from`` study tunes nothing);
- **eval**: one run per eval seed per study, on the best tuned configuration;
- **branch**: the runs of a study whose plan branches from another (SoftX from X): they are tune and
  eval runs too, but each starts from its parent's checkpoint at ``S = floor(alpha_sign K)`` and
  trains only the last ``K - S`` steps; they are counted apart because they cost less.

Time and space come from a **pilot**: a results folder of earlier runs of the same tasks (the demo,
a smoke sweep, or a few ``optbench run``), read as records. Per (task, size, dataset, optimizer) a
run costs its median setup (``wall_seconds`` less training and evaluation: model build, data
already cached) plus its steps times the median seconds per step (training and evaluation, as the
sweep pays them); a key the pilot lacks falls back to the same (task, size, dataset) and then (task,
size) over every optimizer, and is named when nothing matches. On top, each run pays
``RUN_OVERHEAD`` seconds of sweep bookkeeping (Optuna ask/tell, the record written and read back;
an assumption, stated in the output) and each worker process its start (``import torch, optuna``,
timed in this process). The estimate assumes the workers never wait (tune runs of a study run in
parallel; an eval phase waits for its tune phase, and a child for its parent's checkpoints, which
idle workers fill with other studies' runs): it is the total cost over the workers, with the
longest single run as a floor. Checkpoint space is what
the sweep keeps at the end: one branch-point checkpoint per parent run with children (parameters
plus optimizer state, from the pilot's records); records are the pilot's bytes per run.

With ``--margin X`` (and ``--pilot``), it also reads the pilot as a leaderboard at that margin and
prints, per comparison, the verdict, the minimum detectable effect and the replicates and eval
seeds that would bring it under the margin (``harness.stats.power.replicates_needed``).
"""

from __future__ import annotations

import argparse
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError

PHASES = ("tune", "eval", "branch")
RUN_OVERHEAD = 1.0  # seconds of sweep bookkeeping per run (an assumption; see the module docstring)


@dataclass(frozen=True)
class PlannedRun:
    """What one planned run costs in steps: ``steps`` trained of a budget of ``budget``."""

    study: str
    task: str
    size: str
    dataset: str
    optimizer: str
    phase: str  # tune | eval | branch
    budget: int | None  # K (None: the task's default, unknown without building the task)
    steps: int | None  # steps this run trains (K - S for a branch)


def _alpha_sign(plan: Any) -> float | None:
    """alpha_sign of a branched plan: fixed by the sweep, else the optimizer's default."""
    if "alpha_sign" in plan.fixed:
        return float(plan.fixed["alpha_sign"])
    from harness import plugins

    try:
        return float(plugins.optimizer(plan.optimizer).defaults.get("alpha_sign", math.nan))
    except UserError:
        return None


def _trained_steps(sweep: Any, plan: Any, budget: int) -> int:
    """Steps one run of ``plan`` trains out of the full budget ``budget`` (K): ``T`` for its budget
    fraction, less the steps it takes from its parent's checkpoint when it branches (SoftX: S(T); a
    WSD budget branch: its decay start D(T), SoftX's min(S(T), D(T)); ``harness.run.lineage``)."""
    from harness.run.schedules import budget_steps

    total = budget_steps(budget, plan.budget) if plan.budget < 1.0 else budget
    if plan.branch_from is None:
        return total
    alpha = _alpha_sign(plan) if "alpha_sign" in _defaults(plan.optimizer) else None
    start = math.floor(alpha * total) if alpha is not None and math.isfinite(alpha) else None
    parent = sweep.plan(plan.branch_from)
    fraction = plan.schedule.get("decay_fraction") if plan.schedule.get("kind") == "wsd" else None
    if parent.budget > plan.budget and fraction is not None:
        decay_start = total - max(1, math.floor(float(fraction) * total + 0.5))
        start = decay_start if start is None else min(start, decay_start)
    return total - (start or 0)


def _defaults(optimizer: str) -> Mapping[str, Any]:
    from harness import plugins

    try:
        return plugins.optimizer(optimizer).defaults
    except UserError:
        return {}


def planned_runs(sweep: Any, default_steps: Mapping[tuple[str, str, str], int] | None = None) -> list[PlannedRun]:
    """Every run the sweep plans, one ``PlannedRun`` each. ``default_steps`` maps (task, size,
    dataset) to the budget a pilot ran where the sweep leaves ``steps`` to the task."""
    out: list[PlannedRun] = []
    for plan in sweep.studies:
        budget = plan.steps or (default_steps or {}).get((plan.task, plan.size, plan.dataset_key))
        branched = plan.branch_from is not None
        steps = None if budget is None else _trained_steps(sweep, plan, budget)
        tune_phase, eval_phase = ("branch", "branch") if branched else ("tune", "eval")
        n_tune = 0 if plan.transfer_from else plan.trials
        for phase, n in ((tune_phase, n_tune), (eval_phase, len(plan.eval_seeds))):
            out += [
                PlannedRun(plan.study, plan.task, plan.size, plan.dataset_key, plan.optimizer, phase, budget, steps)
            ] * n
    return out


@dataclass(frozen=True)
class Pilot:
    """Per-step prices and sizes measured in a results folder."""

    source: str
    seconds_per_step: dict[tuple, float]  # keys: (task, size, dataset, optimizer), (task, size, dataset), (task, size)
    setup_seconds: dict[tuple, float]  # same keys: wall seconds outside training and evaluation
    budgets: dict[tuple[str, str, str], int]
    checkpoint_bytes: dict[tuple[str, str, str, str], float]
    record_bytes: float
    devices: tuple[str, ...]

    def price(self, run: PlannedRun) -> tuple[float, float] | None:
        """(setup seconds, seconds per step) of a planned run, or None when the pilot has no match."""
        for key in (
            (run.task, run.size, run.dataset, run.optimizer),
            (run.task, run.size, run.dataset),
            (run.task, run.size),
        ):
            if key in self.seconds_per_step:
                return self.setup_seconds[key], self.seconds_per_step[key]
        return None


def read_pilot(folder: str | os.PathLike) -> Pilot:
    """Median seconds per step per key, budgets, checkpoint and record sizes of a results folder."""
    import numpy as np

    from harness.results import store

    root = store.results_root(folder)
    if not store.runs_dir(root).is_dir():
        raise UserError(
            f"pilot folder {folder} has no run records ({store.runs_dir(root)}/*.parquet): give the "
            "--out folder of an earlier optbench suite / sweep / run of the same tasks"
        )
    frame = store.read_runs(root)
    frame = frame[(frame["steps_done"] > 0) & frame["wall_seconds"].notna()]
    if len(frame) == 0:
        raise UserError(f"pilot folder {folder} has no finished run with a wall time to price steps from")
    inside = frame["train_seconds"].astype(float).fillna(0) + frame["eval_seconds"].astype(float).fillna(0)
    per_step = inside / frame["steps_done"].astype(float)
    setup = (frame["wall_seconds"].astype(float) - inside).clip(lower=0)
    groups: dict[tuple, list[float]] = defaultdict(list)
    setups: dict[tuple, list[float]] = defaultdict(list)
    keys = frame[["task", "size", "dataset", "optimizer"]].itertuples(index=False)
    for (task, size, dataset, opt), value, fixed in zip(keys, per_step, setup):
        for key in ((task, size, dataset, opt), (task, size, dataset), (task, size)):
            groups[key].append(float(value))
            setups[key].append(float(fixed))
    budgets = {(t, s, d): int(k) for t, s, d, k in frame[["task", "size", "dataset", "steps"]].itertuples(index=False)}
    ckpt = {}
    for (t, s, d, o), g in frame.groupby(["task", "size", "dataset", "optimizer"]):
        ckpt[(t, s, d, o)] = float(
            np.median(g["param_count"].astype(float) * 4 + g["optimizer_state_bytes"].astype(float))
        )
    files = list(store.runs_dir(root).glob("*.parquet")) + list(store.curves_dir(root).glob("*.parquet"))
    record = sum(f.stat().st_size for f in files) / max(1, len(frame))
    return Pilot(
        str(folder),
        {k: float(np.median(v)) for k, v in groups.items()},
        {k: float(np.median(v)) for k, v in setups.items()},
        budgets,
        ckpt,
        record,
        tuple(sorted(frame["device"].astype(str).unique())),
    )


def _hours(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 120 else f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _kept_checkpoints(sweep: Any) -> dict[str, int]:
    """Per parent study, the runs whose branch-point checkpoint the sweep keeps: one per eval seed
    (each child's eval run of that seed starts from it), plus the tune runs of a child that tunes
    its own hyperparameters (each child trial starts from a parent run of the tuned configuration)."""
    kept: dict[str, int] = {}
    for child in sweep.studies:
        if child.branch_from:
            parent = sweep.plan(child.branch_from)
            tuned = 0 if child.transfer_from else child.trials
            kept[parent.study] = max(kept.get(parent.study, 0), len(parent.eval_seeds) + tuned)
    return kept


def summary(sweep: Any, pilot: Pilot | None, workers: Sequence[int]) -> list[str]:
    """The plan in lines of text (what ``optbench plan`` prints)."""
    runs = planned_runs(sweep, pilot.budgets if pilot else None)
    lines = [f"sweep {sweep.suite} ({sweep.path}): {len(sweep.studies)} studies, {len(runs):,} planned runs"]
    by_phase: dict[str, list[PlannedRun]] = {p: [] for p in PHASES}
    for run in runs:
        by_phase[run.phase].append(run)
    unpriced: set[tuple[str, str]] = set()
    cost = {p: 0.0 for p in PHASES}
    longest = 0.0
    unknown_steps = 0
    for phase, items in by_phase.items():
        for run in items:
            price = pilot.price(run) if pilot else None
            if run.steps is None or price is None:
                unknown_steps += run.steps is None
                unpriced.add((run.task, run.size))
                cost[phase] = math.nan
                continue
            setup, per_step = price
            cost[phase] += setup + per_step * run.steps + RUN_OVERHEAD
            longest = max(longest, setup + per_step * (run.budget or run.steps))
    header = f"  {'phase':<8} {'runs':>7} {'steps trained':>15}" + (f" {'est. cost':>11}" if pilot else "")
    lines.append(header)
    for phase, items in by_phase.items():
        steps = sum(r.steps for r in items if r.steps is not None)
        known = "" if all(r.steps is not None for r in items) else "+"
        row = f"  {phase:<8} {len(items):>7,} {steps:>14,}{known or ' '}"
        lines.append(row + (f" {_hours(cost[phase]):>11}" if pilot else ""))
    if by_phase["branch"]:
        lines.append(
            "  (branch: SoftX runs that start from their X parent's checkpoint at S = floor(alpha_sign K) "
            "and train the last K - S steps)"
        )
    if unknown_steps:
        lines.append(
            f"  + {unknown_steps:,} runs leave steps to the task's default, which needs its data to know: "
            "give --pilot with runs of those tasks, or set steps: in the sweep file"
        )
    kept = _kept_checkpoints(sweep)
    n_parent_runs = sum(kept.values())
    if pilot:
        total = sum(cost.values())
        ck = [
            pilot.checkpoint_bytes.get((p.task, p.size, p.dataset_key, p.optimizer), math.nan) * kept[p.study]
            for p in sweep.studies
            if p.study in kept
        ]
        ck_total = _bytes(sum(ck)) if all(math.isfinite(x) for x in ck) else "size unknown: the pilot lacks those"
        lines.append(
            f"storage: {n_parent_runs:,} branch-point checkpoints kept (~{ck_total}), "
            f"records ~{_bytes(pilot.record_bytes * len(runs))} (pilot: {_bytes(pilot.record_bytes)} per run)"
        )
        device = ", ".join(pilot.devices)
        if unpriced:
            names = ", ".join(f"{t} ({s})" for t, s in sorted(unpriced))
            lines.append(f"wall time: unknown: the pilot {pilot.source} has no runs of {names}")
        else:
            start = worker_start_seconds()
            est = ", ".join(
                f"{w} worker{'s' if w > 1 else ''} ~{_hours(start + max(total / w, longest))}" for w in workers
            )
            lines.append(
                f"wall time on the pilot's device ({device}), workers never idle: {est} "
                f"(runs as the pilot timed them + {RUN_OVERHEAD:g} s of sweep bookkeeping per run + "
                f"{start:.1f} s worker start, timed here)"
            )
    else:
        lines.append(
            f"storage: {n_parent_runs:,} branch-point checkpoints kept; wall time and sizes need a pilot "
            "(--pilot RESULTS: an earlier results folder of the same tasks, e.g. from optbench suite "
            "sweeps/smoke.yaml)"
        )
    return lines


def worker_start_seconds() -> float:
    """Seconds a fresh worker spends importing torch and optuna, timed in a child interpreter."""
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "import torch, optuna, pandas, pyarrow"], capture_output=True)
    return time.perf_counter() - t0 if done.returncode == 0 else math.nan


def settle(pilot_folder: str | os.PathLike, margin: str) -> list[str]:
    """Per comparison of the pilot's leaderboard at ``margin``: verdict, MDE and what would settle it."""
    from harness.leaderboard.cli import build
    from harness.leaderboard.margins import policy_from_cli

    try:
        policy = policy_from_cli(margin)
    except ValueError as exc:
        raise UserError(f"invalid --margin {margin!r}: {exc}") from None
    board, _ = build(pilot_folder, margins=policy, mixed_versions=True)
    lines = [
        f"comparisons in the pilot {pilot_folder} at margin {margin} (vs the benchmark's best):",
        f"  {'benchmark':<34} {'optimizer':<15} {'verdict':<13} {'MDE':>9} {'replicates':>10} {'eval seeds':>10}",
    ]
    for row in board.rows:
        if not row.get("vs_best_verdict"):
            continue
        bench = "/".join(str(row[k]) for k in ("task", "dataset", "size") if row.get(k))
        if row.get("variant"):  # a condition (delay=1, budget=0.5, ...) or task options
            bench += f" [{row['variant']}]"
        need_r = row.get("vs_best_replicates_needed")
        need_n = row.get("vs_best_seeds_needed")
        fmt = lambda v: "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{int(v)}"  # noqa: E731
        mde = row.get("vs_best_mde")
        lines.append(
            f"  {bench:<34} {row['optimizer']:<15} {row['vs_best_verdict']:<13} "
            f"{(f'{mde:.3g}' if isinstance(mde, float) and math.isfinite(mde) else '-'):>9} "
            f"{fmt(need_r):>10} {fmt(need_n):>10}"
        )
    lines.append(
        "  replicates: tuning replicates needed at the current eval seeds; eval seeds: per replicate at the "
        "current replicates; '-': not reachable (see the leaderboard's need_note) or already best"
    )
    return lines


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="what a sweep will run and cost, without running it",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("sweep", help="sweep file (sweeps/*.yaml)")
    p.add_argument("--pilot", help="results folder of earlier runs of the same tasks, for times and sizes")
    p.add_argument("--workers", default="1,2,4", help="worker counts to estimate the wall time for (default 1,2,4)")
    p.add_argument(
        "--margin",
        help="with --pilot: the replicates and eval seeds each comparison needs at this "
        "margin (0.005 absolute, or 1%% relative)",
    )
    p.set_defaults(func=_main)


def _workers(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UserError(f"invalid --workers {text!r}: a comma-separated list of worker counts >= 1, e.g. 1,2,4")
    return values


def _main(args: argparse.Namespace) -> int:
    from harness.sweep import schema

    workers = _workers(args.workers)
    if args.margin and not args.pilot:
        raise UserError(
            "--margin needs --pilot RESULTS: the replicates a comparison needs follow from the "
            "variance measured in earlier runs"
        )
    sweep = schema.load(args.sweep)
    pilot = read_pilot(args.pilot) if args.pilot else None
    lines = summary(sweep, pilot, workers)
    if args.margin:
        lines += [""] + settle(args.pilot, args.margin)
    print("\n".join(lines))
    return 0


__all__ = ["PlannedRun", "Pilot", "planned_runs", "read_pilot", "summary", "settle", "register"]
