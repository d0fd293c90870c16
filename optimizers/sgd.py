"""SGD with heavy-ball momentum (Polyak 1964; Nesterov variant as in Sutskever et al. 2013), the
classical baseline, with decoupled weight decay.

Semantics are torch.optim.SGD's with ``dampening=0`` (buffer ``m <- beta m + g``, first step
``m = g``; Nesterov direction ``g + beta m``), and with ``weight_decay=0`` the steps equal
``torch.optim.SGD``'s bit for bit (tested). What differs: weight decay is *decoupled*,
``p <- p * (1 - lr * wd)`` before the step, as for every optimizer in optbench (docs/optimizers.md#conventions), and never on
1-D parameters. torch's SGD instead adds ``wd * p`` to the gradient, which momentum then amplifies
by ``1 / (1 - beta)``: a coupled ``wd_c`` corresponds to a decoupled ``wd = wd_c / (1 - beta)``
(the default below is the classical CIFAR ``5e-4`` at beta = 0.9).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from optimizers._base import (
    Distribution,
    LogUniform,
    OneMinusLogUniform,
    OptimizerSpec,
    all_params,
    checked_group,
    decay_groups,
)
from optimizers._switch import load_keeping_own_keys
from optimizers.signum import by_device_and_dtype, collect, decay_and_step, momentum_directions, validate

DEFAULTS: dict[str, Any] = {
    "lr": 0.05,  # classical ResNet/CIFAR SGD uses 0.1 at batch 128; 0.05 is safer across tasks
    "weight_decay": 5e-3,  # = coupled 5e-4 / (1 - 0.9), see module docstring
    "momentum": 0.9,
    "nesterov": False,
}

SEARCH_SPACE: dict[str, Distribution] = {
    "lr": LogUniform(1e-3, 1.0),
    "weight_decay": LogUniform(1e-5, 0.1),
    "momentum": OneMinusLogUniform(1e-2, 0.5),  # beta in [0.5, 0.99]
}


class SGD(torch.optim.Optimizer):
    """SGD with heavy-ball (or Nesterov) momentum and decoupled weight decay.

    ``foreach=True`` (default) uses ``torch._foreach_*`` kernels per device and dtype;
    ``foreach=False`` is the per-tensor reference. Both give bit-identical results.
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
        super().add_param_group(param_group)
        checked_group(self, validate)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``; a group key the checkpoint lacks keeps this optimizer's value."""
        load_keeping_own_keys(self, state_dict, super().load_state_dict, required=())

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", True)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, bufs = collect(self, group, "momentum_buffer")
            if not params:
                continue
            foreach = group["foreach"]
            buckets = by_device_and_dtype(params, grads, bufs) if foreach else [(params, grads, bufs)]
            for p, g, m in buckets:
                d = momentum_directions(g, m, group["momentum"], group["nesterov"], foreach=foreach)
                decay_and_step(p, d, group["lr"], group["weight_decay"], foreach=foreach)
        return loss

    def diagnostics(self) -> dict[str, float]:
        """Nothing cheap and useful to log beyond the loss."""
        return {}


def build(groups: Mapping[str, list[torch.nn.Parameter]], hparams: dict[str, Any], total_steps: int) -> SGD:
    """SGD over every role; 1-D parameters are not decayed."""
    del total_steps
    param_groups = decay_groups(all_params(groups), hparams["weight_decay"])
    return SGD(
        param_groups,
        lr=hparams["lr"],
        momentum=hparams["momentum"],
        weight_decay=hparams["weight_decay"],
        nesterov=hparams["nesterov"],
    )


SPEC = OptimizerSpec(
    name="sgd",
    summary="SGD with heavy-ball/Nesterov momentum (torch.optim.SGD semantics), decoupled weight decay",
    defaults=DEFAULTS,
    search_space=SEARCH_SPACE,
    build_fn=build,
    implementation="foreach",
    extra={"weight_decay_convention": "decoupled p <- p*(1 - lr*wd); coupled wd_c = wd*(1 - momentum)"},
)
