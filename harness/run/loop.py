"""The training loop: one function runs a ``RunSpec`` and returns its record.

The CLI, the sweeps and the tests all go through :func:`run` (names become a ``RunSpec`` in
``harness.run.resolve``). The loop owns what must be identical for every optimizer: the LR schedule
(``harness.run.schedules``: the task's, or the spec's override such as wsd), the gradient delay
(``harness.run.delay``), gradient clipping, the eval schedule, divergence detection, device placement
and mixed precision; its clocks live in ``harness.run.timing``. Seeds reach model init, data order and
dropout only through explicit generators derived from the run seed.

One step: forward and backward (micro-batches), the delay swap (``.grad`` becomes the gradient of
``delay`` steps ago), clipping (of the applied gradient), the optimizer step at ``base lr * factor``.
A budget run (``spec.budget`` < 1) takes ``T = spec.train_steps`` of the ``K = spec.steps`` steps,
its schedule over ``T`` (warmup from ``K``), its diagnostics at the full run's cadence.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from harness.results import store as records
from harness.run import checkpoint as ckpt
from harness.run import preempt, schedules
from harness.run.assemble import assemble, git_sha  # noqa: F401  (git_sha: re-exported)
from harness.run.assemble import now as _now
from harness.run.checkpoint import CheckpointPolicy
from harness.run.lineage import BranchRefused, branch_spec
from harness.run.resolve import complete_spec, run_schedule
from harness.run.session import (  # noqa: F401  (re-exported: harness.run.loop is where people look for them)
    Dist,
    LoopState,
    Session,
    derive_seed,
    device_label,
    init_distributed,
    micro_batches,
    peak_memory,
    pick_device,
    state_bytes,
)
from harness.run.timing import RunClock, Timer
from harness.spec import DataChanged, RunSpec, dataset_id
from harness.task import Task

if TYPE_CHECKING:
    from torch.nn.parallel import DistributedDataParallel

_Timer = Timer  # the name tests and older code use

# How often (in steps) the loop looks at the loss on the host to detect divergence. Between checks the
# losses stay on the device, so a GPU step never waits for the host.
DIVERGENCE_CHECK_EVERY = 25
# Optimizer diagnostics (temperature, saturation) are sampled about this many times per run.
DIAGNOSTIC_SAMPLES = 100


@dataclass
class RunResult:
    """What :func:`run` returns: the record row, its curves, and whether it was already on disk."""

    row: dict[str, Any]
    curves: list[dict[str, Any]] = field(default_factory=list)
    skipped: bool = False

    def curve(self, split: str, name: str) -> list[float]:
        """Values of one curve in step order, e.g. ``curve("train", "loss")`` (empty when skipped)."""
        points = sorted((c["step"], c["value"]) for c in self.curves if c["split"] == split and c["name"] == name)
        return [value for _, value in points]


# --------------------------------------------------------------------------------------------------
# Pure helpers


def lr_factor(step: int, total: int, warmup: int, kind: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the base LR at 0-based ``step`` of ``total``: linear warmup over ``warmup`` steps
    (from 1/warmup to 1), then cosine or linear decay to ``min_ratio`` at the last step, or constant
    (``harness.run.schedules.lr_factor``, which the loop calls, gives the same floats)."""
    return schedules.lr_factor(step, total, schedules.Schedule(kind, warmup, min_ratio))


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _evaluate(task: Task, model: nn.Module, data: Any, split: str, autocast) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast():
            out = task.evaluate(model, data, split)
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in out.items()}


def _diagnostics(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    fn = getattr(optimizer, "diagnostics", None)
    if fn is None:
        return {}
    try:
        return {k: float(v) for k, v in fn().items()}
    except Exception:  # diagnostics must never kill a run
        return {}


# --------------------------------------------------------------------------------------------------
# One run: the spec completed (harness.run.resolve), trained, its record assembled


def run(
    spec: RunSpec,
    *,
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str | None = None,
    progress: bool | None = None,
    task: Task | None = None,
    on_eval: Callable[[int, dict[str, float]], bool] | None = None,
    checkpoints: CheckpointPolicy | None = None,
    branch_from: str | os.PathLike | None = None,
) -> RunResult:
    """Run ``spec`` to completion and return its record (and write it under ``out_dir`` if given).

    A finished ``run_id`` already under ``out_dir`` is not run again (``skipped=True``). A run whose
    loss or validation metric becomes non-finite stops with status ``diverged`` and objective
    ``task.penalty``; it does not raise. ``on_eval(step, val_metrics) -> stop`` lets a tuner prune: a
    pruned run is recorded with status ``pruned``.

    Checkpoints (``harness.run.checkpoint``; only with ``out_dir``): saved by ``checkpoints`` (wall-clock
    cadence, chosen steps, steps kept after the run for branching); each new one replaces the older
    ones but the kept steps. A run that finds a checkpoint of its own run (``harness.run.lineage``) under
    ``out_dir`` resumes from the latest one; a stray one of another run is moved aside.

    ``branch_from`` names the checkpoint of *another* run (e.g. Signum at step S; a path, or the dict
    ``harness.run.checkpoint.load`` returned) to start from: it must be this run's first S steps
    (``harness.run.lineage.branch_spec``: same task, data, seed, step budget, schedule, delay and shared
    hyperparameters; S this optimizer's switch step, or for a budget run under wsd its decay start
    ``harness.run.lineage.branch_step``). The spec then gets ``branched_from`` / ``branch_step``, so its own
    run_id; the record carries the parent's curves up to S. A spec that already names its parent finds
    the parent's checkpoint under ``out_dir``. Anything wrong with the parent checkpoint (missing,
    unreadable, another run's) raises ``harness.run.lineage.BranchRefused`` before a step runs or a file is
    written: the CLI exits 2, a sweep runs the child from scratch.

    A ``path:`` dataset is held to the content it had when the run started: a file changed while the
    run trained raises ``harness.spec.DataChanged`` and writes no record.
    """
    t_wall = time.perf_counter()
    started = _now()
    parent: Mapping[str, Any] | None = None
    adopt = branch_from is not None and not spec.branched_from  # the run_id is known once the parent is read
    spec, task = complete_spec(spec, task, data_dir, None if adopt else out_dir)
    if adopt:
        parent = _read_parent(branch_from)
        spec = branch_spec(spec, parent, branch_from)
    data_key = spec.dataset_key  # what the data is at the start (a path: file's content)
    if out_dir is not None and records.is_finished(out_dir, spec.run_id):
        return RunResult(row=records.read_runs_file(records.run_path(out_dir, spec.run_id)), skipped=True)
    assert task is not None
    policy = checkpoints or CheckpointPolicy()

    resume = ckpt.load_latest(out_dir, spec) if out_dir is not None else None
    if resume is None and spec.branched_from and parent is None:
        where = (
            branch_from
            if branch_from is not None
            else (ckpt.path_for(out_dir, spec.branched_from, spec.branch_step) if out_dir is not None else None)
        )
        parent = _read_parent(where)
        branch_spec(spec, parent, where if isinstance(where, (str, os.PathLike)) else "the given checkpoint")
    session = Session.open(spec, task, device)
    state = LoopState.fresh(spec.train_steps or task.steps, session.device)
    if resume is not None:
        state = session.restore(resume, spec, own=True)
    elif parent is not None:
        state = session.restore(parent, spec, own=False)
    state.resumed_at = state.done if resume is not None else 0

    def save_checkpoint(step: int) -> None:
        if out_dir is not None and session.dist.main:
            ckpt.save(ckpt.path_for(out_dir, spec.run_id, step), session.checkpoint(spec, state))
            ckpt.prune_older(out_dir, spec.run_id, step, keep=policy.keep_steps)

    status, detail = train(
        spec,
        task,
        session,
        state,
        policy=policy,
        on_eval=on_eval,
        progress=progress,
        save_checkpoint=save_checkpoint if out_dir is not None else None,
    )
    if dataset_id(spec.dataset) != data_key:
        if out_dir is not None and session.dist.main:
            ckpt.prune(out_dir, spec.run_id, keep=policy.keep_steps)
        raise DataChanged(
            f"the data file {spec.dataset[len('path:') :]} changed while the run trained ({data_key} at "
            f"the start, {dataset_id(spec.dataset)} now): the run belongs to neither; run it on a file "
            "that stays put"
        )
    row, curves = assemble(
        spec, task, session, state, status, detail, started, wall_seconds=time.perf_counter() - t_wall
    )
    if out_dir is not None and session.dist.main:
        records.write_run(out_dir, row, curves)
        ckpt.prune(out_dir, spec.run_id, keep=policy.keep_steps)
    return RunResult(row=row, curves=curves, skipped=False)


def _read_parent(where: Any) -> Mapping[str, Any]:
    """The parent checkpoint ``where`` names (a path, or an already loaded dict); ``BranchRefused``
    when it is not there or cannot be read."""
    if isinstance(where, Mapping):
        return where
    if where is None:
        raise BranchRefused("the spec names a parent run, but no parent checkpoint was given (nor out_dir to find it)")
    if not Path(where).is_file():
        raise BranchRefused(f"the parent checkpoint {where} is missing")
    try:
        return ckpt.load(where)
    except ValueError as exc:
        raise BranchRefused(f"the parent checkpoint is unreadable: {exc}") from None


# --------------------------------------------------------------------------------------------------
# The loop


def train(
    spec: RunSpec,
    task: Task,
    session: Session,
    state: LoopState,
    *,
    policy: CheckpointPolicy,
    on_eval: Callable[[int, dict[str, float]], bool] | None = None,
    progress: bool | None = None,
    save_checkpoint: Callable[[int], None] | None = None,
) -> tuple[str, str]:
    """Train from ``state.done`` to the run's last step (then the test evaluation). Updates ``state`` in
    place and returns ``(status, detail)``: ``ok``, ``diverged`` or ``pruned``."""
    total, dist, optimizer = state.total, session.dist, session.optimizer
    schedule = run_schedule(spec, task)
    # The diagnostic cadence of the full budget: a budget run samples at the full run's steps, so one
    # branched from the full run's checkpoint carries the same samples as one from scratch.
    diag_every = max(1, int(spec.steps or total) // DIAGNOSTIC_SAMPLES)
    eval_steps = set(range(task.eval_every, total + 1, task.eval_every)) | {total}
    clock = RunClock(session.device, state)
    status, detail = "ok", ""
    last_save = time.monotonic()

    show = (sys.stderr.isatty() if progress is None else progress) and dist.main
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(
            total=total,
            initial=state.done,
            desc=f"{spec.task}/{spec.optimizer}",
            unit="step",
            leave=False,
            mininterval=0.5,
            file=sys.stderr,
        )

    def first_bad(upto: int) -> int | None:
        window = state.losses[state.checked : upto]
        if dist.world_size > 1:
            # Log the global mean loss and let every rank take the same divergence decision (a rank
            # that stopped alone would leave the others waiting in DDP's all-reduce).
            import torch.distributed as tdist

            tdist.all_reduce(window)
            window.div_(dist.world_size)
        finite = torch.isfinite(window)
        if bool(finite.all()):
            return None
        return state.checked + int((~finite).nonzero()[0, 0])

    batches = session.batches(state.done)
    session.model.train()
    clock.start()
    stack = contextlib.ExitStack()
    try:
        if dist.world_size == 1:  # a SIGTERM waits for the end of the step (harness.run.preempt); DDP stops at once
            stack.enter_context(preempt.training())
        for step in range(state.done, total):
            factor = schedules.lr_factor(step, total, schedule)
            for group, base in zip(optimizer.param_groups, session.base_lrs):
                group["lr"] = base * factor
            loss = _forward_backward(task, session, next(batches))
            if session.delay is not None:
                session.delay.apply()  # .grad is now the gradient of `delay` steps ago (clipped below)
            if task.grad_clip:
                torch.nn.utils.clip_grad_norm_(
                    session.params, task.grad_clip, foreach=session.device.type != "cpu" or None
                )
            with clock.step():
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.losses[step] = loss.float()
            done = state.done = step + 1
            if bar is not None:
                bar.update(1)
            if done % diag_every == 0 and done not in eval_steps and state.has_diagnostics is not False:
                # ~100 samples per run of optimizer state (e.g. the SoftSignum temperature), so the
                # transition is visible even when evals are sparse; counted as eval time.
                with clock.paused("eval_seconds"):
                    diag = _diagnostics(optimizer)
                state.has_diagnostics = bool(diag)
                state.curves += [{"step": done, "split": "opt", "name": k, "value": v} for k, v in diag.items()]
            if done in eval_steps or done - state.checked >= DIVERGENCE_CHECK_EVERY or policy.wants(done):
                bad = first_bad(done)
                if bad is not None:
                    status, detail = "diverged", f"non-finite training loss at step {bad + 1}"
                    state.done = bad
                    break
                state.checked = done
            if done in eval_steps:
                with clock.paused("eval_seconds"):  # the tuner's pruning call is no training time either
                    status, detail = _eval_step(task, session, state, clock, done)
                    if (
                        status == "ok"
                        and on_eval is not None
                        and done < total
                        and on_eval(done, dict(state.val_metrics))
                    ):
                        status, detail = "pruned", f"pruned by the tuner at step {done}"
                if status != "ok":
                    break
                if bar is not None:
                    bar.set_postfix({task.metric.name: f"{state.val_metrics[task.metric.name]:.4g}"}, refresh=False)
            # Checkpoints only at verified-finite steps (state.checked == done): then the saved losses
            # are the ones every DDP rank agreed on, and a resume never restarts from a diverged state.
            if (
                save_checkpoint is not None
                and state.checked == done
                and (
                    policy.wants(done)
                    or (
                        done < total
                        and policy.every_seconds is not None
                        and time.monotonic() - last_save >= policy.every_seconds
                    )
                )
            ):
                with clock.paused():
                    clock.settle()
                    save_checkpoint(done)
                last_save = time.monotonic()
            if preempt.requested():
                preempt.save_and_stop(done, state, first_bad, clock, save_checkpoint)
    except torch.linalg.LinAlgError as exc:  # e.g. an SVD of a NaN momentum at the soft switch
        status, detail = "diverged", f"linear algebra failed at step {state.done + 1}: {exc}"
    finally:
        stack.close()
        clock.stop()
        if bar is not None:
            bar.close()

    if status == "ok":
        with clock.paused("eval_seconds"):
            state.test_metrics = _evaluate(task, session.model, session.data, "test", session.autocast)
        state.curves += [{"step": total, "split": "test", "name": k, "value": v} for k, v in state.test_metrics.items()]
        if not _finite(state.test_metrics.get(task.metric.name, math.nan)):
            status, detail = "diverged", f"non-finite test {task.metric.name}"
    return status, detail


def _eval_step(task: Task, session: Session, state: LoopState, clock: RunClock, done: int) -> tuple[str, str]:
    """The validation at step ``done`` (called with the training clock paused): its curve points (the
    LR, the cumulative training seconds, the metrics, the optimizer's diagnostics), the best value and
    the steps to target. ``("diverged", why)`` for a non-finite metric, else ``("ok", "")``."""
    seconds = clock.train_seconds()  # the training time it took to get here, evaluation excluded
    state.val_metrics = _evaluate(task, session.model, session.data, "val", session.autocast)
    state.curves.append(
        {"step": done, "split": "train", "name": "lr", "value": session.optimizer.param_groups[0]["lr"]}
    )
    state.curves.append({"step": done, "split": "train", "name": "seconds", "value": seconds})
    state.curves += [{"step": done, "split": "val", "name": k, "value": v} for k, v in state.val_metrics.items()]
    state.curves += [
        {"step": done, "split": "opt", "name": k, "value": v} for k, v in _diagnostics(session.optimizer).items()
    ]
    value = state.val_metrics.get(task.metric.name, math.nan)
    if not _finite(value):
        state.done = done - 1  # the step that produced it does not count as done
        return "diverged", f"non-finite validation {task.metric.name} at step {done}"
    if math.isnan(state.best_val) or task.metric.better(value, state.best_val):
        state.best_val, state.best_step = value, done
    if (
        state.steps_to_target is None
        and task.target is not None
        and (value == task.target or task.metric.better(value, task.target))
    ):
        state.steps_to_target = done
    return "ok", ""


def _forward_backward(task: Task, session: Session, batch: Any) -> torch.Tensor:
    """Loss and gradients of one optimizer step's batch, split into ``task.grad_accum`` micro-batches
    (DDP all-reduces gradients only on the last one). Returns the detached step loss."""
    micro = micro_batches(batch, task.grad_accum)
    loss = None
    for i, mb in enumerate(micro):
        # cast: at world_size > 1 Session.open wrapped it in DDP (a compiled module forwards no_sync)
        sync = (
            contextlib.nullcontext()
            if session.dist.world_size == 1 or i == len(micro) - 1
            else cast("DistributedDataParallel", session.train_model).no_sync()
        )
        with sync:
            with session.autocast():
                part = task.loss(session.train_model, mb)
            if len(micro) > 1:
                part = part / len(micro)
            part.backward()
        loss = part.detach() if loss is None else loss + part.detach()
    assert loss is not None  # micro_batches gives task.grad_accum >= 1 micro-batches
    return loss
