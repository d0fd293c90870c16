"""HardSwitchSign: Signum, then SGD with momentum from step ``S + 1`` on the same buffer: the hard
counterpart of SoftSignum that the Softsign paper (arXiv 2605.31371, ICML 2026) compares against on
NCP and CIFAR. It asks whether SoftSignum's smooth, quantile-scheduled transition matters, or whether
switching from sign descent to SGD at the same step would do as well.

The rule (``S = floor(alpha_sign * K)``, ``K`` the run's total steps; heavy-ball buffer of
``optimizers/signum.py``, ``m <- beta m + g``, first step ``m = g``; ``d = m`` or Nesterov
``g + beta m``; decoupled weight decay, never on 1-D parameters)::

    steps 1..S       p <- p * (1 - lr wd) - lr * sign(d)                 (Signum, bit for bit)
    step  S + 1      gain = switch_scale / rms(d)                         (once; d of that step)
    steps S + 1..    p <- p * (1 - lr wd) - lr * gain * d                 (SGD with momentum)

``rms(d) = sqrt(sum_i d_i^2 / n)`` over every entry of every parameter the optimizer updates (pooled
across param groups, like SoftSignum's one schedule), taken from the heavy-ball ``d`` of the first
post-switch step, the same ``d`` SoftSignum fits its schedule to. ``lr`` is the training loop's
scheduled learning rate at each step, so the post-switch SGD follows the same warmup/decay as the
sign phase; ``lr * gain`` is SGD's learning rate.

The post-switch step size: the paper does not say how it was set. The rule chosen here, and why.
A sign step moves every coordinate by ``lr``, so its RMS is ``lr`` (for nonzero ``d``); an SGD step
``eta d`` has RMS ``eta * rms(d)``. With ``eta = switch_scale * lr / rms(d)`` and ``switch_scale = 1``
the update's RMS (equivalently its Euclidean length) is continuous at the switch: no jump in step
length, only in direction, large coordinates moving more than ``lr`` and small ones less. A raw SGD
learning rate would instead have to be searched over as many decades as gradient scales differ
between tasks (``d`` spans 1e-4..1e1 across optbench's tasks), and its default would mean nothing.
``switch_scale`` is therefore the tuned hyperparameter: log-uniform in [0.1, 10] around the
continuous choice 1 (default, Optuna's trial 0). The gain is fixed at the switch (not re-fitted each
step): after it the optimizer is plain SGD with momentum, as the baseline intends. If every entry of
``d`` is zero at the switch the gain falls back to ``switch_scale`` (SGD learning rate
``switch_scale * lr``) instead of dividing by zero.

Same as SoftSignum: the buffer stores ``exp_avg = (1 - beta) m`` (``optimizers/signum.py``; ``gain``
is divided by ``1 - beta`` when applied), foreach kernels per device and dtype with a per-tensor
reference path (``foreach=False``) pinned equal by a test, the phase bookkeeping of
``optimizers/_switch.py`` in the param groups (``step``, ``total_steps``, ``sign_steps``, ``sgd_gain``),
and ``load_state_dict(signum.state_dict())`` at step ``S`` continues as an unbranched run.
``step()`` never syncs with the device: the gain is a 0-d tensor.
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
from optimizers._switch import (
    init_switch_state,
    load_keeping_own_keys,
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
    "lr": 3e-4,  # as Signum and SoftSignum: the sign phase is Signum
    "weight_decay": 0.03,
    "momentum": 0.9,
    "nesterov": False,
    "alpha_sign": 0.9,  # as SoftSignum: the switch at the step where SoftSignum's transition starts
    "switch_scale": 1.0,  # post-switch update RMS / sign-phase update RMS (module docstring)
}

# Signum's axes plus the post-switch step size. alpha_sign is fixed like SoftSignum's, so that the
# two differ only in how they leave sign descent.
SEARCH_SPACE: dict[str, Distribution] = {
    "lr": LogUniform(1e-5, 1e-2),
    "weight_decay": LogUniform(1e-4, 3.0),
    "momentum": OneMinusLogUniform(1e-2, 0.5),
    "switch_scale": LogUniform(0.1, 10.0),
}


def validate(group: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first invalid hyperparameter of a param group."""
    validate_signum(group)
    check_int("total_steps", group["total_steps"], minimum=1)
    check_unit_interval("alpha_sign", group["alpha_sign"], closed_right=True)
    check_positive("switch_scale", group["switch_scale"])


def sgd_step(
    params: list[Tensor],
    scaled_directions: Tensors,
    factor: Tensor,
    *,
    lr: float,
    weight_decay: float,
    foreach: bool,
    directions_are_scratch: bool = False,
) -> None:
    """``p <- p * (1 - lr wd) - lr * factor * x`` for the stored ``x = (1 - beta) d`` and the 0-d
    ``factor = gain / (1 - beta)``, over tensors of one device and dtype."""
    if not foreach:
        decay_and_step(params, [factor * x for x in scaled_directions], lr, weight_decay, foreach=False)
        return
    updates: Tensors
    if directions_are_scratch:
        torch._foreach_mul_(scaled_directions, factor)
        updates = scaled_directions
    else:  # the buffers themselves: never scale them in place
        updates = torch._foreach_mul(scaled_directions, factor)
    decay_and_step(params, updates, lr, weight_decay, foreach=True)


def rms_gain(directions: list[tuple[list[Tensor], float]], switch_scale: float) -> Tensor:
    """``switch_scale / rms(d)`` over all entries, from ``(scaled directions, 1 - beta)`` pairs (the
    stored ``(1 - beta) d``); float32 (float64 if the first tensor is), no host sync."""
    first = directions[0][0][0]
    dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
    norms, count = [], 0
    for tensors, one_minus_beta in directions:
        for x in tensors:
            wide = torch.float64 if x.dtype == torch.float64 else torch.float32  # half: sum in float32
            norm = torch.linalg.vector_norm(x, dtype=wide).to(device=first.device, dtype=dtype)
            norms.append(norm / one_minus_beta)
            count += x.numel()
    rms = torch.linalg.vector_norm(torch.stack(norms)) / math.sqrt(count)
    fallback = torch.full_like(rms, switch_scale)  # a fill on the device, not a host-to-device copy
    return torch.where(rms > 0, switch_scale / rms, fallback)


class HardSwitchSign(torch.optim.Optimizer):
    """Signum for ``floor(alpha_sign * total_steps)`` steps, then SGD with momentum on the same buffer.

    ``foreach=True`` (default) runs ``torch._foreach_*`` kernels per device and dtype; ``foreach=False``
    is the per-tensor reference (bit for bit the same on CPU). State per parameter: Signum's
    ``exp_avg = (1 - beta) m``; per group: ``step``, ``total_steps``, ``sign_steps`` and ``sgd_gain``
    (None until the switch, then the 0-d ``switch_scale / rms(d)``, shared by all groups).
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
        switch_scale: float = DEFAULTS["switch_scale"],
        *,
        foreach: bool = True,
    ):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "alpha_sign": alpha_sign,
            "switch_scale": switch_scale,
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
        switch, the pooled gain (scaled by its own ``switch_scale``)."""
        clock = run_clock(self.param_groups)
        super().add_param_group(param_group)
        group = checked_group(self, validate)
        init_switch_state(group, group["alpha_sign"], group["total_steps"], "sgd_gain", step=clock)
        share_switch_state(
            self.param_groups,
            group,
            "sgd_gain",
            derive=lambda src, new: src["sgd_gain"] / src["switch_scale"] * new["switch_scale"],
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, keeping the keys a Signum checkpoint lacks (branching)."""
        load_keeping_own_keys(self, state_dict, super().load_state_dict)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        post = []  # (group, buckets, scaled directions) of the groups past the switch
        for group in self.param_groups:
            group["step"] += 1  # counts optimizer steps, with or without gradients in this group
            params, grads, bufs = collect(self, group, "exp_avg")
            if not params:
                continue
            hp = {"lr": group["lr"], "weight_decay": group["weight_decay"]}
            momentum, nesterov, foreach = group["momentum"], group["nesterov"], group["foreach"]
            buckets = by_device_and_dtype(params, grads, bufs) if foreach else [(params, grads, bufs)]
            if soft_index(group) is None:
                for bucket in buckets:
                    signum_step(*bucket, **hp, momentum=momentum, nesterov=nesterov, foreach=foreach)
                continue
            post.append(
                (
                    group,
                    buckets,
                    [scaled_momentum_directions(g, e, momentum, nesterov, foreach=foreach) for _, g, e in buckets],
                )
            )
        due = [(group, directions) for group, _, directions in post if group["sgd_gain"] is None]
        if due:  # the switch: one RMS over every parameter that switches now
            rms_inputs = [(ds, 1.0 - group["momentum"]) for group, directions in due for ds in directions]
            unit = rms_gain(rms_inputs, 1.0)  # 1 / rms(d); each group scales it by its switch_scale
            for group, _ in due:
                group["sgd_gain"] = unit * group["switch_scale"]
        for group, buckets, directions in post:
            for (p, _, _), x in zip(buckets, directions):
                gain = group["sgd_gain"].to(p[0].device)
                factor = (gain.double() if p[0].dtype == torch.float64 else gain) / (1.0 - group["momentum"])
                sgd_step(
                    p,
                    x,
                    factor,
                    lr=group["lr"],
                    weight_decay=group["weight_decay"],
                    foreach=group["foreach"],
                    directions_are_scratch=group["nesterov"],
                )
        return loss

    def diagnostics(self) -> dict[str, float]:
        """``phase`` (0 sign, 1 SGD) and, after the switch, ``sgd_lr``: the first switched group's
        current SGD learning rate ``lr * gain`` (a host sync: call at eval points only)."""
        for group in self.param_groups:
            if group["sgd_gain"] is not None and soft_index(group) is not None:
                return {"phase": 1.0, "sgd_lr": group["lr"] * float(group["sgd_gain"])}
        return {"phase": 0.0}


def build(groups: Mapping[str, list[torch.nn.Parameter]], hparams: dict[str, Any], total_steps: int) -> HardSwitchSign:
    """HardSwitchSign over every role, switching at ``floor(alpha_sign * total_steps)``; 1-D params not decayed."""
    param_groups = decay_groups(all_params(groups), hparams["weight_decay"])
    keys = ("lr", "momentum", "weight_decay", "nesterov", "alpha_sign", "switch_scale")
    return HardSwitchSign(param_groups, total_steps, **{k: hparams[k] for k in keys})


SPEC = OptimizerSpec(
    name="hardswitchsign",
    summary="HardSwitchSign (Softsign paper's baseline): Signum, then SGD with momentum on the same buffer "
    "from step floor(alpha_sign*K)+1, step size switch_scale*lr/rms(d)",
    defaults=DEFAULTS,
    search_space=SEARCH_SPACE,
    build_fn=build,
    implementation="foreach",
    branch_from="signum",
    extra={
        "momentum_convention": "heavy-ball m <- beta*m + g (first m = g), stored as (1-beta)*m",
        "post_switch_lr": "switch_scale * lr / rms(d at step S+1), pooled over all parameters",
    },
)
