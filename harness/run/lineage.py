"""Whose checkpoint is this? The identity checks behind resuming and branching.

Every checkpoint carries the identity of the run that wrote it: its ``run_id``, the canonical JSON of
the spec fields that define that run_id (``RunSpec.identity``) and the full spec. Two uses:

- **Resume** (``own_problem``): a run continues only from a checkpoint of its own run_id with its own
  identity. Anything else found in its folder (another seed's checkpoint copied there, a checkpoint
  of another optimizer, a file of an older format) is moved aside by ``harness.run.checkpoint`` with a
  warning, and the run starts from the next readable checkpoint of its own, or from scratch.
- **Branch** (``branch_spec``): SoftX starts from X's checkpoint at X's switch step S and runs only
  S+1..K (the Softsign paper's protocol). That is the same run as SoftX from scratch only when the
  parent *is* SoftX's first S steps: the optimizer SoftX declares as its parent
  (``OptimizerSpec.branch_from``), the same task, data, seed, budget and precision, the same value of
  every hyperparameter the two optimizers share, and a checkpoint taken after exactly S =
  floor(alpha_sign K) steps. Anything else is refused (``BranchRefused``) before a step runs or a file
  is written. An accepted branch returns the spec with ``branched_from`` / ``branch_step`` set: its
  run_id depends on the parent, so one run_id never names two different results.

Torch-free (the checkpoint is loaded by ``harness.run.checkpoint``; this module reads the dict).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from harness.errors import UserError
from harness.spec import RunSpec, canonical_json

# The spec fields a branch shares with its parent (the optimizer and its own hyperparameters aside).
SAME_TRAJECTORY = ("task", "size", "task_options", "seed", "steps", "amp")


class BranchRefused(UserError):
    """The parent checkpoint cannot start this run: unreadable, of another run, or not the first S
    steps of this one. The CLI exits 2; a sweep runs the child from scratch instead (with a warning)."""


def stamp(spec: RunSpec) -> dict[str, Any]:
    """What a checkpoint of ``spec`` carries to say whose it is."""
    return {"run_id": spec.run_id, "identity": canonical_json(spec.identity()), "spec": spec.to_json(),
            "optimizer_name": spec.optimizer}


def own_problem(spec: RunSpec, loaded: Mapping[str, Any]) -> str | None:
    """Why ``loaded`` is not a checkpoint of ``spec``'s own run (None: it is)."""
    theirs = loaded.get("run_id")
    if theirs != spec.run_id:
        return f"it belongs to run {theirs} ({_describe(loaded)}), not to run {spec.run_id}"
    if loaded.get("identity") != canonical_json(spec.identity()):
        return f"its spec differs from run {spec.run_id}'s although the run_id is the same (edited by hand?)"
    step = loaded.get("step")
    if not isinstance(step, int) or not 1 <= step <= int(spec.steps or step):
        return f"its step {step!r} is outside the run's 1..{spec.steps}"
    return None


def switch_step(spec: RunSpec) -> int | None:
    """S = floor(alpha_sign K) of a switching optimizer (the step its parent's checkpoint is taken
    at), or None when the optimizer has no switch."""
    from optimizers._switch import sign_phase_steps

    alpha = spec.hparams.get("alpha_sign")
    if alpha is None or spec.steps is None:
        return None
    return sign_phase_steps(float(alpha), int(spec.steps))


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
        raise BranchRefused(f"{head}: the checkpoint names run {parent_id} but its spec is run {parent.run_id} "
                            "(its data file changed since, or the file was edited)")
    declared = plugins.optimizer(spec.optimizer).branch_from
    if declared is None:
        raise BranchRefused(f"{head}: {spec.optimizer} is no other optimizer before a switch, so it cannot start "
                            f"from another run's checkpoint (softsignum, hardswitchsign: from signum; softmuon: "
                            f"from muon)")
    if parent.optimizer != declared:
        raise BranchRefused(f"{head}: {spec.optimizer} is {declared} before its switch, so it branches from a "
                            f"{declared} checkpoint; this one is {parent.optimizer}'s")
    diff = [k for k in SAME_TRAJECTORY if _norm(getattr(parent, k)) != _norm(getattr(spec, k))]
    if parent.dataset_key != spec.dataset_key:
        diff.insert(1, "dataset")
    if diff:
        shown = ", ".join(f"{k} ({_norm(getattr(parent, k))} vs {_norm(getattr(spec, k))})"
                          for k in diff if k != "dataset")
        raise BranchRefused(f"{head}: the parent run differs in {', '.join(diff)}"
                            + (f": {shown}" if shown else "")
                            + " (a branch shares task, data, seed and step budget with its parent)")
    shared = sorted(set(plugins.optimizer(declared).defaults) & set(spec.hparams))
    differ = [k for k in shared if _norm(parent.hparams.get(k)) != _norm(spec.hparams.get(k))]
    if differ:
        pairs = ", ".join(f"{k}={_norm(parent.hparams.get(k))} (this run: {_norm(spec.hparams.get(k))})" for k in differ)
        raise BranchRefused(f"{head}: the parent trained with {pairs}; a branch continues its parent's "
                            f"trajectory, so the hyperparameters {spec.optimizer} shares with {declared} must match "
                            f"(--set {' --set '.join(f'{k}={_norm(parent.hparams.get(k))}' for k in differ)}, or "
                            "branch from a parent trained with this run's values)")
    s = switch_step(spec)
    if s is None or step != s:
        raise BranchRefused(f"{head}: the checkpoint is at step {step}, but {spec.optimizer} with alpha_sign="
                            f"{spec.hparams.get('alpha_sign')} switches at step {s} of {spec.steps}: branch from the "
                            f"parent's checkpoint at step {s} (kept with --keep-checkpoint {s})")
    if spec.branched_from and (spec.branched_from, spec.branch_step) != (parent_id, step):
        raise BranchRefused(f"{head}: this spec says it branches from run {spec.branched_from} at step "
                            f"{spec.branch_step}, the checkpoint is run {parent_id} at step {step}")
    return spec.with_(branched_from=parent_id, branch_step=int(step), trial=spec.trial)


def unbranched(spec: RunSpec) -> RunSpec:
    """The same run from scratch (its own run_id)."""
    return spec.with_(branched_from="", branch_step=0) if spec.branched_from else spec


def _norm(value: Any) -> Any:
    """A value as JSON sees it (tuples and lists alike), for comparing a parent's and a child's."""
    return json.loads(canonical_json(value))


def _describe(loaded: Mapping[str, Any]) -> str:
    try:
        other = RunSpec.from_json(loaded["spec"])
    except Exception:  # a foreign dict: say what we can
        return f"optimizer {loaded.get('optimizer_name', '?')}"
    return f"{other.optimizer} on {other.task}/{other.dataset}, seed {other.seed}, {other.steps} steps"
