"""The switch at step ``S`` shared by the optimizers that leave a sign method part-way through a run
(SoftSignum, SoftMuon, HardSwitchSign): the phase bookkeeping they keep in their param groups, the
named variant options they share, and loading a checkpoint of the sign method they start as.

Phase bookkeeping. Each param group keeps (so the phase travels with ``state_dict()``):
  ``step``         optimizer steps taken by the group (incremented every ``step()``, with or without
                   gradients: it is the run's clock, as torch's ``LRScheduler`` counts)
  ``total_steps``  ``K``, the run's total optimizer steps (the harness always passes it)
  ``sign_steps``   ``S = floor(alpha_sign * K)``
plus the optimizer's own switch state (``tau_schedule`` for the soft optimizers, ``sgd_gain`` for
HardSwitchSign), ``None`` until the switch.

Branching from X (the Softsign paper's protocol: warm-start SoftX from an X checkpoint at step ``S``
and relax only the tail). Signum and Muon count their steps in ``group["step"]`` exactly as above, and
their per-parameter state (``exp_avg`` / ``momentum_buffer`` and the auxiliary AdamW's moments) is
the state the switching optimizer uses before the switch. ``torch.optim.Optimizer.load_state_dict``
replaces every group dict by the saved one, which would drop the keys only the switching optimizer
has (``total_steps``, ``sign_steps``, ``alpha_sign``, ...). ``load_keeping_own_keys`` merges them
back: saved values win (a resume is a resume), keys the checkpoint lacks keep this optimizer's values.
So ``SoftSignum(..., total_steps=K).load_state_dict(signum.state_dict())`` after ``S`` Signum steps
continues exactly as an unbranched SoftSignum run of ``K`` steps would (tested bit for bit on CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

# schedule_scope: which parameters one temperature schedule (or one post-switch gain) is fitted to.
#   "optimizer"  every parameter the optimizer updates with the sign rule, pooled across param groups
#                (official code: one fit over every parameter it is given; optbench: a weight-decay split
#                is not a schedule split)
#   "group"      one fit per param group (optbench's earlier behaviour: with build()'s weight-decay
#                split, one schedule for the >= 2-D and one for the 1-D parameters)
SCHEDULE_SCOPES = ("optimizer", "group")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """``ValueError`` naming the parameter and the valid choices unless ``value`` is one of them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"invalid {name}: {value!r}; valid: {', '.join(map(repr, choices))}")


def sign_phase_steps(alpha_sign: float, total_steps: int) -> int:
    """``S = floor(alpha_sign * K)`` (with a tiny tolerance so 0.9 * 10 gives 9, not 8)."""
    return min(total_steps, int(math.floor(alpha_sign * total_steps + 1e-9)))


def run_clock(groups: Sequence[Mapping[str, Any]]) -> int:
    """Where a run stands: the largest ``step`` of its param groups (0 for none). A group added to a
    running optimizer (``add_param_group`` after some steps: progressive unfreezing) starts there,
    so it is in the same phase as the others."""
    return max((g["step"] for g in groups if "step" in g), default=0)


def init_switch_state(group: dict[str, Any], alpha_sign: float, total_steps: int, key: str, step: int = 0) -> None:
    """Write the phase bookkeeping into a new param group at the run's clock ``step``; ``key`` is the
    switch state (None: fitted at the group's first step past the switch, or shared, see
    ``share_switch_state``)."""
    group["step"] = int(step)
    group["total_steps"] = int(total_steps)
    group["sign_steps"] = sign_phase_steps(alpha_sign, total_steps)
    group[key] = None


def share_switch_state(
    groups: Sequence[dict[str, Any]],
    new: dict[str, Any],
    key: str,
    derive: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None,
) -> None:
    """A group added after the switch to an ``"optimizer"``-scoped pool takes the pool's switch state
    (``derive(source, new)`` if given, else the same object): one schedule stays one schedule."""
    if new.get("schedule_scope", "optimizer") != "optimizer":
        return
    for group in groups:
        if group is not new and group.get(key) is not None and group.get("schedule_scope", "optimizer") == "optimizer":
            new[key] = derive(group, new) if derive is not None else group[key]
            return


def soft_index(group: Mapping[str, Any], step: int | None = None) -> int | None:
    """Index ``j`` into the transition for the group's current (already incremented) step, or for
    ``step`` if given; ``None`` in the sign phase.

    Step ``S + 1 + j`` uses entry ``j``; steps beyond ``K`` hold entry ``N - 1`` (the official
    SoftSignum raises an index error there; the official SoftMuon clamps, as here). With ``S = K``
    (alpha_sign = 1) the optimizer stays in the sign phase forever.
    """
    step = group["step"] if step is None else step
    sign_steps, total = group["sign_steps"], group["total_steps"]
    if step <= sign_steps or total <= sign_steps:
        return None
    return min(step - sign_steps - 1, total - sign_steps - 1)


def pools(groups: Sequence[dict[str, Any]], scope_key: str = "schedule_scope") -> list[list[int]]:
    """Indices of ``groups`` that share one fit: all groups with scope ``"optimizer"`` together,
    each ``"group"``-scoped group alone. Groups without the key count as ``"optimizer"``."""
    shared = [i for i, g in enumerate(groups) if g.get(scope_key, "optimizer") == "optimizer"]
    alone = [[i] for i, g in enumerate(groups) if g.get(scope_key, "optimizer") != "optimizer"]
    return ([shared] if shared else []) + alone


def check_shared_schedule(groups: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> None:
    """One schedule over several groups needs one set of schedule settings: ``ValueError`` naming
    the first key on which two ``"optimizer"``-scoped groups differ."""
    shared = [g for g in groups if g.get("schedule_scope", "optimizer") == "optimizer"]
    for key in keys:
        values = {repr(g[key]) for g in shared if key in g}
        if len(values) > 1:
            raise ValueError(
                f"invalid {key}: param groups differ ({', '.join(sorted(values))}) but "
                "schedule_scope='optimizer' fits one schedule over all of them; use equal values or "
                "schedule_scope='group'"
            )


def load_keeping_own_keys(
    optimizer: torch.optim.Optimizer,
    state_dict: dict[str, Any],
    load: Callable[[dict[str, Any]], None],
    *,
    required: Sequence[str] = ("step",),
) -> None:
    """``load(state_dict)`` (torch's ``load_state_dict``), then put back every group key the
    checkpoint lacks (saved values win). ``required`` keys, when this optimizer's group has them,
    must come from the checkpoint: a ``step`` cannot be guessed (a Signum checkpoint from before
    Signum counted its steps cannot start a SoftSignum run at the right place)."""
    saved_groups = state_dict["param_groups"]
    own = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    for index, (mine, saved) in enumerate(zip(own, saved_groups)):
        for key in required:
            if key in mine and key not in saved:
                raise ValueError(
                    f"cannot load this checkpoint into {type(optimizer).__name__}: param group {index} "
                    f"has no {key!r} (it was saved by an optimizer that does not count its steps)"
                )
    load(state_dict)
    for group, mine, saved in zip(optimizer.param_groups, own, saved_groups):
        for key, value in mine.items():
            if key not in saved:  # also over a default that __setstate__ filled in
                group[key] = value
