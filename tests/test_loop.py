"""The training loop on a small hand-made task: schedule, determinism, divergence, records, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from harness.results import store as records
from harness.run.loop import lr_factor, run
from harness.spec import RunSpec
from harness.task import Metric, Task, roles_by_module


class _Data:
    def __init__(self, device):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(512, 8, generator=g).to(device)
        w = torch.randn(8, 1, generator=g).to(device)
        self.y = torch.tanh(self.x @ w)

    def batches(self, generator, rank=0, world_size=1):
        while True:
            idx = torch.randint(0, 384, (32,), generator=generator)
            yield self.x[idx], self.y[idx]


def _model(generator):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))


def _loss(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def _evaluate(model, data, split):
    sl = slice(384, 448) if split == "val" else slice(448, 512)
    mse = nn.functional.mse_loss(model(data.x[sl]), data.y[sl]).item()
    return {"rmse": math.sqrt(mse), "loss": mse}


def _roles(model):
    return roles_by_module(model, head=model[2])


TASK = Task(
    name="toy",
    dataset="toy",
    size="tiny",
    metric=Metric("rmse", "min"),
    steps=60,
    eval_every=20,
    make_model=_model,
    make_data=_Data,
    loss=_loss,
    evaluate=_evaluate,
    roles=_roles,
    penalty=10.0,
    target=0.5,
    grad_clip=None,
)


def _spec(**kw):
    base = dict(task="toy", optimizer="adamw", dataset="toy", size="tiny", steps=60, seed=0, hparams={"lr": 1e-2})
    base.update(kw)
    return RunSpec(**base)


def test_lr_factor_shapes():
    total, warm = 100, 10
    f = [lr_factor(s, total, warm, "cosine") for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    lin = [lr_factor(s, total, 0, "linear", min_ratio=0.1) for s in range(total)]
    assert lin[0] == 1.0 and lin[-1] == pytest.approx(0.1)
    assert lr_factor(50, total, 0, "constant") == 1.0


def test_run_is_deterministic_and_learns(results_dir):
    a = run(_spec(), task=TASK)
    b = run(_spec(), task=TASK)
    assert a.row["status"] == "ok"
    losses_a = [c["value"] for c in a.curves if c["split"] == "train" and c["name"] == "loss"]
    losses_b = [c["value"] for c in b.curves if c["split"] == "train" and c["name"] == "loss"]
    assert losses_a == losses_b and len(losses_a) == 60
    assert sum(losses_a[-10:]) < 0.5 * sum(losses_a[:10])
    assert a.row["val_metric"] == b.row["val_metric"] and a.row["test_metric"] == b.row["test_metric"]
    # Another seed changes init and data order.
    c = run(_spec(seed=1), task=TASK)
    assert c.row["val_metric"] != a.row["val_metric"]
    # Evals happen on the declared schedule; lr follows warmup + cosine.
    val_steps = sorted({c["step"] for c in a.curves if c["split"] == "val"})
    assert val_steps == [20, 40, 60]


def test_record_written_atomically_and_resume_skips(results_dir):
    spec = _spec()
    first = run(spec, task=TASK, out_dir=results_dir)
    run_id = first.row["run_id"]
    path = records.run_path(results_dir, run_id)
    assert path.is_file() and not first.skipped
    assert not [p for p in results_dir.rglob("*.tmp")]
    again = run(spec, task=TASK, out_dir=results_dir)
    assert again.skipped and again.row["run_id"] == run_id
    df = records.read_runs(results_dir)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["schema_version"] == records.SCHEMA_VERSION and row["status"] == "ok"
    assert json.loads(row["hparams"])["lr"] == 1e-2 and row["hp_lr"] == 1e-2
    assert row["optimizer_state_bytes"] > 0 and row["param_count"] == 8 * 32 + 32 + 32 + 1
    curves = records.read_curves(results_dir)
    assert set(curves["split"]) >= {"train", "val", "test"}
    assert (curves["run_id"] == run_id).all()


def test_diverged_run_is_a_record_not_a_crash(results_dir):
    spec = _spec(optimizer="adamw", hparams={"lr": 1e6}, steps=60)
    res = run(spec, task=TASK, out_dir=results_dir)
    assert res.row["status"] == "diverged"
    assert res.row["objective"] == TASK.penalty
    assert math.isnan(res.row["val_metric"]) and math.isnan(res.row["test_metric"])
    assert res.row["steps_done"] < 60
    assert records.is_finished(results_dir, res.row["run_id"])


def test_on_eval_can_prune():
    seen = []

    def prune(step, metrics):
        seen.append(step)
        return True

    res = run(_spec(), task=TASK, on_eval=prune)
    assert res.row["status"] == "pruned" and seen == [20] and res.row["steps_done"] == 20


def test_run_id_ignores_trial_but_not_config():
    a, b = _spec(trial=1), _spec(trial=7)
    assert a.run_id == b.run_id
    assert _spec(seed=2).run_id != a.run_id
    assert _spec(hparams={"lr": 2e-2}).run_id != a.run_id
    assert RunSpec.from_json(a.to_json()) == a


def test_grad_accumulation_matches_full_batch():
    """Two micro-batches of a mean loss give the same update as the whole batch (up to fp32 rounding)."""
    import dataclasses

    from harness.run.loop import micro_batches

    x = torch.arange(12.0).reshape(6, 2)
    parts = micro_batches((x, x[:, 0]), 3)
    assert len(parts) == 3 and all(p[0].shape == (2, 2) and p[1].shape == (2,) for p in parts)
    full = run(_spec(steps=20), task=TASK)
    accum = run(_spec(steps=20), task=dataclasses.replace(TASK, grad_accum=2))
    a = [c["value"] for c in full.curves if c["name"] == "loss" and c["split"] == "train"]
    b = [c["value"] for c in accum.curves if c["name"] == "loss" and c["split"] == "train"]
    assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    assert accum.row["val_metric"] == pytest.approx(full.row["val_metric"], rel=1e-3)


def test_soft_optimizer_temperature_is_sampled_through_the_transition():
    """Diagnostics are sampled ~100 times per run, not only at evals, so the temperature trace shows
    the whole sign -> soft transition; optimizers without diagnostics add no rows."""
    res = run(_spec(optimizer="softsignum", hparams={"lr": 1e-2, "alpha_sign": 0.5}, steps=60), task=TASK)
    taus = sorted((c["step"], c["value"]) for c in res.curves if c["split"] == "opt" and c["name"] == "tau")
    assert [s for s, _ in taus] == list(range(1, 61))
    soft = [v for s, v in taus if s > 30]
    assert all(math.isinf(v) for s, v in taus if s <= 30) and len(soft) == 30
    assert all(a >= b for a, b in zip(soft, soft[1:])) and soft[0] > soft[-1]
    plain = run(_spec(steps=60), task=TASK)
    assert not [c for c in plain.curves if c["split"] == "opt"]
