"""SoftX branched from X inside a sweep (the Softsign paper's protocol: warm-start SoftSignum / SoftMuon
from a Signum / Muon checkpoint and relax only the tail).

A sweep optimizer entry ``{name: softsignum, branch_from: signum}`` makes, per (entry, dataset,
replicate), the softsignum plan a *child* of the signum plan (its *parent*):

- The child takes the parent's tuned configuration for the hyperparameters they share
  (``StudyPlan.shared``: lr, weight decay, momentum, ...); it tunes only its own (``alpha_sign`` as
  a list of choices, HardSwitchSign's ``switch_scale``), or nothing (then ``trials`` is 0).
- Every parent run keeps its checkpoint at each branch point ``S = floor(alpha_sign K)`` the children
  can ask for (``keep_steps``): its tune runs only when a child tunes, its eval runs always.
- A child's tune run starts from the parent's best tune run (same tune seed, same shared
  configuration) at its S; a child's eval run on seed s from the parent's eval run on seed s. It
  runs only steps S+1..K: SoftX costs about ``1 - alpha_sign`` of a run. Its record names the parent
  run (``branched_from``) and S (``branch_step``); on CPU it equals the unbranched run exactly.
- A branched run's spec names its parent run and S (``branched_from``, ``branch_step``), so its run_id
  is its own: it differs from the run_id of the same run from scratch.
- Whatever is wrong with the parent's checkpoint -- missing (deleted by hand, or the parent ran before
  the branch was configured), truncated, unreadable, another run's -- is not the child's failure: the
  child runs from scratch (its from-scratch run_id, ``branched_from`` empty), which gives the same
  result, with a warning. Only a failure of the child's own training counts toward giving it up.
- The child waits for the parent: its tuning until the parent's tuning is complete (the shared
  configuration is then known), its evaluation until the parent's evaluation is complete.
- When the whole sweep is complete, the kept checkpoints are deleted.

This module holds the rules, over the sweep and the results folder; what the storage says about a
parent (its tuned configuration, whether a child may start, what a child evaluates) is read by
``harness.sweep.ledger.Ledger``.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.sweep.plan import StudyPlan, Sweep
from harness.sweep.resolve import resolve_run
from harness.sweep.storage import SweepWarning


def shared_part(plan: StudyPlan, parent_hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters a child takes from its parent: the shared keys, resolved over the parent's
    defaults (so a default the parent did not search is passed on explicitly)."""
    from harness import plugins

    assert plan.branch_from is not None  # asked of branch (child) plans only
    parent = plugins.optimizer(plan.branch_from.split("/")[3])
    resolved = parent.resolve(dict(parent_hparams))
    return {k: resolved[k] for k in plan.shared}


def _alphas(plan: StudyPlan) -> set[float]:
    """Every alpha_sign a child plan can run with: its choices when searched, else its fixed value or
    its optimizer's default."""
    from harness import plugins
    from optimizers._base import Categorical

    dist = plan.space.get("alpha_sign")
    if isinstance(dist, Categorical):
        return {float(a) for a in dist.choices}
    return {float(plan.fixed.get("alpha_sign", plugins.optimizer(plan.optimizer).defaults["alpha_sign"]))}


def keep_steps(sweep: Sweep, plan: StudyPlan, phase: str, spec: Any) -> frozenset[int]:
    """Branch points a run ``spec`` of ``plan`` (a parent) keeps its checkpoints at: every step a
    child can start from (``harness.run.lineage.branch_step``): a SoftX child's S = floor(alpha_sign T)
    for each alpha_sign it can run, a budget child's decay start D(T) (a SoftX budget child's
    min(S(T), D(T))). Tune runs keep them only for children that tune (they branch from the best tune
    run). A child that cannot branch from this run keeps nothing: it runs from scratch (warned then)."""
    from harness import plugins
    from harness.run.lineage import BranchRefused, branch_step

    steps: set[int] = set()
    for child in sweep.children(plan):
        if phase == "tune" and child.trials == 0:
            continue
        has_alpha = "alpha_sign" in plugins.optimizer(child.optimizer).defaults
        for alpha in _alphas(child) if has_alpha else {None}:
            hparams = dict(spec.hparams) if alpha is None else {**spec.hparams, "alpha_sign": alpha}
            probe = spec.with_(optimizer=child.optimizer, budget=child.budget, hparams=hparams, study=child.study)
            try:
                steps.add(branch_step(probe, spec))
            except BranchRefused:
                continue
    return frozenset(s for s in steps if 0 < s <= int(spec.steps))


def branch_start(
    sweep: Sweep,
    out: str | Path,
    plan: StudyPlan,
    spec: Any,
    parent_hparams: Mapping[str, Any],
    parent_slot: int | None,
) -> tuple[Any, Path | None]:
    """The run ``spec`` of child ``plan`` as it starts: branched from the parent's run of the same
    seed and shared configuration at the step the child starts from (SoftX: its switch S; a budget
    branch: its decay start; ``harness.run.lineage.branch_step``), the spec naming that parent (so its
    run_id is the branched run's), with the checkpoint to start from; or ``(spec, None)``, a run from
    scratch, when the parent has no tune runs, cannot start this run, or its checkpoint is missing
    (with a warning)."""
    from harness.run import checkpoint as ckpt  # torch: imported only when a run is about to start
    from harness.run.lineage import BranchRefused, branch_step

    assert plan.branch_from is not None  # asked of branch (child) plans only
    parent = sweep.plan(plan.branch_from)
    if spec.phase == "tune" and parent.trials == 0:
        return spec, None  # an untuned parent has no tune runs to branch from
    parent_spec, _ = resolve_run(sweep, parent, parent_hparams, spec.seed, spec.phase, parent_slot)
    try:
        step = branch_step(spec, parent_spec)
    except BranchRefused as exc:
        warnings.warn(
            f"{plan.study}: {exc}; running {spec.optimizer} seed {spec.seed} from scratch", SweepWarning, stacklevel=2
        )
        return spec, None
    path = ckpt.path_for(out, parent_spec.run_id, step)
    if path.is_file():
        return spec.with_(branched_from=parent_spec.run_id, branch_step=step), path
    warnings.warn(
        f"{plan.study}: the checkpoint of {parent.optimizer} run {parent_spec.run_id} at step {step} is missing "
        f"({path}); running {spec.optimizer} seed {spec.seed} from scratch instead (same result, full cost)",
        SweepWarning,
        stacklevel=2,
    )
    return spec, None


def from_scratch(plan: StudyPlan, spec: Any, why: Exception) -> Any:
    """The parent checkpoint ``spec`` was to start from cannot start it (``why``: unreadable, of another
    run, ...): the same run from scratch, with its own run_id, and a warning. Not the child's failure."""
    from harness.run.lineage import unbranched

    warnings.warn(
        f"{plan.study}: {why}; running {spec.optimizer} seed {spec.seed} from scratch instead (same result, full cost)",
        SweepWarning,
        stacklevel=2,
    )
    return unbranched(spec)


def cleanup(out: str | Path) -> None:
    """The sweep is complete: no run will branch any more; delete the kept checkpoints."""
    shutil.rmtree(Path(out) / "checkpoints", ignore_errors=True)
