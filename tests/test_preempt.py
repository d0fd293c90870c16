"""A SIGTERM during training (a scheduler's scancel, preemption or time limit) stops the run at the end
of its current step with a checkpoint there (``harness.run.preempt``): the re-run resumes from it and
gives the record of an uninterrupted run. Outside a training loop the signal interrupts at once."""

from __future__ import annotations

import os
import signal

import pytest

from harness.results import store
from harness.run import checkpoint as ckpt
from harness.run import preempt
from harness.run.loop import run
from harness.run.resolve import resolve


def _spec():
    spec, task = resolve(task="tabular_mlp", optimizer="adamw", size="tiny", steps=40, seed=3)
    return spec, task


def test_sigterm_mid_run_saves_the_step_and_the_rerun_equals_an_uninterrupted_run(tmp_path):
    spec, _ = _spec()
    stopped_at = []

    def send_sigterm(step, metrics):
        if not stopped_at:
            stopped_at.append(step)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler only records it: the step finishes
        return False

    out = tmp_path / "out"
    with preempt.sigterm_stops_training(interrupt_sigint=False):
        with pytest.raises(KeyboardInterrupt, match="stopped by SIGTERM after step"):
            run(spec, out_dir=out, on_eval=send_sigterm, progress=False)
    (step,) = stopped_at
    assert 0 < step < 40
    assert ckpt.saved_steps(out, spec.run_id) == [step]  # saved at the step the signal arrived in
    assert not store.is_finished(out, spec.run_id)  # no record: the run did not finish
    assert not preempt.requested()  # the request was consumed

    resumed = run(spec, out_dir=out, progress=False)
    whole = run(spec, out_dir=tmp_path / "whole", progress=False)
    assert resumed.row["resumed_at_step"] == step and resumed.row["steps_done"] == 40
    assert resumed.row["test_metric"] == whole.row["test_metric"]
    assert resumed.row["final_train_loss"] == whole.row["final_train_loss"]


def test_sigterm_outside_training_interrupts_at_once():
    with preempt.sigterm_stops_training(interrupt_sigint=False):
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises before the next line
    assert signal.getsignal(signal.SIGTERM) is not preempt._handler  # the previous handler is back
