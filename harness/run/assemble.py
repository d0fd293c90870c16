"""A finished run's record: the ``RunRecord`` row and the long curve table ``harness.run.loop.run``
writes, from the spec, the session and the loop state. Also the provenance every record carries
(the optbench commit, the time)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from harness.results import record
from harness.results.record import finite_or_nan
from harness.run.session import LoopState, Session, device_label, peak_memory, state_bytes
from harness.spec import RunSpec
from harness.task import Task


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def assemble(
    spec: RunSpec,
    task: Task,
    session: Session,
    state: LoopState,
    status: str,
    detail: str,
    started: str,
    wall_seconds: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's record row (``harness.results.record.from_spec``: the spec's columns there, the
    outcome measured here) and its long curve table."""
    total = state.total
    steps_done = state.done
    loss_values = state.losses[: max(steps_done, 0)].tolist()
    curves = [{"step": i + 1, "split": "train", "name": "loss", "value": v} for i, v in enumerate(loss_values)]
    curves += state.curves
    tail = [v for v in loss_values[-max(1, len(loss_values) // 10) :] if math.isfinite(v)]
    metric = task.metric.name
    val_metric = state.val_metrics.get(metric, math.nan) if status in ("ok", "pruned") else math.nan
    test_metric = state.test_metrics.get(metric, math.nan) if status == "ok" else math.nan
    objective = val_metric if status in ("ok", "pruned") else task.penalty
    environment = {
        "git_sha": git_sha(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device_label(session.device),
        "world_size": session.dist.world_size,
    }
    run_record = record.from_spec(
        spec,
        environment=environment,
        steps=spec.steps if spec.steps is not None else total,
        steps_done=steps_done,
        status=status,
        status_detail=detail,
        metric=metric,
        direction=task.metric.direction,
        val_metric=finite_or_nan(val_metric),
        test_metric=finite_or_nan(test_metric),
        best_val_metric=finite_or_nan(state.best_val),
        best_val_step=state.best_step,
        objective=float(objective) if _finite(objective) else float(task.penalty),
        penalty=float(task.penalty),
        target=float(task.target) if task.target is not None else math.nan,
        steps_to_target=state.steps_to_target,
        final_train_loss=sum(tail) / len(tail) if tail else math.nan,
        metrics=json.dumps(
            {"val": state.val_metrics, "test": state.test_metrics}, sort_keys=True, default=finite_or_nan
        ),
        train_seconds=state.train_seconds,
        eval_seconds=state.eval_seconds,
        optimizer_seconds=state.optimizer_seconds,
        wall_seconds=wall_seconds,
        peak_memory_bytes=peak_memory(session.device),
        optimizer_state_bytes=state_bytes(session.optimizer),
        param_count=sum(p.numel() for p in session.params),
        implementation=session.opt_spec.implementation,
        started_at=started,
        finished_at=now(),
        resumed_at_step=state.resumed_at,
    )
    row = run_record.row()
    for c in curves:
        c["run_id"] = spec.run_id
    return row, curves
