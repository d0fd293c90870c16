"""A sweep's budget, as the results folder records it: ``<out>/plan.json``, and the filter that keeps
the run records inside it.

``optbench sweep`` (and ``suite``) accepts a sweep file only after checking it against the studies
it resumes; it then writes, before any work, ``<out>/plan.json`` (the budget of every study it plans)
and ``<out>/sweep.yaml`` (the file itself). A sweep's budget may change between runs of the command
(``trials`` and ``eval_seeds`` are the keys that may; see ``harness.sweep``): runs beyond the last
accepted budget stay on disk, and ``within_budget`` leaves them out. This module is all a reader of
results needs to honour that (the leaderboard): it imports nothing of ``harness.sweep``, nor torch,
and pandas only when it filters.

``plan.json``, format 1::

    {"format": 1, "suite": "demo", "sweep_sha256": "<sha256 of the sweep.yaml written with it>",
     "studies": [{"study": "demo/llm/pydoc/muon", "trials": 20, "eval_seeds": [1, 2, 3],
                  "transfer_from": null, "branch_from": null, "direction": "min",
                  "budget": 1.0, "delay": 0, "cell": {}}, ...],
     "margins": {"everywhere": {"kind": "relative", "value": 0.01},
                 "benchmarks": [{"task": "lstm", "dataset": "pydoc", "margin": {"kind": "absolute", "value": 0.02}}]}}

one entry per study, in the sweep file's order: its name, its tune trials (slots 0..trials-1), its
eval seeds, the study whose best configuration it evaluates when it is a ``transfer_from`` entry,
the study it branches from (SoftX from X, or the full-budget study of a budget branch), the
direction of its metric (the direction the worker picks the best trial by; every record of the study
carries the same in its ``direction`` column, which is what the filter compares with), and its budget,
delay and axis cell (``harness.sweep.axes``; optional: absent in plans written before them).
``margins`` (optional) holds the practical margins the sweep file declares (``declared_margins``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.vocab import DIRECTIONS, Metric

PLAN_FILE = "plan.json"
SWEEP_FILE = "sweep.yaml"
PLAN_FORMAT = 1  # raised whenever a reader of an older plan.json would misread a newer one
STUDY_KEYS = ("study", "trials", "eval_seeds", "transfer_from", "branch_from", "direction")


def plan_path(out: str | os.PathLike) -> Path:
    """Where a results folder keeps its sweep's budget."""
    return Path(out) / PLAN_FILE


def sweep_digest(text: str) -> str:
    """The ``sweep_sha256`` of a sweep file's text: ties ``plan.json`` to the ``sweep.yaml`` it was
    written with."""
    return hashlib.sha256(text.encode()).hexdigest()


def _rerun(out: Path) -> str:
    return (
        f"re-run the optbench sweep (or suite) command that wrote {out}, with the same sweep file, --out and "
        f"--storage: it writes {PLAN_FILE} before it runs anything (finished runs are not run again)"
    )


def read_plan(out: str | os.PathLike) -> dict | None:
    """The budget of the sweep whose results folder is ``out``, as written in ``<out>/plan.json``;
    None when ``out`` is not a sweep's folder (no ``plan.json``, no ``sweep.yaml``: ``optbench run``).

    ``UserError`` (exit 2) when it cannot be trusted: a ``sweep.yaml`` without ``plan.json`` (a
    folder written before ``plan.json`` existed), a ``plan.json`` that is unreadable, of another
    format, or that was not written with the ``sweep.yaml`` next to it. Each message names the
    command that writes it again."""
    out = Path(out)
    path, sweep_file = plan_path(out), out / SWEEP_FILE
    if not path.is_file():
        if sweep_file.is_file():
            raise UserError(
                f"{out} holds a sweep file ({sweep_file}) but not the budget written with it ({path}; "
                f"a sweep run by an optbench older than that file lacks it); {_rerun(out)}"
            )
        return None
    try:
        plan = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read the budget of the sweep in {out}: {path}: {exc}; {_rerun(out)}") from None
    problem = _problem(plan)
    if problem:
        raise UserError(f"cannot read the budget of the sweep in {out}: {path} {problem}; {_rerun(out)}")
    if sweep_file.is_file():
        try:
            digest = sweep_digest(sweep_file.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {sweep_file}: {exc}; {_rerun(out)}") from None
        if digest != plan["sweep_sha256"]:
            raise UserError(
                f"{path} was not written with the sweep file {sweep_file} next to it (edited, or a run "
                f"of the command stopped between the two); {_rerun(out)}"
            )
    return plan


def _problem(plan: Any) -> str:
    """What is wrong with a parsed ``plan.json`` ("" when nothing)."""
    if not isinstance(plan, dict) or "format" not in plan:
        return "is not an optbench sweep budget (no 'format')"
    if plan["format"] != PLAN_FORMAT:
        return (
            f"has format {plan['format']!r}, this optbench reads format {PLAN_FORMAT} (written by another "
            "version of optbench)"
        )
    if not isinstance(plan.get("sweep_sha256"), str) or not isinstance(plan.get("studies"), list):
        return "lacks 'sweep_sha256' or 'studies'"
    for i, study in enumerate(plan["studies"]):
        if not isinstance(study, dict) or any(k not in study for k in STUDY_KEYS):
            return f"studies[{i}] lacks one of {', '.join(STUDY_KEYS)}"
        ints = (study["trials"], *study["eval_seeds"]) if isinstance(study["eval_seeds"], list) else (None,)
        if not isinstance(study["study"], str) or not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            return f"studies[{i}] has a malformed study name, trials or eval_seeds"
        if study["direction"] not in DIRECTIONS:
            return f"studies[{i}] has direction {study['direction']!r}; known: {', '.join(DIRECTIONS)}"
    return ""


def within_budget(frame: Any, plan: dict) -> tuple[Any, int]:
    """The run rows of ``frame`` that belong to the budget ``plan`` (``read_plan``), and how many were
    left out: tune rows of slots 0..trials-1 of each study, and eval rows of the listed eval seeds
    that evaluate the best of those slots (for a ``transfer_from`` study, the donor's best; for an
    untuned branch, its parent's). The best is found from the records as the worker finds it from
    the journal: the best objective among complete (not pruned, not failed) tune runs, ties to the
    lowest slot. Rows of studies the plan does not hold (other entries, ``optbench run``) are left
    out too."""
    import pandas as pd

    if len(frame) == 0:
        return frame, 0
    plans = {p["study"]: p for p in plan["studies"]}
    keep = pd.Series(False, index=frame.index)
    phase, study = frame["phase"].astype(str), frame["study"].astype(str)
    trial = pd.to_numeric(frame["trial"], errors="coerce")
    seed = pd.to_numeric(frame["seed"], errors="coerce")
    best: dict[str, int | None] = {}
    for name, p in plans.items():
        tune = (study == name) & (phase == "tune") & (trial < p["trials"])
        keep |= tune
        rows = frame[tune & ~frame["status"].astype(str).isin(("pruned", "failed"))]
        best[name] = _best_slot(trial[rows.index], rows["objective"], rows["direction"])
    for name, p in plans.items():
        evals = (study == name) & (phase == "eval") & seed.isin(list(p["eval_seeds"]))
        donor = plans.get(p["transfer_from"]) if p["transfer_from"] else p
        if p["branch_from"] is not None and p["trials"] == 0 and not p["transfer_from"]:
            # an untuned branch evaluates its parent's best (with a transfer_from: the donor's)
            donor = plans.get(p["branch_from"])
        if donor is not None and donor["trials"] > 0:
            evals &= trial == (best[donor["study"]] if best[donor["study"]] is not None else -1)
        keep |= evals
    return frame[keep], int((~keep).sum())


def declared_margins(plan: dict | None) -> dict[str, Any]:
    """The margins ``plan.json`` declares, as plain data: ``{"everywhere": {"kind", "value"} | None,
    "benchmarks": [{"task", "dataset", "margin": {"kind", "value"}}]}``; ``{}`` when none (or no plan)."""
    margins = (plan or {}).get("margins") or {}
    return margins if isinstance(margins, dict) else {}


def reused_tuning(plan: dict | None) -> list[tuple[str, str]]:
    """(study, donor) for each study that evaluates another cell's tuned configuration of the same
    entry, dataset and optimizer (a sweep file's ``reuse_tuning: true``), as ``plan.json`` lists them."""
    out = []
    for study in (plan or {}).get("studies", ()):
        donor = study.get("transfer_from")
        if donor and study["study"].split("/")[:4] == donor.split("/")[:4]:
            out.append((study["study"], donor))
    return out


def _best_slot(slots: Any, objectives: Any, directions: Any) -> int | None:
    """The slot of the best objective (each compared in its row's direction; NaN never best), ties to
    the lowest slot; None when no row has a number."""
    pick = None
    for slot, value, direction in sorted(zip(slots, objectives, directions), key=lambda r: r[0]):
        value = float(value) if value is not None else math.nan
        if math.isnan(value):
            continue
        if pick is None or Metric("objective", direction).better(value, pick[1]):
            pick = (int(slot), value)
    return None if pick is None else pick[0]
