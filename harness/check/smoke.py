"""``optbench check``, smoke section: every registered task x every registered optimizer at ``tiny``
size on the device, a few steps each, through the same ``harness.run.resolve.resolve`` + ``harness.run.loop.run``
that ``optbench run`` and the sweeps use (no ``out_dir``: nothing is written). With bf16 autocast
working on the device, every cell runs a second time with ``amp="bf16"``.

What passes (the smoke asks "does the install work here", not "is the default a good configuration"):
  pass       the run finished with status ``ok`` (train steps, evals, test metric, record assembled).
  pass*      it diverged (non-finite loss: status ``diverged``) at the optimizer's defaults, which are
             tuned for full-size runs, and finished ``ok`` when re-run with every learning rate
             (``lr``, ``aux_lr``, ``*_lr``) divided by 10. The defaults are not this check's business.
  FAIL       an exception (the first line is reported), a time-out, or divergence even at a tenth of the
             learning rate: a few tiny steps that are non-finite at such a step size point at a broken
             kernel (e.g. a bf16 path on a GPU), not at a learning rate.
  n/a        bf16 cells on a device where bf16 autocast does not work (reported in the environment).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from harness.check.env import first_line

PASS, PASS_RETRY, FAIL, NOT_APPLICABLE = "pass", "pass*", "FAIL", "n/a"
LR_RETRY_FACTOR = 0.1
_LR_KEY = re.compile(r"(?:.*_)?lr(?:_.*)?")


@dataclass(frozen=True)
class Cell:
    task: str
    optimizer: str
    amp: str | None = None  # None (fp32) or "bf16"

    @property
    def label(self) -> str:
        return f"{self.task}/{self.optimizer}" + (f" [{self.amp}]" if self.amp else "")


def cells(amp_modes: tuple[str | None, ...]) -> list[Cell]:
    """Every (task, optimizer, amp) optbench knows here: the built-ins and the installed plugins
    (entry points ``optbench.tasks`` / ``optbench.optimizers``), as they are now."""
    from harness import plugins

    task_names, opt_names = plugins.available("task"), plugins.available("optimizer")
    return [Cell(t, o, amp) for amp in amp_modes for t in task_names for o in opt_names]


def scaled_lrs(hparams: dict[str, Any], factor: float) -> dict[str, Any]:
    """The learning-rate hyperparameters (``lr``, ``aux_lr``, ``sgd_lr``, ...) multiplied by ``factor``."""
    return {
        k: v * factor
        for k, v in hparams.items()
        if _LR_KEY.fullmatch(k) and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _one_run(cell: Cell, device: torch.device, steps: int, hparams: dict[str, Any] | None) -> dict[str, Any]:
    from harness.run.loop import run
    from harness.run.resolve import resolve

    spec, task = resolve(
        task=cell.task, optimizer=cell.optimizer, size="tiny", steps=steps, amp=cell.amp, hparams=hparams
    )
    return run(spec, task=task, device=str(device), progress=False).row


def run_cell(
    cell: Cell,
    device: torch.device,
    steps: int,
    run_fn: Callable[[Cell, torch.device, int, dict[str, Any] | None], dict[str, Any]] = _one_run,
) -> dict[str, Any]:
    """Run one cell and classify it (see the module docstring). Exceptions become a FAIL row; a
    ``harness.check.sections.CheckTimeout`` (a BaseException) is left to the caller, which owns the clock."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "task": cell.task,
        "optimizer": cell.optimizer,
        "amp": cell.amp or "fp32",
        "label": cell.label,
    }
    try:
        row = run_fn(cell, device, steps, None)
        status, detail = (PASS, "") if row["status"] == "ok" else (FAIL, f"{row['status']}: {row['status_detail']}")
        if row["status"] == "diverged":
            from harness import plugins

            defaults = plugins.optimizer(cell.optimizer).defaults
            lower = scaled_lrs(dict(defaults), LR_RETRY_FACTOR)
            retry = run_fn(cell, device, steps, lower) if lower else row
            if retry["status"] == "ok":
                status = PASS_RETRY
                detail = f"diverged at the defaults ({row['status_detail']}); ok with " + ", ".join(
                    f"{k}={v:.3g}" for k, v in lower.items()
                )
            else:
                detail = (
                    f"diverged at the defaults and with the learning rates x{LR_RETRY_FACTOR:g}: "
                    f"{retry['status_detail']}"
                )
    except Exception as exc:
        status, detail = FAIL, first_line(exc)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # an OOM in one cell must not starve the next ones
    out.update(status=status, detail=detail, seconds=time.perf_counter() - t0)
    return out


def failed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == FAIL]


def print_table(rows: list[dict[str, Any]], log: Callable[[str], None]) -> None:
    """A task x optimizer matrix; with two precisions each cell reads ``fp32|bf16``. Then one line per
    failed or retried cell with its first line."""
    amps = list(dict.fromkeys(r["amp"] for r in rows))
    tasks_ = list(dict.fromkeys(r["task"] for r in rows))
    opts = list(dict.fromkeys(r["optimizer"] for r in rows))
    by = {(r["task"], r["optimizer"], r["amp"]): r["status"] for r in rows}
    cell = {t: {o: "|".join(by.get((t, o, a), "-") for a in amps) for o in opts} for t in tasks_}
    width = max([len(o) for o in opts] + [len(c) for row in cell.values() for c in row.values()]) + 2
    log(f"  {'task':<16}" + "".join(f"{o:<{width}}" for o in opts) + ("  (cells: " + "|".join(amps) + ")"))
    for t in tasks_:
        log(f"  {t:<16}" + "".join(f"{cell[t][o]:<{width}}" for o in opts))
    for r in rows:
        if r["status"] in (FAIL, PASS_RETRY):
            log(f"  {r['status']:<6}{r['label']}: {r['detail']}")
