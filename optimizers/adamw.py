"""AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019): the reference
every other optimizer is compared against.

This is ``torch.optim.AdamW`` itself with its multi-tensor (``foreach=True``) path, recorded in
every result row; the subclass only adds hyperparameter validation that names the offending key
and the ``diagnostics()`` hook the training loop calls. Weight decay never touches 1-D parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from optimizers._base import (
    Distribution,
    LogUniform,
    OptimizerSpec,
    all_params,
    check_betas,
    check_lr,
    check_nonneg,
    decay_groups,
)

# torch.optim.AdamW's own defaults: what users recognise, and Optuna's trial 0.
DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 0.01,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
}

SEARCH_SPACE: dict[str, Distribution] = {
    "lr": LogUniform(1e-5, 1e-2),
    "weight_decay": LogUniform(1e-4, 1.0),
}


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` (foreach) with hyperparameter errors that name the parameter.

    ``foreach=None`` (default) is the multi-tensor path, except with a tensor ``lr``, which torch's
    foreach AdamW takes only with ``capturable=True`` (CUDA): then the for-loop path, as
    torch.optim.AdamW's own default on CPUs. ``foreach=True`` with a tensor lr is torch's refusal.
    """

    def __init__(
        self,
        params,
        lr: float | torch.Tensor = DEFAULTS["lr"],
        betas: tuple[float, float] = DEFAULTS["betas"],
        eps: float = DEFAULTS["eps"],
        weight_decay: float = DEFAULTS["weight_decay"],
        *,
        foreach: bool | None = None,
    ):
        check_lr("lr", lr)
        if foreach is None:
            foreach = not isinstance(lr, torch.Tensor)
        check_betas("betas", betas)
        check_nonneg("eps", eps)
        check_nonneg("weight_decay", weight_decay)
        super().__init__(params, lr=lr, betas=(betas[0], betas[1]), eps=eps, weight_decay=weight_decay, foreach=foreach)

    def diagnostics(self) -> dict[str, float]:
        """Nothing cheap and useful to log beyond the loss."""
        return {}


def build(groups: Mapping[str, list[torch.nn.Parameter]], hparams: dict[str, Any], total_steps: int) -> AdamW:
    """AdamW over every role; 1-D parameters are not decayed."""
    del total_steps
    param_groups = decay_groups(all_params(groups), hparams["weight_decay"])
    return AdamW(
        param_groups, lr=hparams["lr"], betas=hparams["betas"], eps=hparams["eps"], weight_decay=hparams["weight_decay"]
    )


SPEC = OptimizerSpec(
    name="adamw",
    summary="AdamW (Loshchilov & Hutter 2019), torch.optim.AdamW multi-tensor path",
    defaults=DEFAULTS,
    search_space=SEARCH_SPACE,
    build_fn=build,
    implementation="foreach",
)
