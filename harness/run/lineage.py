"""Whose checkpoint is this? The identity checks behind resuming and branching.

Every checkpoint carries the identity of the run that wrote it: its ``run_id``, the canonical JSON of
the spec fields that define that run_id (``RunSpec.identity``) and the full spec. Two uses:

- **Resume** (``own_problem``): a run continues only from a checkpoint of its own run_id with its own
  identity. Anything else found in its folder (another seed's checkpoint copied there, a checkpoint
  of another optimizer, a file of an older format) is moved aside by ``harness.run.checkpoint`` with a
  warning, and the run starts from the next readable checkpoint of its own, or from scratch.
- **Branch** (``branch_spec``): a run starts from another run's checkpoint and takes only the steps
  after it. That is the same run as from scratch only when the parent *is* the child's first steps.
  Two kinds (``branch_step`` says which step each one starts at):

  * **SoftX from X** (the Softsign paper's protocol): X's checkpoint at SoftX's switch step
    S = floor(alpha_sign T). The parent is the optimizer SoftX declares (``OptimizerSpec.branch_from``)
    with the same value of every hyperparameter the two share.
  * **Budget branch** (issue 21; ``harness.run.schedules``): a run at budget b < 1 (T of the K
    steps) under a wsd schedule starts from a longer run of the same spec (budget 1.0: the full
    run) after ``D(T)`` steps, its decay start, where the longer run is still in the stable phase
    that every budget shares. Same optimizer, every hyperparameter equal. SoftX at budget b
    branches from X's full run at ``min(S(T), D(T))`` (up to there both take X's steps at the
    same LR); not from SoftX's own full run, whose optimizer state holds its own switch step.

  Both need the same task, data, seed, step budget K, precision, schedule and gradient delay (the
  checkpoint carries the delay's ring of stale gradients). Anything else is refused
  (``BranchRefused``) before a step runs or a file is written. An accepted branch returns the spec
  with ``branched_from`` / ``branch_step`` set: its run_id depends on the parent, so one run_id never
  names two different results.

  SoftX under a wsd schedule keeps its own switch: S = floor(alpha_sign T) whatever the schedule
  (alpha_sign stays a hyperparameter). Its soft phase is the decay window when S(T) = D(T); with
  S(T) >= D(T) (alpha_sign at least about 1 - decay_fraction) it lies inside the decay window,
  and its budget runs branch from X's stable phase at D(T).

Torch-free (the checkpoint is loaded by ``harness.run.checkpoint``; this module reads the dict).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from harness.errors import UserError
from harness.run.schedules import Schedule, ScheduleError, branch_points, decay_start
from harness.spec import RunSpec, canonical_json

# The spec fields a branch shares with its parent (the optimizer, its hyperparameters and the budget
# aside: ``branch_spec`` and ``branch_step`` check those). The delay: a parent's checkpoint holds its
# stale-gradient ring, which only a run of the same delay continues. The schedule: the same LR
# factors up to the branch step (for a budget branch, the same wsd schedule: the same stable phase).
SAME_TRAJECTORY = ("task", "size", "task_options", "seed", "steps", "amp", "delay", "schedule")


class BranchRefused(UserError):
    """The parent checkpoint cannot start this run: unreadable, of another run, or not the first S
    steps of this one. The CLI exits 2; a sweep runs the child from scratch instead (with a warning)."""


def stamp(spec: RunSpec) -> dict[str, Any]:
    """What a checkpoint of ``spec`` carries to say whose it is."""
    return {
        "run_id": spec.run_id,
        "identity": canonical_json(spec.identity()),
        "spec": spec.to_json(),
        "optimizer_name": spec.optimizer,
    }


def own_problem(spec: RunSpec, loaded: Mapping[str, Any]) -> str | None:
    """Why ``loaded`` is not a checkpoint of ``spec``'s own run (None: it is)."""
    theirs = loaded.get("run_id")
    if theirs != spec.run_id:
        return f"it belongs to run {theirs} ({_describe(loaded)}), not to run {spec.run_id}"
    if loaded.get("identity") != canonical_json(spec.identity()):
        return f"its spec differs from run {spec.run_id}'s although the run_id is the same (edited by hand?)"
    step = loaded.get("step")
    if not isinstance(step, int) or not 1 <= step <= int(spec.train_steps or step):
        return f"its step {step!r} is outside the run's 1..{spec.train_steps}"
    return None


def switch_step(spec: RunSpec) -> int | None:
    """S = floor(alpha_sign T) of a switching optimizer, T the steps the run takes (``train_steps``),
    or None when the optimizer has no switch."""
    from optimizers._switch import sign_phase_steps

    alpha = spec.hparams.get("alpha_sign")
    if alpha is None or spec.steps is None:
        return None
    train_steps = spec.train_steps
    assert train_steps is not None  # RunSpec.train_steps is None only while steps is
    return sign_phase_steps(float(alpha), int(train_steps))


def schedule_of(spec: RunSpec) -> Schedule | None:
    """The spec's schedule override as a ``Schedule`` (None: the task's own, never wsd)."""
    return Schedule.from_mapping(spec.schedule) if spec.schedule else None


def branch_step(child: RunSpec, parent: RunSpec) -> int:
    """The step of ``parent``'s checkpoint that ``child`` starts from (resolved specs), or
    ``BranchRefused`` naming why ``child`` cannot start from ``parent`` at all:

    - SoftX from X at the same budget: ``S(T)``, SoftX's switch.
    - a budget branch (``parent.budget > child.budget``; both wsd with the same schedule): the
      child's decay start ``D(T)``, where the parent is still in its stable phase. For SoftX from X
      ``min(S(T), D(T))``: up to there X's full run and SoftX's ``T``-step run take the same steps.
    A switching optimizer's budget run branches from X's run, not from its own longer run (whose
    state holds its own switch step). Only the relation is checked here; ``branch_spec`` checks the
    rest (same task, data, seed, schedule, delay, hyperparameters)."""
    from harness import plugins

    declared = plugins.optimizer(child.optimizer).branch_from
    same = parent.optimizer == child.optimizer
    if not same and declared is None:
        raise BranchRefused(
            f"{child.optimizer} is no other optimizer before a switch, so it cannot start from a "
            f"{parent.optimizer} checkpoint (softsignum, hardswitchsign: from signum; softmuon: from "
            f"muon); a budget run branches from a longer run of its own optimizer"
        )
    if not same and parent.optimizer != declared:
        raise BranchRefused(
            f"{child.optimizer} is {declared} before its switch, so it branches from a {declared} "
            f"checkpoint; this one is {parent.optimizer}'s"
        )
    if parent.budget < child.budget or (same and parent.budget == child.budget):
        raise BranchRefused(
            f"a {parent.optimizer} run at budget {parent.budget:g} cannot start a {child.optimizer} "
            f"run at budget {child.budget:g}: a branch shares the first steps of a run that goes on "
            "longer (a budget branch: a longer wsd run of the same optimizer; SoftX: X's run)"
        )
    if same and declared is not None:
        raise BranchRefused(
            f"a {child.optimizer} budget run branches from {declared}'s run (its stable phase), not "
            f"from a longer {child.optimizer} run, whose state holds that run's own switch step"
        )
    s = switch_step(child) if not same else None
    if not same and s is None:
        raise BranchRefused(f"{child.optimizer} has no alpha_sign, so no switch step to branch at")
    if parent.budget == child.budget:
        assert s is not None  # equal budgets: not the same optimizer (refused above), so s was checked
        return int(s)  # SoftX from X, same length: at the switch (the Softsign paper's protocol)
    sched = schedule_of(child)
    if sched is None or sched.kind != "wsd":
        raise BranchRefused(
            f"a run at budget {child.budget:g} branches from a longer run only under a wsd schedule "
            f"(its stable phase is every budget's); this one is "
            f"{sched.kind if sched else 'the task' + chr(39) + 's own'}: run it from scratch"
        )
    train_steps = child.train_steps
    assert train_steps is not None  # a resolved spec: its steps are set
    try:
        start = decay_start(int(train_steps), sched)
    except ScheduleError as exc:
        raise BranchRefused(str(exc)) from None
    step = start if s is None else min(s, start)
    if step < 1:
        raise BranchRefused(
            f"a budget-{child.budget:g} run of {child.train_steps} steps decays from its first step: "
            "it shares no step with a longer run; run it from scratch"
        )
    return step


def parent_spec(child: RunSpec) -> RunSpec:
    """The run ``child`` branches from by default (resolved, unbranched, as the CLI and a sweep make
    it): SoftX from X with the hyperparameters the two share (X's defaults for the rest), at the
    full budget when ``child`` is a budget run; a budget run of another optimizer from the same spec
    at the full budget. ``BranchRefused`` when there is none (a full run of a plain optimizer)."""
    from harness import plugins

    declared = plugins.optimizer(child.optimizer).branch_from
    base = child.with_(branched_from="", branch_step=0, trial=None)
    if declared is not None:
        x = plugins.optimizer(declared)
        shared = {k: v for k, v in child.hparams.items() if k in x.defaults}
        base = base.with_(optimizer=declared, hparams=x.resolve(shared))
    elif child.budget == 1.0:
        raise BranchRefused(
            f"{child.optimizer} at the full budget branches from nothing: it is no other optimizer "
            "before a switch, and no longer run holds its first steps"
        )
    return base.with_(budget=1.0)


def budget_keep_steps(spec: RunSpec, budgets: Any) -> frozenset[int]:
    """The steps a run of ``spec`` (a wsd run, usually at budget 1.0) keeps its checkpoints at so that
    runs of the same spec at each of ``budgets`` (fractions of ``spec.steps``, each below
    ``spec.budget``) can branch from it: their decay starts ``D(T)``. ``ScheduleError`` (a
    ``UserError``) names a budget that cannot branch (see ``harness.run.schedules.branch_points``)."""
    sched = schedule_of(spec)
    if sched is None:
        raise ScheduleError(
            "budget branches start from the stable phase of a wsd schedule; this run has the task's "
            "own schedule: give it one (schedule kind wsd with a decay_fraction)"
        )
    assert spec.steps is not None  # a resolved spec (the CLI resolves it first)
    points = branch_points(int(spec.steps), budgets, sched)
    for p in points:
        if p.fraction >= spec.budget:
            raise ScheduleError(
                f"budget {p.fraction:g} is not below this run's budget {spec.budget:g}: only shorter "
                "runs branch from it"
            )
        if p.decay_start < 1:
            raise ScheduleError(
                f"budget {p.fraction:g} ({p.steps} steps) decays from its first step: it shares no "
                "step with this run; run it from scratch"
            )
    return frozenset(p.decay_start for p in points)


def branch_spec(spec: RunSpec, loaded: Mapping[str, Any], where: Any) -> RunSpec:
    """``spec`` branched from the checkpoint ``loaded`` (read from ``where``): the spec with
    ``branched_from`` / ``branch_step`` set. Raises ``BranchRefused`` naming what differs."""
    from harness import plugins

    head = f"cannot branch {spec.optimizer} from {where}"
    try:
        parent = RunSpec.from_json(loaded["spec"])
        parent_id, step = loaded["run_id"], loaded["step"]
    except (KeyError, TypeError, ValueError) as exc:
        raise BranchRefused(f"{head}: not an optbench checkpoint with a run identity ({type(exc).__name__})") from None
    if parent.run_id != parent_id:
        raise BranchRefused(
            f"{head}: the checkpoint names run {parent_id} but its spec is run {parent.run_id} "
            "(its data file changed since, or the file was edited)"
        )
    try:
        wanted = branch_step(spec, parent)
    except BranchRefused as exc:
        raise BranchRefused(f"{head}: {exc}") from None
    diff = [k for k in SAME_TRAJECTORY if _norm(getattr(parent, k)) != _norm(getattr(spec, k))]
    if parent.dataset_key != spec.dataset_key:
        diff.insert(1, "dataset")
    if diff:
        shown = ", ".join(
            f"{k} ({_shown(k, getattr(parent, k))} vs {_shown(k, getattr(spec, k))})" for k in diff if k != "dataset"
        )
        raise BranchRefused(
            f"{head}: the parent run differs in {', '.join(diff)}"
            + (f": {shown}" if shown else "")
            + " (a branch shares task, data, seed, step budget, schedule and delay with its parent)"
        )
    if parent.optimizer == spec.optimizer:
        shared = sorted(set(parent.hparams) | set(spec.hparams))
    else:
        shared = sorted(set(plugins.optimizer(parent.optimizer).defaults) & set(spec.hparams))
    differ = [k for k in shared if _norm(parent.hparams.get(k)) != _norm(spec.hparams.get(k))]
    if differ:
        pairs = ", ".join(
            f"{k}={_norm(parent.hparams.get(k))} (this run: {_norm(spec.hparams.get(k))})" for k in differ
        )
        raise BranchRefused(
            f"{head}: the parent trained with {pairs}; a branch continues its parent's "
            f"trajectory, so the hyperparameters {spec.optimizer} shares with {parent.optimizer} must "
            f"match (--set {' --set '.join(f'{k}={_norm(parent.hparams.get(k))}' for k in differ)}, or "
            "branch from a parent trained with this run's values)"
        )
    if step != wanted:
        what = (
            f"{spec.optimizer} with alpha_sign={spec.hparams.get('alpha_sign')} switches at step {wanted} of "
            f"{spec.train_steps}"
            if parent.budget == spec.budget
            else f"a budget-{spec.budget:g} run of {spec.train_steps} steps branches at step {wanted}"
        )
        raise BranchRefused(
            f"{head}: the checkpoint is at step {step}, but {what}: branch from the parent's "
            f"checkpoint at step {wanted} (kept with --keep-checkpoint {wanted})"
        )
    if spec.branched_from and (spec.branched_from, spec.branch_step) != (parent_id, step):
        raise BranchRefused(
            f"{head}: this spec says it branches from run {spec.branched_from} at step "
            f"{spec.branch_step}, the checkpoint is run {parent_id} at step {step}"
        )
    return spec.with_(branched_from=parent_id, branch_step=int(step), trial=spec.trial)


def unbranched(spec: RunSpec) -> RunSpec:
    """The same run from scratch (its own run_id)."""
    return spec.with_(branched_from="", branch_step=0) if spec.branched_from else spec


def _shown(key: str, value: Any) -> Any:
    return "the task's own" if key == "schedule" and not value else _norm(value)


def _norm(value: Any) -> Any:
    """A value as JSON sees it (tuples and lists alike), for comparing a parent's and a child's."""
    return json.loads(canonical_json(value))


def _describe(loaded: Mapping[str, Any]) -> str:
    try:
        other = RunSpec.from_json(loaded["spec"])
    except Exception:  # a foreign dict: say what we can
        return f"optimizer {loaded.get('optimizer_name', '?')}"
    return f"{other.optimizer} on {other.task}/{other.dataset}, seed {other.seed}, {other.steps} steps"
