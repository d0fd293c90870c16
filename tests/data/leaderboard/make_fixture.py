"""Write the small committed results folder the leaderboard/report golden tests read.

    .venv/bin/python tests/data/leaderboard/make_fixture.py      # rewrites runs/ and curves/ here

Rows go through ``harness.results.store.write_run`` with every column of ``harness.results.store.COLUMNS`` (plus
``hp_*``), the run_id from ``harness.spec.RunSpec``, exactly as the training loop writes them. The
numbers are synthetic but shaped like a real suite (seeded, so this script is deterministic):

* suite "fixture", three benchmarks: tabular_mlp/breast_cancer (accuracy, max, target 0.95; test
  accuracies are multiples of 1/114 like the real 114-sample test split, so exact ties occur),
  tabular_mlp/diabetes (rmse, min, no target), gnn_graphland/sbm (accuracy, max, target 0.8);
* five optimizers, 3 tune trials each (a log-spaced lr sweep, seed 0; trial 0 = the defaults) and
  the best trial re-run on eval seeds 100, 101, 102;
* planted cases the tests rely on: signum diverges at the largest lr on diabetes (tune failure),
  softmuon's eval seed 102 on diabetes diverges (n_failed 1), signum has no eval seed 102 on
  diabetes (pairing must use shared seeds only), adamw on sbm has an older, superseded eval of
  seed 100 (latest record wins), and per-seed effects shared by all optimizers (paired data).

The golden ``expected.csv`` / ``expected.md`` are written by ``--goldens`` from the current
implementation; check them by hand before committing a change.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from harness.results import store as records  # noqa: E402
from harness.spec import RunSpec  # noqa: E402

SUITE = "fixture"
STEPS = 100
EVAL_EVERY = 10
TUNE_SEED = 0
EVAL_SEEDS = (100, 101, 102)

# task, dataset, metric, direction, penalty, target, per-optimizer mean at its best lr, noise sd,
# per-seed shared effect sd, test-set size (0: continuous metric)
BENCHMARKS = (
    (
        "tabular_mlp",
        "breast_cancer",
        "accuracy",
        "max",
        0.0,
        0.95,
        {"adamw": 0.955, "signum": 0.946, "softsignum": 0.952, "muon": 0.968, "softmuon": 0.970},
        0.003,
        0.006,
        114,
    ),
    (
        "tabular_mlp",
        "diabetes",
        "rmse",
        "min",
        1000.0,
        None,
        {"adamw": 55.0, "signum": 58.5, "softsignum": 56.0, "muon": 54.2, "softmuon": 53.1},
        0.5,
        1.5,
        0,
    ),
    (
        "gnn_graphland",
        "sbm",
        "accuracy",
        "max",
        0.0,
        0.8,
        {"adamw": 0.801, "signum": 0.792, "softsignum": 0.806, "muon": 0.821, "softmuon": 0.824},
        0.004,
        0.01,
        0,
    ),
)
# The registered defaults (real hyperparameter names), with alpha_sign lowered so the 100-step
# fixture runs have several eval points after the sign -> soft switch.
OPTIMIZERS = ("adamw", "signum", "softsignum", "muon", "softmuon")
OVERRIDES = {"softsignum": {"alpha_sign": 0.7}, "softmuon": {"alpha_sign": 0.7}}


def _defaults() -> dict[str, dict]:
    from optimizers import REGISTRY

    return {name: dict(REGISTRY[name].defaults, **OVERRIDES.get(name, {})) for name in OPTIMIZERS}


LR_FACTORS = (1.0, 0.3, 4.0)  # trial 0 = defaults, then the sampler's picks


def _clock(i: int) -> str:
    return f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00:00"


def _row(
    spec: RunSpec,
    *,
    metric,
    direction,
    penalty,
    target,
    status,
    val,
    test,
    steps_to_target,
    clock: int,
    curves_best: float,
) -> dict:
    ok = status == "ok"
    row = {
        "run_id": spec.run_id,
        "schema_version": records.SCHEMA_VERSION,
        "suite": spec.suite,
        "study": spec.study,
        "task": spec.task,
        "dataset": spec.dataset,
        "size": spec.size,
        "optimizer": spec.optimizer,
        "phase": spec.phase,
        "trial": spec.trial,
        "seed": spec.seed,
        "steps": STEPS,
        "steps_done": STEPS if ok else STEPS // 3,
        "hparams": json.dumps(records.json_ready(spec.hparams), sort_keys=True),
        "task_options": json.dumps({}, sort_keys=True),
        "spec": spec.to_json(),
        "amp": "",
        "compile": False,
        "status": status,
        "status_detail": "" if ok else f"non-finite training loss at step {STEPS // 3 + 1}",
        "metric": metric,
        "direction": direction,
        "val_metric": val if ok else math.nan,
        "test_metric": test if ok else math.nan,
        "best_val_metric": curves_best if ok else math.nan,
        "best_val_step": STEPS if ok else None,
        "objective": val if ok else penalty,
        "penalty": penalty,
        "target": math.nan if target is None else target,
        "steps_to_target": steps_to_target,
        "final_train_loss": 0.3 if ok else math.nan,
        "metrics": json.dumps(
            {"val": {metric: val} if ok else {}, "test": {metric: test} if ok else {}}, sort_keys=True
        ),
        "train_seconds": 2.0,
        "eval_seconds": 0.2,
        "optimizer_seconds": 0.4,
        "wall_seconds": 2.5,
        "peak_memory_bytes": 200_000_000,
        "optimizer_state_bytes": 10_000,
        "param_count": 5_000,
        "implementation": "foreach",
        "git_sha": "fixture",
        "torch_version": "2.14.1",
        "python_version": "3.11.0",
        "device": "cpu",
        "world_size": 1,
        "started_at": _clock(clock),
        "finished_at": _clock(clock + 3),
    }
    row.update(records.hp_columns(spec.hparams))
    return row


def _curves(rng, *, metric, direction, final_val, ok, target, alpha_sign, train_loss) -> tuple[list, int | None]:
    """Train loss every step, val metric + loss every EVAL_EVERY steps rising/falling to
    ``final_val``, test at the end, and the Soft* temperature trace after the switch."""
    curves, reached = [], None
    last = STEPS if ok else STEPS // 3
    for step in range(1, last + 1):
        curves.append(
            {
                "step": step,
                "split": "train",
                "name": "loss",
                "value": train_loss * (1.0 + 2.0 * math.exp(-step / 25)) + 0.01 * rng.standard_normal(),
            }
        )
    sign = 1.0 if direction == "max" else -1.0
    switch = math.floor(alpha_sign * STEPS) if alpha_sign else None
    for step in range(EVAL_EVERY, last + 1, EVAL_EVERY):
        gap = math.exp(-step / 30)
        value = final_val - sign * abs(final_val) * 0.3 * gap + 0.002 * abs(final_val) * rng.standard_normal()
        curves.append({"step": step, "split": "train", "name": "lr", "value": 1e-3})
        curves.append({"step": step, "split": "val", "name": metric, "value": value})
        curves.append({"step": step, "split": "val", "name": "loss", "value": train_loss * (1 + gap)})
        if target is not None and reached is None and sign * value >= sign * target:
            reached = step
        if switch is not None:
            soft = step > switch
            curves.append({"step": step, "split": "opt", "name": "phase", "value": float(soft)})
            if soft:  # tau_j = c / q_j with q_j the j/N quantile of a folded Cauchy: falls from tmax
                j = step - switch - 1
                n = STEPS - switch
                q = 0.01 * math.tan(math.pi / 2 * j / n)
                tau = min(max(4.9517 / q, 1.0), 1e9) if q > 0 else 1e9
                curves.append({"step": step, "split": "opt", "name": "tau", "value": tau})
                curves.append({"step": step, "split": "opt", "name": "saturated_frac", "value": 1.0 - j / n})
    if ok:
        curves.append({"step": STEPS, "split": "test", "name": metric, "value": final_val})
    return curves, reached


def build(out: Path) -> int:
    """Write the fixture results folder into ``out`` (runs/ and curves/ replaced). Returns #runs."""
    for sub in ("runs", "curves"):
        shutil.rmtree(out / sub, ignore_errors=True)
    defaults = _defaults()
    rng = np.random.default_rng(20260101)
    clock = 0
    count = 0
    for task, dataset, metric, direction, penalty, target, means, sd, seed_sd, n_test in BENCHMARKS:
        sign = 1.0 if direction == "max" else -1.0
        seed_effect = {s: seed_sd * rng.standard_normal() for s in (TUNE_SEED, *EVAL_SEEDS)}

        def quantise(v: float, n_test=n_test) -> float:
            return round(v * n_test) / n_test if n_test else round(v, 6)

        def write(
            spec, status, val, test, metric=metric, direction=direction, sign=sign, penalty=penalty, target=target
        ):
            nonlocal clock, count
            alpha = spec.hparams.get("alpha_sign")
            curves, reached = _curves(
                rng,
                metric=metric,
                direction=direction,
                final_val=val,
                ok=status == "ok",
                target=target,
                alpha_sign=alpha,
                train_loss=0.3,
            )
            best = max(
                (c["value"] for c in curves if c["split"] == "val" and c["name"] == metric),
                key=lambda v: sign * v,
                default=math.nan,
            )
            row = _row(
                spec,
                metric=metric,
                direction=direction,
                penalty=penalty,
                target=target,
                status=status,
                val=val,
                test=test,
                steps_to_target=reached,
                clock=clock,
                curves_best=best,
            )
            records.write_run(out, row, curves)
            clock += 5
            count += 1

        for optimizer, mean in means.items():
            study = f"{SUITE}/{task}/{dataset}/{optimizer}"
            base = RunSpec(
                task=task, optimizer=optimizer, dataset=dataset, size="small", suite=SUITE, study=study, steps=STEPS
            )
            trials = []
            for t, factor in enumerate(LR_FACTORS):
                hp = dict(defaults[optimizer], lr=defaults[optimizer]["lr"] * factor)
                # quality falls off quadratically in log-lr around factor 1.5
                drop = 0.04 * abs(mean) * (math.log10(factor / 1.5)) ** 2
                val = mean - sign * drop + sign * seed_effect[TUNE_SEED] + sd * rng.standard_normal()
                diverged = optimizer == "signum" and dataset == "diabetes" and factor == 4.0
                spec = base.with_(hparams=hp, phase="tune", trial=t, seed=TUNE_SEED)
                write(spec, "diverged" if diverged else "ok", quantise(val), quantise(val))
                trials.append((penalty if diverged else val, hp))
            best_hp = max(trials, key=lambda tv: sign * tv[0])[1]
            for seed in EVAL_SEEDS:
                if optimizer == "signum" and dataset == "diabetes" and seed == 102:
                    continue  # this seed was never evaluated
                diverged = optimizer == "softmuon" and dataset == "diabetes" and seed == 102
                test = mean + sign * seed_effect[seed] + sd * rng.standard_normal()
                val = test + 0.5 * sd * rng.standard_normal()
                spec = base.with_(hparams=best_hp, phase="eval", seed=seed)
                if optimizer == "adamw" and dataset == "sbm" and seed == 100:
                    # an older evaluation of the same seed with a since-replaced config
                    old = base.with_(hparams=dict(best_hp, lr=best_hp["lr"] * 3), phase="eval", seed=seed)
                    write(old, "ok", quantise(val - 0.05), quantise(test - 0.05))
                write(spec, "diverged" if diverged else "ok", quantise(val), quantise(test))
    return count


def write_goldens(out: Path) -> None:
    from harness import leaderboard

    board, skipped = leaderboard.build(out)
    assert not skipped, skipped
    (out / "expected.csv").write_text(leaderboard.render_csv(board), encoding="utf-8")
    (out / "expected_aggregate.csv").write_text(leaderboard.render_csv(board, "aggregate"), encoding="utf-8")
    (out / "expected.md").write_text(leaderboard.render_markdown(board), encoding="utf-8")


if __name__ == "__main__":
    n = build(HERE)
    print(f"wrote {n} runs under {HERE}")
    if "--goldens" in sys.argv[1:]:
        write_goldens(HERE)
        print("wrote expected.csv, expected_aggregate.csv, expected.md")
