"""The run's clocks (harness/run/timing.py, out of loop.train since issue 19): what counts as training,
evaluation and neither, on a fake clock the test moves by hand; and the cumulative training seconds
the loop writes at every evaluation (split "train", name "seconds"), carried across a resume."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

import harness.run.loop as loop
from harness.run import checkpoint as ckpt
from harness.run import timing
from harness.run.checkpoint import CheckpointPolicy
from harness.run.loop import run
from harness.run.session import LoopState
from harness.spec import RunSpec
from harness.task import Metric, Task, roles_by_module


class FakeClock:
    """``perf_counter`` for harness/run/timing.py alone: it moves only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def test_run_clock_counts_training_outside_its_pauses(clock):
    state = LoopState.fresh(10, torch.device("cpu"))
    state.train_seconds, state.eval_seconds = 5.0, 1.0  # as a checkpoint left them
    c = timing.RunClock(torch.device("cpu"), state)
    c.start()
    clock.now += 2
    with c.paused("eval_seconds"):
        assert c.train_seconds() == 7.0
        clock.now += 30
        with c.paused():  # nested: nothing restarts until the outer pause ends
            clock.now += 100
    assert (state.train_seconds, state.eval_seconds) == (7.0, 1.0 + 130)
    clock.now += 3
    assert c.train_seconds() == 10.0
    with c.paused():  # a checkpoint write: neither training nor evaluation
        clock.now += 1000
    with c.step():
        clock.now += 0.5
    c.stop()
    assert (state.train_seconds, state.eval_seconds, state.optimizer_seconds) == (10.5, 131.0, 0.5)
    with c.paused("eval_seconds"):  # after the end: the test evaluation, the clock stays stopped
        clock.now += 4
    clock.now += 50
    assert (c.train_seconds(), state.eval_seconds) == (10.5, 135.0)


# A toy task whose forward pass moves the fake clock by 1 s and whose evaluation by 100 s.
TICK, EVAL = 1.0, 100.0


class _Data:
    def __init__(self, device):
        g = torch.Generator().manual_seed(5)
        self.x = torch.randn(256, 4, generator=g)
        self.y = self.x.sum(dim=1, keepdim=True).tanh()

    def batches(self, generator, rank=0, world_size=1):
        while True:
            idx = torch.randint(0, 192, (16,), generator=generator)
            yield self.x[idx], self.y[idx]


def _task(fake: FakeClock) -> Task:
    def loss(model, batch):
        fake.now += TICK
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    def evaluate(model, data, split):
        fake.now += EVAL
        sl = slice(192, 224) if split == "val" else slice(224, 256)
        return {"mse": nn.functional.mse_loss(model(data.x[sl]), data.y[sl]).item()}

    def make_model(generator):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    return Task(
        name="clocked",
        dataset="toy",
        size="tiny",
        metric=Metric("mse", "min"),
        steps=40,
        eval_every=10,
        make_model=make_model,
        make_data=_Data,
        loss=loss,
        evaluate=evaluate,
        roles=lambda m: roles_by_module(m, head=m[2]),
        penalty=10.0,
        grad_clip=None,
    )


def _seconds(result) -> dict[int, float]:
    return {c["step"]: c["value"] for c in result.curves if (c["split"], c["name"]) == ("train", "seconds")}


def test_the_loop_records_training_seconds_at_every_eval_excluding_evals_diagnostics_and_saves(
    clock, monkeypatch, tmp_path
):
    real_save = ckpt.save

    def slow_diagnostics(optimizer):  # 10 s each
        clock.now += 10
        return {"probe": 1.0}

    def slow_save(path, state):
        clock.now += 1000
        return real_save(path, state)

    monkeypatch.setattr(loop, "_diagnostics", slow_diagnostics)
    monkeypatch.setattr(ckpt, "save", slow_save)
    spec = RunSpec(task="clocked", optimizer="adamw", dataset="toy", steps=40, hparams={"lr": 1e-2})
    res = run(spec, task=_task(clock), out_dir=tmp_path, checkpoints=CheckpointPolicy(at_steps={15}))
    assert res.row["status"] == "ok"
    # one forward per step: the training seconds at eval step n are n ticks, whatever else took time
    assert _seconds(res) == {n: n * TICK for n in (10, 20, 30, 40)}
    assert res.row["train_seconds"] == 40 * TICK
    # diagnostics at every step (the cadence at 40 steps is 1; at the evals with the validation), the
    # validations at 10, 20, 30, 40 and the test: evaluation time; the checkpoint write: neither
    assert res.row["eval_seconds"] == 40 * 10 + (4 + 1) * EVAL


def test_training_seconds_continue_across_a_resume(clock, monkeypatch, tmp_path):
    class Stop(Exception):
        pass

    real_save = ckpt.save

    def save_then_die(path, state):
        real_save(path, state)
        raise Stop

    task = _task(clock)
    spec = RunSpec(task="clocked", optimizer="signum", dataset="toy", steps=40, hparams={"lr": 1e-2})
    monkeypatch.setattr(ckpt, "save", save_then_die)
    with pytest.raises(Stop):
        run(spec, task=task, out_dir=tmp_path, checkpoints=CheckpointPolicy(at_steps={25}))
    monkeypatch.setattr(ckpt, "save", real_save)
    clock.now += 10_000  # the process was down for a while: not training time
    resumed = run(spec, task=task, out_dir=tmp_path)
    assert resumed.row["resumed_at_step"] == 25
    assert _seconds(resumed) == {n: n * TICK for n in (10, 20, 30, 40)}
    assert resumed.row["train_seconds"] == 40 * TICK
