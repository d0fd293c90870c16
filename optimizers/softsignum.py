"""SoftSignum: Signum that hands over smoothly to a tanh update (Softsign paper, arXiv 2605.31371,
ICML 2026; official code https://github.com/brain-lab-research/softsign at commit 77526d8,
``softsignum.py``).

What differs from Signum: for the first ``S = floor(alpha_sign * K)`` of the run's ``K`` steps it
*is* Signum (same buffer, same update, bit for bit). At step ``S + 1`` it fits a Cauchy distribution
to all entries of the heavy-ball update direction ``d`` (median / MAD) of every parameter it updates,
and builds a decreasing temperature schedule ``tau_0 >= ... >= tau_{N-1}`` (``N = K - S``) from the
folded-Cauchy quantiles of ``|d|``: ``tau_j = clip(atanh(1 - eps) / q(j / N), 1, tmax)``. Step
``S + 1 + j`` then updates ``p <- p * (1 - lr wd) - lr * tanh(tau_j * d)``. So the fraction of
saturated coordinates (``|tanh| > 1 - eps``) falls linearly from 1 to 0 over the transition: sign
descent turns into (momentum) SGD.

As the official code (defaults follow it wherever the paper is silent): torch-SGD heavy-ball
momentum (first step ``m = g``), decoupled weight decay ``p *= 1 - lr wd``, the schedule built at
step ``S + 1`` from that step's ``d`` (lower median, MAD, Newton from ``sigma tan(pi p / 2) + |mu|``,
clamp at 0, ``p_j = j / N``), and **one schedule over every parameter the optimizer updates**: the
official class fits one schedule over the parameters it is given, and optbench's weight-decay split
(``build`` puts 1-D parameters in an undecayed group) must not become a schedule split.

Variants (hyperparameters, recorded in every result row's ``hp_*`` columns):
  schedule_scope "optimizer" (default, official): one schedule over all param groups (which must
      then share alpha_sign, eps, tmax and newton_iters). "group": one schedule per param group, what
      optbench did before; with ``build`` that is one for the >= 2-D and one for the 1-D parameters,
      whose temperatures came out 1.8-2.1x the pooled ones on a small MLP with LayerNorm.
  tmax 1e9 (default; also the official ``get_temperature_schedule`` default and SoftMuon's): the
      official *class* defaults to 20, which pins tau at 20 for most of the transition and turns it
      into a hard switch. Exposed and recorded, not searched.

Differences from the official code that change nothing in normal runs, kept on purpose:
  * zero-MAD guard: a zero MAD (more than half of the entries equal, e.g. dead units) falls back to
    the mean absolute deviation, then to a tiny positive scale, instead of the official
    ``(q - mu) / (sigma + 1e-8)`` (which also shifts every normal fit by a relative 1e-8 / sigma);
  * steps past ``K`` hold the last temperature (the official code raises an index error);
  * the fit is computed in float64 (the official one in float32: its ``p = arange(N) / N`` is
    float32, and ``c = atanh(1 - eps)`` of a float32 ``1 - eps`` is 4.951636 instead of 4.951719,
    1.7e-5 relative);
  * 1-D parameters are never decayed (docs/optimizers.md#conventions; the official class decays every parameter of a group);
  * the buffer stores ``(1 - beta) m`` (``optimizers/signum.py``); ``tau`` is divided by
    ``1 - beta`` so the update is ``tanh(tau d)`` of the heavy-ball ``d``, as in the official code.

Half precision: ``tau * d`` is formed in float32 for float16 / bfloat16 parameters (``tau / (1 - beta)``
reaches 1e10, which overflows float16, and ``inf * 0`` would be NaN): a saturated coordinate moves by
exactly ``lr``, as in Signum, and a zero direction does not move at all.

Speed: on CPU ``torch.tanh`` costs ~3 ns per float (a slow vectorised path), several times
``torch.sigmoid``. The foreach path therefore evaluates ``tanh(x)`` through the exact identity
``tanh(x) = 2 (sigmoid(2x) - 1/2)``: |error| <= 1.8e-7 against a float64 tanh (``torch.tanh``: 3e-8),
saturated coordinates still move by exactly ``lr``, and the step stays within the 1.2x-AdamW budget
of issue 2. On GPUs, where elementwise kernels are memory bound, it uses ``torch.tanh``. The
per-tensor reference path (``foreach=False``) always uses ``torch.tanh``.

Branching: ``load_state_dict(signum.state_dict())`` of a Signum run at step ``S`` (same
hyperparameters) continues as an unbranched SoftSignum run of ``K`` steps (``optimizers/_switch.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from optimizers._base import (
    Distribution,
    LogUniform,
    OneMinusLogUniform,
    OptimizerSpec,
    Tensors,
    all_params,
    check_int,
    check_positive,
    check_unit_interval,
    checked_group,
    decay_groups,
)

# The temperature schedule lives in optimizers/_schedule.py; its public functions stay importable here.
from optimizers._schedule import _HALF, fit_schedule, group_tau
from optimizers._schedule import _fit_cauchy_numpy as _fit_cauchy_numpy
from optimizers._schedule import _fit_cauchy_torch as _fit_cauchy_torch
from optimizers._schedule import fit_cauchy as fit_cauchy
from optimizers._schedule import folded_cauchy_quantile as folded_cauchy_quantile
from optimizers._schedule import temperature_schedule as temperature_schedule
from optimizers._switch import (
    SCHEDULE_SCOPES,
    check_choice,
    check_shared_schedule,
    init_switch_state,
    load_keeping_own_keys,
    pools,
    run_clock,
    share_switch_state,
    soft_index,
)
from optimizers.signum import (
    by_device_and_dtype,
    collect,
    decay_and_step,
    scaled_momentum_directions,
    signum_step,
)
from optimizers.signum import validate as validate_signum

DEFAULTS: dict[str, Any] = {
    "lr": 3e-4,  # as Signum: the sign phase is Signum, and SoftSignum is compared to it
    "weight_decay": 0.03,
    "momentum": 0.9,
    "nesterov": False,
    "alpha_sign": 0.9,  # paper: sign phase = 90% of the run
    "eps": 1e-4,  # paper: saturation threshold 1 - eps that defines the schedule
    "tmax": 1e9,  # see module docstring (official class default 20 is a hard switch)
    "newton_iters": 10,  # paper N_q = 10
    "schedule_scope": "optimizer",  # official: one schedule over everything (module docstring)
}

# Same axes as Signum (the paper tunes lr, wd, momentum with Optuna and fixes alpha_sign = 0.9,
# eps = 1e-4, N_q = 10), so a SoftSignum-vs-Signum comparison spends its trials identically.
SEARCH_SPACE: dict[str, Distribution] = {
    "lr": LogUniform(1e-5, 1e-2),
    "weight_decay": LogUniform(1e-4, 3.0),
    "momentum": OneMinusLogUniform(1e-2, 0.5),
}

# Settings that define a schedule: groups sharing one schedule must agree on them.
SCHEDULE_KEYS = ("total_steps", "alpha_sign", "eps", "tmax", "newton_iters")


def validate(group: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first invalid hyperparameter of a param group."""
    validate_signum(group)
    check_int("total_steps", group["total_steps"], minimum=1)
    check_unit_interval("alpha_sign", group["alpha_sign"], closed_right=True)
    check_positive("eps", group["eps"])
    if group["eps"] >= 1:
        raise ValueError(f"invalid eps: {group['eps']!r} (must lie in (0, 1))")
    check_positive("tmax", group["tmax"])
    if group["tmax"] < 1:
        raise ValueError(f"invalid tmax: {group['tmax']!r} (must be a finite number >= 1)")
    check_int("newton_iters", group["newton_iters"], minimum=1)
    check_choice("schedule_scope", group["schedule_scope"], SCHEDULE_SCOPES)


# --- the update ---------------------------------------------------------------------------------


def soft_step(
    params: list[Tensor],
    directions: Tensors,
    tau: Tensor,
    *,
    lr: float,
    weight_decay: float,
    foreach: bool,
    directions_are_scratch: bool = False,
) -> None:
    """``p <- p * (1 - lr wd) - lr * tanh(tau * d)`` over tensors of one device and dtype.

    ``tau`` is a 0-d float32 (float64 for float64 parameters) tensor. Half-precision directions are
    widened to float32 first, so ``tau * d`` never overflows (``inf * 0 = NaN``) and ``tanh`` keeps 24
    bits. ``directions_are_scratch`` lets the foreach path overwrite ``directions`` (Nesterov
    temporaries) instead of allocating.
    """
    if directions[0].dtype in _HALF:
        directions = [d.float() for d in directions]
        directions_are_scratch = True
    if not foreach:
        updates = [torch.tanh(tau * d) for d in directions]
        decay_and_step(params, updates, lr, weight_decay, foreach=False)
        return
    x: Tensors
    if directions[0].device.type == "cpu":
        # tanh(x) = 2 (sigmoid(2x) - 1/2): an exact identity, and sigmoid is ~6x cheaper than tanh on
        # CPU. sigmoid - 1/2 is exact (Sterbenz) where it matters, and the 2 goes into the step's
        # alpha, so a saturated coordinate (sigmoid = 1) moves by exactly lr, as in Signum.
        two_tau = tau * 2.0
        if directions_are_scratch:
            torch._foreach_mul_(directions, two_tau)
            x = directions
        else:
            x = torch._foreach_mul(directions, two_tau)
        torch._foreach_sigmoid_(x)
        torch._foreach_sub_(x, 0.5)
        decay_and_step(params, x, lr, weight_decay, foreach=True, scale=2.0)
        return
    if directions_are_scratch:
        torch._foreach_mul_(directions, tau)
        x = directions
    else:
        x = torch._foreach_mul(directions, tau)
    torch._foreach_tanh_(x)
    decay_and_step(params, x, lr, weight_decay, foreach=True)


class SoftSignum(torch.optim.Optimizer):
    """Signum for ``floor(alpha_sign * total_steps)`` steps, then ``tanh(tau_j * d)`` updates.

    Each param group carries its phase bookkeeping (``step``, ``total_steps``, ``sign_steps``,
    ``tau_schedule``; ``optimizers/_switch.py``), so phase and schedule travel with ``state_dict()``;
    with ``schedule_scope="optimizer"`` every group holds the same pooled schedule. Per parameter the
    state is Signum's ``exp_avg = (1 - beta) m`` (see ``optimizers.signum``). ``foreach=False`` is the
    readable per-tensor reference (``torch.tanh``); the default foreach path matches it bit for bit in
    the sign phase and to 2e-7 * lr per coordinate after the switch on CPU (see module docstring).
    """

    def __init__(
        self,
        params,
        total_steps: int,
        lr: float = DEFAULTS["lr"],
        momentum: float = DEFAULTS["momentum"],
        weight_decay: float = DEFAULTS["weight_decay"],
        nesterov: bool = DEFAULTS["nesterov"],
        alpha_sign: float = DEFAULTS["alpha_sign"],
        eps: float = DEFAULTS["eps"],
        tmax: float = DEFAULTS["tmax"],
        newton_iters: int = DEFAULTS["newton_iters"],
        schedule_scope: str = DEFAULTS["schedule_scope"],
        *,
        foreach: bool = True,
    ):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "alpha_sign": alpha_sign,
            "eps": eps,
            "tmax": tmax,
            "newton_iters": newton_iters,
            "schedule_scope": schedule_scope,
            "foreach": foreach,
            "total_steps": total_steps,
        }
        validate(defaults)
        super().__init__(params, defaults)

    @property
    def total_steps(self) -> int:
        """``K`` of new param groups (kept in ``defaults``, so a deepcopy or pickle keeps it)."""
        return self.defaults["total_steps"]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, validated; the group joins the run's clock and, past the
        switch, the schedule it pools with (``optimizers/_switch.py``)."""
        clock = run_clock(self.param_groups)
        super().add_param_group(param_group)

        def check(g: dict[str, Any]) -> None:
            validate(g)
            check_shared_schedule(self.param_groups, SCHEDULE_KEYS)

        group = checked_group(self, check)
        init_switch_state(group, group["alpha_sign"], group["total_steps"], "tau_schedule", step=clock)
        share_switch_state(self.param_groups, group, "tau_schedule")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, keeping the keys a Signum checkpoint lacks (branching)."""
        load_keeping_own_keys(self, state_dict, super().load_state_dict)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        soft = []  # (group, j, buckets, directions) of the groups past the switch
        for group in self.param_groups:
            group["step"] += 1  # counts optimizer steps, with or without gradients in this group
            params, grads, bufs = collect(self, group, "exp_avg")
            if not params:
                continue
            j = soft_index(group)
            hp = {"lr": group["lr"], "weight_decay": group["weight_decay"]}
            momentum, nesterov, foreach = group["momentum"], group["nesterov"], group["foreach"]
            buckets = by_device_and_dtype(params, grads, bufs) if foreach else [(params, grads, bufs)]
            if j is None:
                for bucket in buckets:
                    signum_step(*bucket, **hp, momentum=momentum, nesterov=nesterov, foreach=foreach)
                continue
            # The buffers hold exp_avg = (1 - beta) m, so these are (1 - beta) d. Every group's
            # directions come first: a schedule built at the switch pools them across groups.
            soft.append(
                (
                    group,
                    j,
                    buckets,
                    [scaled_momentum_directions(g, e, momentum, nesterov, foreach=foreach) for _, g, e in buckets],
                )
            )
        self._build_due_schedules(soft)
        for group, j, buckets, directions in soft:
            if group["tau_schedule"] is None:  # only zero-size tensors so far: nothing to update
                continue
            for (p, _, _), d in zip(buckets, directions):
                soft_step(
                    p,
                    d,
                    _bucket_tau(group, j, p[0]),
                    lr=group["lr"],
                    weight_decay=group["weight_decay"],
                    foreach=group["foreach"],
                    directions_are_scratch=group["nesterov"],
                )
        return loss

    def _build_due_schedules(self, soft: list) -> None:
        """At the switch: one schedule per pool (``schedule_scope``) from the heavy-ball ``d`` of
        every parameter in it, stored in each of its groups."""
        due = [(group, directions) for group, _, _, directions in soft if group["tau_schedule"] is None]
        for pool in pools([group for group, _ in due]):
            members = [due[i] for i in pool]
            values, scales = [], []
            for group, directions in members:
                for bucket in directions:
                    values += [d for d in bucket if d.numel()]
                    scales += [1.0 / (1.0 - group["momentum"])] * sum(1 for d in bucket if d.numel())  # (1-beta) d -> d
            if not values:  # zero-size tensors only: fit at the first step that has entries
                continue
            first = members[0][0]
            schedule = fit_schedule(
                values,
                first["total_steps"] - first["sign_steps"],
                eps=first["eps"],
                newton_iters=first["newton_iters"],
                tmax=first["tmax"],
                scales=scales,
            )
            for group, _ in members:
                group["tau_schedule"] = schedule

    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """``tau`` of the last step (first group; inf in the sign phase), ``saturated_frac`` (share of
        coordinates with ``|tanh(tau d)| > 1 - eps``, i.e. ``|tau d| > atanh(1 - eps)``, computed now
        from the momentum buffers; with Nesterov from ``g + beta m`` while gradients are still set,
        else from ``m``) and ``phase`` (0 sign, 1 soft). Host syncs here: call at eval points only.
        ``step()`` itself never syncs (the temperature is indexed on the device)."""
        tau_first, phase = math.inf, 0.0
        saturated: Tensor | int = 0
        total = 0
        for group in self.param_groups:
            j = soft_index(group)
            soft = j is not None and group["tau_schedule"] is not None
            tau = group["tau_schedule"][j] if soft else None
            if tau is not None and phase == 0.0:  # (tau is set exactly when soft)
                tau_first, phase = float(tau), 1.0
            threshold = math.atanh(1.0 - group["eps"])
            beta = group["momentum"]
            for p in group["params"]:
                exp_avg = self.state[p].get("exp_avg")
                if exp_avg is None:
                    continue
                # (1 - beta) d, as in step(); the 1 / (1 - beta) goes into tau.
                d = p.grad.lerp(exp_avg, beta) if group["nesterov"] and p.grad is not None else exp_avg
                if tau is None:
                    hits = d != 0
                else:
                    hits = (tau.to(d.device) / (1.0 - beta) * d.float()).abs() > threshold
                saturated = saturated + hits.sum().cpu()
                total += d.numel()
        frac = float(saturated) / total if total else math.nan
        return {"tau": tau_first, "saturated_frac": frac, "phase": phase}


def _bucket_tau(group: dict[str, Any], j: int, like: Tensor) -> Tensor:
    """``tau_j / (1 - beta)``, the temperature for the stored ``(1 - beta) d``, as a 0-d tensor in the
    dtype ``soft_step`` multiplies in (float64 for float64 parameters, else float32), clamped to half
    that dtype's largest finite value (the CPU path doubles it) so that ``tau * 0`` is 0, never
    ``inf * 0``."""
    tau = group_tau(group, j, like.device)
    if like.dtype == torch.float64:  # keep float64 runs float64 after the rescaling
        tau = tau.double()
    return torch.clamp(tau / (1.0 - group["momentum"]), max=torch.finfo(tau.dtype).max / 2)


def build(groups: Mapping[str, list[torch.nn.Parameter]], hparams: dict[str, Any], total_steps: int) -> SoftSignum:
    """SoftSignum over every role with one schedule over ``total_steps``; 1-D parameters not decayed."""
    param_groups = decay_groups(all_params(groups), hparams["weight_decay"])
    keys = ("lr", "momentum", "weight_decay", "nesterov", "alpha_sign", "eps", "tmax", "newton_iters", "schedule_scope")
    return SoftSignum(param_groups, total_steps, **{k: hparams[k] for k in keys})


SPEC = OptimizerSpec(
    name="softsignum",
    summary="SoftSignum (Softsign paper): Signum, then tanh(tau_j * d) with a folded-Cauchy quantile "
    "temperature schedule",
    defaults=DEFAULTS,
    search_space=SEARCH_SPACE,
    build_fn=build,
    implementation="foreach",
    branch_from="signum",
    extra={
        "momentum_convention": "heavy-ball m <- beta*m + g (first m = g), stored as (1-beta)*m",
        "cpu_tanh": "2*(sigmoid(2x)-1/2) on the CPU foreach path, torch.tanh elsewhere",
        "variants": {
            "schedule_scope": "optimizer (default, official: one schedule over every parameter) | "
            "group (one per param group, optbench's earlier)"
        },
    },
)
