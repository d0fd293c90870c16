"""Signum: sign of the heavy-ball momentum (Bernstein et al., "signSGD: Compressed Optimisation for
Non-Convex Problems", ICML 2018, arXiv 1802.04434), with decoupled weight decay.

What differs from SGD with momentum: the step is ``lr * sign(d)``, so every coordinate moves by
exactly ``lr`` whatever the gradient scale. The rule (docs/optimizers.md#signum)::

    m <- beta * m + g            torch-SGD heavy-ball buffer, first step m = g (dampening 0)
    d = g + beta * m  (Nesterov)  or  d = m
    p <- p * (1 - lr * wd)        decoupled decay, never on 1-D parameters
    p <- p - lr * sign(d)

Storage: the buffer kept in the state is ``exp_avg = (1 - beta) * m``, updated by one
``lerp(exp_avg, g, 1 - beta)`` pass instead of the two passes ``m *= beta; m += g`` (the sign
phase is memory bound: this is ~12% of the step, and what keeps it under 0.6x AdamW on CPU). It is
the same rule: from ``exp_avg = 0``, ``exp_avg_t = (1 - beta) m_t`` exactly in real arithmetic, the
Nesterov direction is ``(1 - beta) d = lerp(g, exp_avg, beta)``, and ``sign`` ignores the positive
factor. SoftSignum, whose ``tanh(tau d)`` does depend on the scale, folds ``1 / (1 - beta)`` into
``tau``, so the heavy-ball ``d`` of docs/optimizers.md#signum is what its schedule and its update see. (The paper's
Signum keeps an EMA ``m <- beta m + (1 - beta) g`` as its ``m``; same sign, different scale.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype

from optimizers._base import (
    Distribution,
    LogUniform,
    OneMinusLogUniform,
    OptimizerSpec,
    Tensors,
    all_params,
    check_bool,
    check_lr,
    check_nonneg,
    check_unit_interval,
    checked_group,
    decay_groups,
)
from optimizers._switch import load_keeping_own_keys, run_clock

# Lion-style defaults for a sign method (Chen et al. 2023, "Symbolic Discovery of Optimization
# Algorithms"): lr about 3x below AdamW's 1e-3 and weight decay 3x above its 0.01, so the decay per
# step lr * wd stays ~1e-5 like AdamW's defaults. momentum 0.9 as in the Signum paper.
DEFAULTS: dict[str, Any] = {
    "lr": 3e-4,
    "weight_decay": 0.03,
    "momentum": 0.9,
    "nesterov": False,
}

SEARCH_SPACE: dict[str, Distribution] = {
    "lr": LogUniform(1e-5, 1e-2),
    "weight_decay": LogUniform(1e-4, 3.0),
    "momentum": OneMinusLogUniform(1e-2, 0.5),  # beta in [0.5, 0.99]
}


def validate(group: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first invalid shared hyperparameter of a param group."""
    check_lr("lr", group["lr"])
    check_nonneg("weight_decay", group["weight_decay"])
    check_unit_interval("momentum", group["momentum"])
    check_bool("nesterov", group["nesterov"])


# --- pure update functions (shared with SoftSignum and SGD) -------------------------------------


def momentum_directions(
    grads: list[Tensor], bufs: list[Tensor], momentum: float, nesterov: bool, *, foreach: bool
) -> Tensors:
    """torch-SGD heavy ball: ``m <- beta m + g`` in place, return ``d`` (``g + beta m`` or ``m``).

    Buffers start at zero, so the first step gives ``m = g`` exactly. Without Nesterov the returned
    directions *are* the buffers (do not modify them); with Nesterov they are fresh tensors.
    """
    if foreach:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        return torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
    out = []
    for g, m in zip(grads, bufs):
        m.mul_(momentum).add_(g)
        out.append(g.add(m, alpha=momentum) if nesterov else m)
    return out


def scaled_momentum_directions(
    grads: list[Tensor], exp_avgs: list[Tensor], momentum: float, nesterov: bool, *, foreach: bool
) -> Tensors:
    """The heavy-ball rule on ``exp_avg = (1 - beta) m``: one lerp pass; returns ``(1 - beta) d``.

    ``exp_avg <- lerp(exp_avg, g, 1 - beta)``; the scaled direction is ``lerp(g, exp_avg, beta)``
    (Nesterov, fresh tensors) or ``exp_avg`` itself (do not modify it).
    """
    if foreach:
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - momentum)
        return torch._foreach_lerp(grads, exp_avgs, momentum) if nesterov else exp_avgs
    out = []
    for g, e in zip(grads, exp_avgs):
        e.lerp_(g, 1.0 - momentum)
        out.append(g.lerp(e, momentum) if nesterov else e)
    return out


def step_lr(lr: float | Tensor) -> float | Tensor:
    """The learning rate a step uses: a float, also for a 1-element tensor lr in eager mode (a CPU
    tensor costs no device sync; a GPU one costs one, as torch.optim's eager foreach path), and the
    tensor itself while ``torch.compile`` traces the step (no graph break, no recompile when an LR
    scheduler changes it)."""
    if isinstance(lr, Tensor) and not torch.compiler.is_compiling():
        return lr.item()
    return lr


def decay_and_step(
    params: list[Tensor],
    updates: Tensors,
    lr: float | Tensor,
    weight_decay: float,
    *,
    foreach: bool,
    scale: float = 1.0,
) -> None:
    """``p <- p * (1 - lr * wd)`` then ``p <- p - lr * scale * u`` (decay uses the current lr)."""
    lr = step_lr(lr)
    if isinstance(lr, Tensor):  # traced by torch.compile: tensor arithmetic only
        lr = lr.reshape(())
        if weight_decay != 0:
            torch._foreach_mul_(params, 1.0 - lr * weight_decay)
        torch._foreach_add_(params, torch._foreach_mul(updates, lr * -scale))
        return
    if foreach:
        if weight_decay != 0:
            factor: float | Tensor = 1.0 - lr * weight_decay
            if params[0].dtype == torch.float16 and params[0].device.type == "cpu":
                # CPU float16 foreach kernels round a Python scalar to float16 first (0.9997 -> 0.99951, a
                # 1.6x too strong decay); a 0-d float32 tensor is applied in float32, as the per-tensor path.
                factor = torch.tensor(factor)
            torch._foreach_mul_(params, factor)
        torch._foreach_add_(params, updates, alpha=-lr * scale)
        return
    for p, u in zip(params, updates):
        if weight_decay != 0:
            p.mul_(1.0 - lr * weight_decay)
        p.add_(u, alpha=-lr * scale)


def signum_step(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    foreach: bool,
) -> None:
    """One Signum step over tensors of one device and dtype (``bufs``: the ``exp_avg`` buffers)."""
    directions = scaled_momentum_directions(grads, bufs, momentum, nesterov, foreach=foreach)
    signs: Tensors
    if foreach:
        if nesterov:  # directions are temporaries: take the sign in place
            torch._foreach_sign_(directions)
            signs = directions
        else:
            signs = torch._foreach_sign(directions)
    else:
        signs = [torch.sign(d) for d in directions]
    decay_and_step(params, signs, lr, weight_decay, foreach=foreach)


def collect(
    optimizer: torch.optim.Optimizer, group: Mapping[str, Any], key: str
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Params with a gradient, their gradients and their (lazily zero-initialised) ``state[key]``."""
    params, grads, bufs = [], [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{type(optimizer).__name__} does not support sparse gradients")
        state = optimizer.state[p]
        if key not in state:
            state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        params.append(p)
        grads.append(p.grad)
        bufs.append(state[key])
    return params, grads, bufs


def by_device_and_dtype(*lists: list[Tensor]) -> list[tuple[list[Tensor], ...]]:
    """Split parallel tensor lists into buckets of one device and dtype (foreach kernels need it)."""
    # torch declares lists that may hold None (invariant list types): none goes in, none comes out.
    grouped = _group_tensors_by_device_and_dtype(cast(list[list[Tensor | None]], list(lists)))
    return [cast(tuple[list[Tensor], ...], tuple(tensorlists)) for tensorlists, _ in grouped.values()]


class Signum(torch.optim.Optimizer):
    """Signum with heavy-ball momentum, optional Nesterov and decoupled weight decay.

    ``foreach=True`` (the default) runs ``torch._foreach_*`` kernels per device and dtype;
    ``foreach=False`` is the readable per-tensor reference. Both give bit-identical results.
    State per parameter: ``exp_avg = (1 - beta) m`` (see the module docstring); per group: ``step``
    (optimizer steps taken), which SoftSignum and HardSwitchSign read when they branch from a
    Signum checkpoint.
    """

    def __init__(
        self,
        params,
        lr: float = DEFAULTS["lr"],
        momentum: float = DEFAULTS["momentum"],
        weight_decay: float = DEFAULTS["weight_decay"],
        nesterov: bool = DEFAULTS["nesterov"],
        *,
        foreach: bool = True,
    ):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "foreach": foreach,
        }
        validate(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        clock = run_clock(self.param_groups)
        super().add_param_group(param_group)
        group = checked_group(self, validate)
        # The run's clock, kept as SoftSignum and HardSwitchSign keep it, so that a Signum checkpoint
        # at step S can start either of them (optimizers/_switch.py). A group added to a running
        # optimizer joins the clock where it stands.
        group["step"] = clock

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``; a group key the checkpoint lacks (``step`` and ``foreach`` in
        a Signum checkpoint from before either existed) keeps this optimizer's value."""
        load_keeping_own_keys(self, state_dict, super().load_state_dict, required=())

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # an optimizer pickled before the keys existed
            group.setdefault("step", 0)
            group.setdefault("foreach", True)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            group["step"] += 1  # optimizer steps, with or without gradients in this group
            params, grads, bufs = collect(self, group, "exp_avg")
            if not params:
                continue
            hp = {
                "lr": group["lr"],
                "weight_decay": group["weight_decay"],
                "momentum": group["momentum"],
                "nesterov": group["nesterov"],
            }
            if group["foreach"]:
                for bucket in by_device_and_dtype(params, grads, bufs):
                    signum_step(*bucket, **hp, foreach=True)
            else:
                signum_step(params, grads, bufs, **hp, foreach=False)
        return loss

    def diagnostics(self) -> dict[str, float]:
        """Nothing beyond the loss is worth logging for a pure sign method."""
        return {}


def build(groups: Mapping[str, list[torch.nn.Parameter]], hparams: dict[str, Any], total_steps: int) -> Signum:
    """Signum over every role; 1-D parameters are not decayed."""
    del total_steps  # Signum has no internal schedule
    param_groups = decay_groups(all_params(groups), hparams["weight_decay"])
    return Signum(
        param_groups,
        lr=hparams["lr"],
        momentum=hparams["momentum"],
        weight_decay=hparams["weight_decay"],
        nesterov=hparams["nesterov"],
    )


SPEC = OptimizerSpec(
    name="signum",
    summary="Signum (Bernstein et al. 2018): sign of heavy-ball momentum, decoupled weight decay",
    defaults=DEFAULTS,
    search_space=SEARCH_SPACE,
    build_fn=build,
    implementation="foreach",
    extra={"momentum_convention": "heavy-ball m <- beta*m + g (first m = g), stored as (1-beta)*m"},
)
