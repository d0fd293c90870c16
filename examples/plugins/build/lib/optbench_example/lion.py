"""Lion, "EvoLved Sign Momentum" (Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu, Le,
"Symbolic Discovery of Optimization Algorithms", NeurIPS 2023, arXiv 2302.06675, Algorithm 2):

    c <- beta1 * m + (1 - beta1) * g          # the update direction interpolates momentum and gradient
    p <- p * (1 - lr * wd) - lr * sign(c)     # decoupled weight decay, sign update
    m <- beta2 * m + (1 - beta2) * g          # the momentum tracks the gradient more slowly

Defaults from the paper: beta1 0.9, beta2 0.99; its lr is usually 3-10x smaller than AdamW's and
its weight decay 3-10x larger (lr 1e-4 here). A plain ``torch.optim.Optimizer``: optbench wraps it
(defaults from this signature, no weight decay on 1-D parameters, lr searched log-uniformly).
"""

from __future__ import annotations

import torch


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023): the sign of an interpolation of momentum and gradient."""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0):
        if not lr >= 0:
            raise ValueError(f"invalid lr: {lr!r} (must be >= 0)")
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"invalid betas: {betas!r} (two values in [0, 1))")
        if not weight_decay >= 0:
            raise ValueError(f"invalid weight_decay: {weight_decay!r} (must be >= 0)")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = []
            for p in params:
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(state["exp_avg"])
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            update = torch._foreach_lerp(bufs, grads, 1.0 - beta1)  # beta1 m + (1 - beta1) g
            torch._foreach_sign_(update)
            if wd:
                torch._foreach_mul_(params, 1.0 - lr * wd)
            torch._foreach_add_(params, update, alpha=-lr)
            torch._foreach_lerp_(bufs, grads, 1.0 - beta2)
        return loss
