"""The training loop: one function runs a ``RunSpec`` and returns its record.

The CLI, the sweeps and the tests all go through :func:`run`. The loop owns what must be identical for
every optimizer: the LR schedule (linear warmup, then cosine / linear decay or constant), gradient
clipping, the eval schedule, divergence detection, device placement, mixed precision and timing. Seeds
reach model init, data order and dropout only through explicit generators derived from the run seed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness import checkpoint as ckpt
from harness import plugins, records
from harness.checkpoint import CheckpointPolicy
from harness.errors import UserError, unknown
from harness.run_record import RunRecord
from harness.session import (  # noqa: F401  (re-exported: harness.loop is where people look for them)
    Dist,
    LoopState,
    Session,
    Timer,
    derive_seed,
    device_label,
    init_distributed,
    micro_batches,
    peak_memory,
    pick_device,
    state_bytes,
)
from harness.spec import RunSpec, dataset_id
from harness.task import SIZES, Task

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
# Resolution: names -> a fully specified RunSpec


def resolve(
    *,
    task: str,
    optimizer: str,
    dataset: str | None = None,
    size: str = "tiny",
    hparams: Mapping[str, Any] | None = None,
    task_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    steps: int | None = None,
    phase: str = "run",
    suite: str = "adhoc",
    study: str = "",
    trial: int | None = None,
    amp: str | None = None,
    compile: bool = False,
    data_dir: str | os.PathLike | None = None,
    replicate: int = 0,
) -> tuple[RunSpec, Task]:
    """Build the task and a fully resolved ``RunSpec`` (defaults merged, steps filled in).

    Raises :class:`UserError` for unknown names and impossible values, before anything is written.
    """
    task_spec = plugins.task(task)  # a built-in, an entry point or pkg.module:ATTR; else UserError
    opt_spec = plugins.optimizer(optimizer)
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise UserError(f"invalid steps: {steps!r} (must be a positive integer)")
    if not isinstance(seed, int) or seed < 0:
        raise UserError(f"invalid seed: {seed!r} (must be a non-negative integer)")
    if amp not in (None, "bf16"):
        raise UserError(f"invalid amp: {amp!r}; known: bf16 (or none)")
    if size not in SIZES:
        raise unknown("size", size, SIZES)
    built = task_spec.make(size, dataset=dataset, data_dir=data_dir, **dict(task_options or {}))
    try:
        resolved_hp = opt_spec.resolve(hparams)
        # Validate values now (the optimizer constructor checks them) on a throwaway parameter, so a
        # bad value is a clean error before anything runs or is written.
        probe = {"matrix": [nn.Parameter(torch.zeros(2, 2))], "vector": [nn.Parameter(torch.zeros(2))]}
        opt_spec.build(probe, resolved_hp, steps or built.steps)
    except (ValueError, TypeError) as exc:  # TypeError: a plugin class refusing an argument
        raise UserError(str(exc)) from None
    spec = RunSpec(
        task=task,
        optimizer=optimizer,
        dataset=built.dataset,
        size=built.size,
        hparams=resolved_hp,
        task_options=dict(built.options),
        seed=seed,
        steps=steps or built.steps,
        phase=phase,
        suite=suite,
        study=study,
        amp=amp,
        compile=compile,
        trial=trial,
        replicate=replicate,
    )
    return spec, built


# --------------------------------------------------------------------------------------------------
# Pure helpers


def lr_factor(step: int, total: int, warmup: int, kind: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the base LR at 0-based ``step`` of ``total``: linear warmup over ``warmup`` steps
    (from 1/warmup to 1), then cosine or linear decay to ``min_ratio`` at the last step, or constant."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    span = max(1, total - warmup - 1)
    progress = min(1.0, (step - warmup) / span)
    if kind == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif kind == "linear":
        shape = 1.0 - progress
    else:
        raise ValueError(f"unknown schedule {kind!r}; known: constant, cosine, linear")
    return min_ratio + (1.0 - min_ratio) * shape


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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


def _complete_spec(spec: RunSpec, task: Task | None, data_dir, out_dir) -> tuple[RunSpec, Task | None]:
    """Complete a hand-made spec so its run_id names the run that actually happens: hyperparameters
    merged over the optimizer's defaults; dataset, steps and task options from the task. Returns
    ``(spec, None)`` when the completed spec already has a record under ``out_dir`` and no task was
    built (building a task can load a dataset: not worth it for a run that is skipped)."""
    hparams = plugins.optimizer(spec.optimizer).resolve(spec.hparams)
    if hparams != spec.hparams:
        spec = spec.with_(hparams=hparams)
    if task is not None and spec.dataset and spec.steps is not None:
        return spec, task
    if task is None and spec.dataset and spec.steps is not None and out_dir is not None \
            and records.is_finished(out_dir, spec.run_id):
        return spec, None
    resolved, built = resolve(
        task=spec.task, optimizer=spec.optimizer, dataset=spec.dataset or None, size=spec.size,
        hparams=spec.hparams, task_options=spec.task_options, seed=spec.seed, steps=spec.steps,
        data_dir=data_dir,
    )
    spec = spec.with_(dataset=resolved.dataset, task_options=resolved.task_options, steps=resolved.steps)
    return spec, task or built


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

    Checkpoints (``harness.checkpoint``; only with ``out_dir``): saved by ``checkpoints`` (wall-clock
    cadence, chosen steps, steps kept after the run for branching). A run that finds a checkpoint of
    its own ``run_id`` under ``out_dir`` resumes from the latest one. ``branch_from`` names the
    checkpoint of *another* run (e.g. Signum at step S) to start from: same task, data, seed and step
    budget, this spec's optimizer (which must accept the parent's optimizer state, as SoftSignum
    accepts Signum's); the record names its parent and carries the parent's curves up to S.
    """
    t_wall = time.perf_counter()
    started = _now()
    spec, task = _complete_spec(spec, task, data_dir, out_dir)
    if out_dir is not None and records.is_finished(out_dir, spec.run_id):
        return RunResult(row=records.read_runs_file(records.run_path(out_dir, spec.run_id)), skipped=True)
    assert task is not None
    policy = checkpoints or CheckpointPolicy()

    session = Session.open(spec, task, device)
    resume = ckpt.load_latest(out_dir, spec.run_id) if out_dir is not None else None
    parent: dict[str, Any] | None = None
    state = LoopState.fresh(spec.steps or task.steps, session.device)
    if resume is not None:
        state = session.restore(resume, spec, own=True)
    elif branch_from is not None:
        loaded = ckpt.load(branch_from)
        _check_branch(spec, loaded, branch_from)
        state = session.restore(loaded, spec, own=False)
        parent = {"run_id": loaded["run_id"], "step": loaded["step"], "optimizer": loaded["optimizer_name"]}
    state.resumed_at = state.done if resume is not None else 0

    def save_checkpoint(step: int) -> None:
        if out_dir is not None and session.dist.main:
            ckpt.save(ckpt.path_for(out_dir, spec.run_id, step), session.checkpoint(spec, state))

    status, detail = train(spec, task, session, state, policy=policy, on_eval=on_eval, progress=progress,
                           save_checkpoint=save_checkpoint if out_dir is not None else None)
    row, curves = _assemble(spec, task, session, state, status, detail, started, parent,
                            wall_seconds=time.perf_counter() - t_wall)
    if out_dir is not None and session.dist.main:
        records.write_run(out_dir, row, curves)
        ckpt.prune(out_dir, spec.run_id, keep=policy.keep_steps)
    return RunResult(row=row, curves=curves, skipped=False)


def _check_branch(spec: RunSpec, loaded: Mapping[str, Any], where: Any) -> None:
    """A branch continues the parent's trajectory: everything but the optimizer must match."""
    parent = RunSpec.from_json(loaded["spec"])
    same = ("task", "dataset", "size", "task_options", "seed", "steps", "amp")
    diff = [k for k in same if getattr(parent, k) != getattr(spec, k)]
    if diff:
        raise UserError(f"cannot branch {spec.optimizer} from {where}: the parent run differs in "
                        f"{', '.join(diff)} (a branch shares task, data, seed and step budget with its parent)")


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
    """Train from ``state.done`` to the step budget (then the test evaluation). Updates ``state`` in
    place and returns ``(status, detail)``: ``ok``, ``diverged`` or ``pruned``."""
    total, dist, model, optimizer = state.total, session.dist, session.model, session.optimizer
    warmup = int(round(task.warmup_fraction * total))
    diag_every = max(1, total // DIAGNOSTIC_SAMPLES)
    eval_steps = set(range(task.eval_every, total + 1, task.eval_every)) | {total}
    timer = Timer(session.device)
    status, detail = "ok", ""
    last_save = time.monotonic()

    show = (sys.stderr.isatty() if progress is None else progress) and dist.main
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=state.done, desc=f"{spec.task}/{spec.optimizer}", unit="step",
                   leave=False, mininterval=0.5, file=sys.stderr)

    def first_bad(upto: int) -> int | None:
        window = state.losses[state.checked:upto]
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

    def evaluate(split: str) -> dict[str, float]:
        return _evaluate(task, model, session.data, split, session.autocast)

    batches = session.batches(state.done)
    model.train()
    t_train = time.perf_counter()
    try:
        for step in range(state.done, total):
            factor = lr_factor(step, total, warmup, task.schedule, task.min_lr_ratio)
            for group, base in zip(optimizer.param_groups, session.base_lrs):
                group["lr"] = base * factor
            loss = _forward_backward(task, session, next(batches))
            if task.grad_clip:
                torch.nn.utils.clip_grad_norm_(session.params, task.grad_clip,
                                               foreach=session.device.type != "cpu" or None)
            with timer():
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.losses[step] = loss.float()
            done = state.done = step + 1
            if bar is not None:
                bar.update(1)
            if done % diag_every == 0 and done not in eval_steps and state.has_diagnostics is not False:
                # ~100 samples per run of optimizer state (e.g. the SoftSignum temperature), so the
                # transition is visible even when evals are sparse; counted as eval time.
                t_diag = time.perf_counter()
                diag = _diagnostics(optimizer)
                state.has_diagnostics = bool(diag)
                state.curves += [{"step": done, "split": "opt", "name": k, "value": v} for k, v in diag.items()]
                state.eval_seconds += time.perf_counter() - t_diag
            if done in eval_steps or done - state.checked >= DIVERGENCE_CHECK_EVERY or policy.wants(done):
                bad = first_bad(done)
                if bad is not None:
                    status, detail = "diverged", f"non-finite training loss at step {bad + 1}"
                    state.done = bad
                    break
                state.checked = done
            if done in eval_steps:
                state.train_seconds += time.perf_counter() - t_train
                t_eval = time.perf_counter()
                state.val_metrics = evaluate("val")
                state.eval_seconds += time.perf_counter() - t_eval
                state.curves.append({"step": done, "split": "train", "name": "lr",
                                     "value": optimizer.param_groups[0]["lr"]})
                state.curves += [{"step": done, "split": "val", "name": k, "value": v}
                                 for k, v in state.val_metrics.items()]
                state.curves += [{"step": done, "split": "opt", "name": k, "value": v}
                                 for k, v in _diagnostics(optimizer).items()]
                value = state.val_metrics.get(task.metric.name, math.nan)
                if not _finite(value):
                    status, detail = "diverged", f"non-finite validation {task.metric.name} at step {done}"
                    state.done = done - 1  # the step that produced it does not count as done
                    break
                if math.isnan(state.best_val) or task.metric.better(value, state.best_val):
                    state.best_val, state.best_step = value, done
                if state.steps_to_target is None and task.target is not None and (
                    value == task.target or task.metric.better(value, task.target)
                ):
                    state.steps_to_target = done
                if bar is not None:
                    bar.set_postfix({task.metric.name: f"{value:.4g}"}, refresh=False)
                if on_eval is not None and done < total and on_eval(done, dict(state.val_metrics)):
                    status, detail = "pruned", f"pruned by the tuner at step {done}"
                    break
                t_train = time.perf_counter()
            # Checkpoints only at verified-finite steps (state.checked == done): then the saved losses
            # are the ones every DDP rank agreed on, and a resume never restarts from a diverged state.
            if save_checkpoint is not None and state.checked == done and (
                policy.wants(done) or (done < total and policy.every_seconds is not None
                                       and time.monotonic() - last_save >= policy.every_seconds)
            ):
                state.train_seconds += time.perf_counter() - t_train
                state.optimizer_seconds += timer.total()
                timer = Timer(session.device)
                save_checkpoint(done)
                last_save = time.monotonic()
                t_train = time.perf_counter()
        else:
            state.train_seconds += time.perf_counter() - t_train
    except torch.linalg.LinAlgError as exc:  # e.g. an SVD of a NaN momentum at the soft switch
        status, detail = "diverged", f"linear algebra failed at step {state.done + 1}: {exc}"
    finally:
        if bar is not None:
            bar.close()
    state.optimizer_seconds += timer.total()

    if status == "ok":
        t_eval = time.perf_counter()
        state.test_metrics = evaluate("test")
        state.eval_seconds += time.perf_counter() - t_eval
        state.curves += [{"step": total, "split": "test", "name": k, "value": v} for k, v in state.test_metrics.items()]
        if not _finite(state.test_metrics.get(task.metric.name, math.nan)):
            status, detail = "diverged", f"non-finite test {task.metric.name}"
    return status, detail


def _forward_backward(task: Task, session: Session, batch: Any) -> torch.Tensor:
    """Loss and gradients of one optimizer step's batch, split into ``task.grad_accum`` micro-batches
    (DDP all-reduces gradients only on the last one). Returns the detached step loss."""
    micro = micro_batches(batch, task.grad_accum)
    loss = None
    for i, mb in enumerate(micro):
        sync = contextlib.nullcontext() if session.dist.world_size == 1 or i == len(micro) - 1 \
            else session.train_model.no_sync()
        with sync:
            with session.autocast():
                part = task.loss(session.train_model, mb)
            if len(micro) > 1:
                part = part / len(micro)
            part.backward()
        loss = part.detach() if loss is None else loss + part.detach()
    return loss


# --------------------------------------------------------------------------------------------------
# The record


def _assemble(spec: RunSpec, task: Task, session: Session, state: LoopState, status: str, detail: str,
              started: str, parent: Mapping[str, Any] | None,
              wall_seconds: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's record row (a ``harness.run_record.RunRecord``: its fields are the columns) and its
    long curve table."""
    total = state.total
    steps_done = state.done
    loss_values = state.losses[:max(steps_done, 0)].tolist()
    curves = [{"step": i + 1, "split": "train", "name": "loss", "value": v} for i, v in enumerate(loss_values)]
    curves += state.curves
    tail = [v for v in loss_values[-max(1, len(loss_values) // 10):] if math.isfinite(v)]
    metric = task.metric.name
    val_metric = state.val_metrics.get(metric, math.nan) if status in ("ok", "pruned") else math.nan
    test_metric = state.test_metrics.get(metric, math.nan) if status == "ok" else math.nan
    objective = val_metric if status in ("ok", "pruned") else task.penalty
    opt_origin, task_origin = plugins.origin("optimizer", spec.optimizer), plugins.origin("task", spec.task)
    record = RunRecord(
        run_id=spec.run_id, schema_version=records.SCHEMA_VERSION, suite=spec.suite, study=spec.study,
        task=spec.task, dataset=dataset_id(spec.dataset), dataset_source=spec.dataset, size=spec.size,
        optimizer=spec.optimizer, phase=spec.phase, trial=spec.trial, replicate=spec.replicate, seed=spec.seed,
        steps=total, steps_done=steps_done,
        hparams=json.dumps(records.json_ready(spec.hparams), sort_keys=True),
        task_options=json.dumps(records.json_ready(spec.task_options), sort_keys=True),
        spec=spec.to_json(), amp=spec.amp or "", compile=spec.compile, status=status, status_detail=detail,
        metric=metric, direction=task.metric.direction,
        val_metric=records.finite_or_nan(val_metric), test_metric=records.finite_or_nan(test_metric),
        best_val_metric=records.finite_or_nan(state.best_val), best_val_step=state.best_step,
        objective=float(objective) if _finite(objective) else float(task.penalty), penalty=float(task.penalty),
        target=float(task.target) if task.target is not None else math.nan, steps_to_target=state.steps_to_target,
        final_train_loss=sum(tail) / len(tail) if tail else math.nan,
        metrics=json.dumps({"val": state.val_metrics, "test": state.test_metrics}, sort_keys=True,
                           default=records.finite_or_nan),
        train_seconds=state.train_seconds, eval_seconds=state.eval_seconds,
        optimizer_seconds=state.optimizer_seconds, wall_seconds=wall_seconds,
        peak_memory_bytes=peak_memory(session.device), optimizer_state_bytes=state_bytes(session.optimizer),
        param_count=sum(p.numel() for p in session.params), implementation=session.opt_spec.implementation,
        optimizer_origin=opt_origin.label(), optimizer_version=opt_origin.version,
        task_origin=task_origin.label(), task_version=task_origin.version,
        git_sha=git_sha(), torch_version=torch.__version__, python_version=platform.python_version(),
        device=device_label(session.device), world_size=session.dist.world_size,
        started_at=started, finished_at=_now(), resumed_at_step=state.resumed_at,
        branched_from=parent["run_id"] if parent else "", branch_step=int(parent["step"]) if parent else 0,
    )
    row = record.row()
    for c in curves:
        c["run_id"] = spec.run_id
    return row, curves
