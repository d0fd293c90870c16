"""Test-only port of the official Softsign update rules, written from reading
github.com/brain-lab-research/softsign at commit 77526d8 (``softsignum.py``: ``newton_quantile``,
``get_temperature_schedule``, ``_single_tensor_softsignum``, ``SoftSignum.step``;
``softmuon/softmuon.py``: ``zeropower_via_newtonschulz5``, ``muon_regularized_update``,
``get_temperature_schedule``, ``softmuon_update``, ``adam_update``,
``SingleDeviceSoftMuonWithAuxAdam.step``). Not product code: it exists so that a test can hold
optbench's optimizers against the published ones, and it is deliberately written the plain way the
official code is (one tensor at a time, no foreach, no stored ``(1 - beta) m``, no batching), so it
shares no code path with ``optimizers/``.

What the port changes, and why (everything else follows the official code line by line):
  * matrix iterations (NS5, the regularised polar iteration) run in float32, not bfloat16 (the
    issue's "NS dtype aside": optbench's ``ns_dtype="auto"`` is float32 on CPU);
  * singular values come from ``torch.linalg.svdvals`` instead of the official iterative "CANS" SVD
    (the quantity, not the algorithm);
  * ``exact_constants=True`` (default) evaluates the schedule in float64 with the exact constants
    ``atanh(1 - eps)`` and ``(1 - eps) / sqrt(1 - (1 - eps)^2)``. The official code rounds ``1 - eps``
    to float32 before forming them (``torch.tensor(1 - eps)``, ``torch.as_tensor(1 - eps)``) and, for
    SoftSignum, runs the Newton solve in float32 (``arange(N) / N`` is float32). optbench keeps the
    float64 fit on purpose; ``exact_constants=False`` reproduces the official dtypes, so a test can
    measure what that difference amounts to;
  * the soft-phase index is clamped past ``K`` for SoftSignum as the official SoftMuon does (the
    official SoftSignum raises an index error there; tests stay within ``K``);
  * SoftSignum takes several param groups (each with its own weight decay) and fits one schedule
    over all of them, as the official class does over the single group it is given in the paper's
    runs; ``pool="group"`` fits one per group, as the official class does with several groups.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# --- the schedule (softsignum.py and softmuon/softmuon.py share this code) ---------------------


def newton_quantile(p: Tensor, mu: Tensor, sigma: Tensor, max_iter: int = 10, tol: float = 1e-8) -> Tensor:
    """Folded-Cauchy quantiles by Newton's method, exactly as the official ``newton_quantile``:
    start ``sigma * icdf_C01((1 + p) / 2) + |mu|``, ``z = (+-q - mu) / (sigma + tol)`` in the CDF but
    ``/ sigma`` in the density, clamp at 0 after each step."""
    q = sigma * torch.tan(math.pi * ((1 + p) / 2 - 0.5)) + mu.abs()
    for _ in range(max_iter):
        z1 = (q - mu) / (sigma + tol)
        z2 = (-q - mu) / (sigma + tol)
        F = (torch.atan(z1) / math.pi + 0.5) - (torch.atan(z2) / math.pi + 0.5) - p
        density = (1 / (math.pi * (1 + z1 * z1)) + 1 / (math.pi * (1 + z2 * z2))) / sigma
        q = torch.clamp(q - F / density, min=0.0)
    return q


def schedule_from_values(
    values: Tensor, n: int, c: Tensor | float, *, p_dtype: torch.dtype, newton_iters: int, tmax: float
) -> Tensor:
    """``clamp(c / q(j / n), 1, tmax)`` with ``mu = median(values)``, ``sigma = median|values - mu|``."""
    mu = values.median()
    sigma = (values - mu).abs().median()
    p = torch.arange(n, dtype=p_dtype) / n
    if p_dtype == torch.float64:
        mu, sigma = mu.double(), sigma.double()
    q = newton_quantile(p, mu, sigma, newton_iters)
    return torch.clamp(c / q, 1.0, tmax)


def softsignum_schedule(
    d: Tensor, n: int, eps: float = 1e-4, newton_iters: int = 10, tmax: float = 1e9, exact_constants: bool = True
) -> Tensor:
    """The official SoftSignum ``get_temperature_schedule`` on all entries ``d`` (flat)."""
    if exact_constants:
        return schedule_from_values(
            d, n, math.atanh(1 - eps), p_dtype=torch.float64, newton_iters=newton_iters, tmax=tmax
        )
    c = torch.atanh(torch.tensor(1 - eps))  # float32, as the official code
    return schedule_from_values(d, n, c, p_dtype=torch.float32, newton_iters=newton_iters, tmax=tmax)


def softmuon_schedule(
    grads: list[Tensor],
    n: int,
    eps: float = 1e-4,
    newton_iters: int = 10,
    tmax: float = 1e9,
    exact_constants: bool = True,
) -> Tensor:
    """The official SoftMuon ``get_temperature_schedule``: singular values of every raw gradient
    (conv kernels as ``(out, in*kh*kw)``), pooled; ``p`` is float64 in the official code."""
    sigmas = torch.cat([torch.linalg.svdvals(g.reshape(g.shape[0], -1) if g.ndim > 2 else g).flatten() for g in grads])
    y = 1 - eps
    if exact_constants:
        c = y / math.sqrt(1 - y * y)
    else:
        y32 = torch.as_tensor(y)  # float32: 1 - y^2 cancels (official inverse_soft_clipping)
        c = y32 / (1 - y32**2) ** 0.5
    return schedule_from_values(sigmas, n, c, p_dtype=torch.float64, newton_iters=newton_iters, tmax=tmax)


# --- SoftSignum (softsignum.py, _single_tensor_softsignum) ---------------------------------------


class PortSoftSignum:
    """The official single-tensor SoftSignum with dampening 0, no normalisation, not maximising."""

    def __init__(
        self,
        groups: list[dict],
        *,
        lr: float,
        momentum: float,
        nesterov: bool,
        sign_iters: int,
        transition_iters: int,
        eps: float = 1e-4,
        newton_iters: int = 10,
        tmax: float = 1e9,
        pool: str = "all",
        exact_constants: bool = True,
    ):
        self.groups = [{"params": list(g["params"]), "weight_decay": g["weight_decay"]} for g in groups]
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.sign_iters, self.transition_iters = sign_iters, transition_iters
        self.eps, self.newton_iters, self.tmax = eps, newton_iters, tmax
        self.pool, self.exact_constants = pool, exact_constants
        self.buffers: dict[int, Tensor] = {}
        self.schedules: list[Tensor | None] = [None] * len(self.groups)
        self.step_count = 0

    def _schedule(self, directions: list[Tensor]) -> Tensor:
        flat = torch.cat([d.reshape(-1) for d in directions])
        return softsignum_schedule(
            flat, self.transition_iters, self.eps, self.newton_iters, self.tmax, self.exact_constants
        )

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        current = self.step_count
        per_group = []
        for group in self.groups:
            directions = []
            for p in group["params"]:
                grad = p.grad
                if group["weight_decay"] != 0:
                    p.mul_(1 - self.lr * group["weight_decay"])
                buf = self.buffers.get(id(p))
                if buf is None:
                    buf = torch.clone(grad).detach()
                    self.buffers[id(p)] = buf
                else:
                    buf.mul_(self.momentum).add_(grad)
                directions.append(grad.add(buf, alpha=self.momentum) if self.nesterov else buf)
            per_group.append(directions)
        if current - 1 == self.sign_iters:
            if self.pool == "all":
                shared = self._schedule([d for ds in per_group for d in ds])
                self.schedules = [shared] * len(self.groups)
            else:
                self.schedules = [self._schedule(ds) for ds in per_group]
        for gi, (group, directions) in enumerate(zip(self.groups, per_group)):
            for p, d in zip(group["params"], directions):
                if current - 1 >= self.sign_iters:
                    j = min(current - 1 - self.sign_iters, self.transition_iters - 1)
                    update = torch.tanh(self.schedules[gi][j] * d)
                else:
                    update = torch.sign(d)
                p.add_(update, alpha=-self.lr)


# --- SoftMuon (softmuon/softmuon.py, SingleDeviceSoftMuonWithAuxAdam) -----------------------------

NS_A, NS_B, NS_C = 3.4445, -4.7750, 2.0315


def zeropower_via_newtonschulz5(G: Tensor, steps: int) -> Tensor:
    X = G.float()  # official: G.bfloat16()
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = NS_B * A + NS_C * A @ A
        X = NS_A * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def muon_regularized_update(G: Tensor, steps: int, temp: Tensor) -> Tensor:
    X = G.float()  # official: G.bfloat16()
    transposed = X.size(-2) > X.size(-1)
    if transposed:
        X = X.mT
    A = X @ X.mT
    eye = torch.eye(A.size(-1), dtype=A.dtype)
    A = A + eye / (temp**2)
    norm_a = A.norm(dim=(-2, -1), keepdim=True)
    A = A / norm_a
    Y = A
    Z = torch.eye(A.size(-1), dtype=A.dtype)
    for _ in range(steps):
        T = 0.5 * (3 * eye - Z @ Y)
        Y = Y @ T
        Z = T @ Z
    out = Z @ X
    out = out / norm_a.sqrt()
    return out.mT if transposed else out


def softmuon_update(grad: Tensor, momentum: Tensor, beta: float, temp: Tensor | None, ns_steps: int = 5) -> Tensor:
    """``softmuon_update`` with nesterov=True (its default); ``grad`` is not modified (the official
    code lerps ``p.grad`` in place, which changes nothing for a caller that sets fresh gradients)."""
    momentum.lerp_(grad, 1 - beta)
    update = grad.lerp(momentum, beta)
    if update.ndim == 4:
        update = update.view(len(update), -1)
    if temp is None:
        update = zeropower_via_newtonschulz5(update, steps=ns_steps)
    else:
        update = muon_regularized_update(update, steps=ns_steps, temp=temp)
    update = update * max(1, grad.size(-2) / grad.size(-1)) ** 0.5
    return update


class PortSoftMuonWithAuxAdam:
    """``SingleDeviceSoftMuonWithAuxAdam``: groups are dicts with ``use_muon``; Muon groups carry
    ``lr, weight_decay, momentum, sign_iters, transition_iters`` (eps 1e-4, newton_iters 10, tmax 1e9
    as the official defaults), AdamW groups ``lr, betas, eps, weight_decay``."""

    def __init__(self, groups: list[dict], exact_constants: bool = True):
        self.groups = groups
        self.exact_constants = exact_constants
        self.state: dict[int, dict] = {}
        self.step_count = 0

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        current = self.step_count
        for group in self.groups:
            if group["use_muon"]:
                si, ti = group["sign_iters"], group["transition_iters"]
                if current == si + 1:
                    group["schedule"] = softmuon_schedule(
                        [p.grad for p in group["params"]], ti, exact_constants=self.exact_constants
                    )
                temperature = None
                if group.get("schedule") is not None and current > si:
                    temperature = group["schedule"][max(0, min(current - si - 1, ti - 1))]
                for p in group["params"]:
                    state = self.state.setdefault(id(p), {"momentum_buffer": torch.zeros_like(p)})
                    update = softmuon_update(p.grad, state["momentum_buffer"], group["momentum"], temperature)
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update.reshape(p.shape), alpha=-group["lr"])
            else:
                beta1, beta2 = group["betas"]
                for p in group["params"]:
                    state = self.state.setdefault(
                        id(p), {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p), "step": 0}
                    )
                    state["step"] += 1
                    buf1, buf2 = state["exp_avg"], state["exp_avg_sq"]
                    buf1.lerp_(p.grad, 1 - beta1)
                    buf2.lerp_(p.grad.square(), 1 - beta2)
                    buf1c = buf1 / (1 - beta1 ** state["step"])
                    buf2c = buf2 / (1 - beta2 ** state["step"])
                    update = buf1c / (buf2c.sqrt() + group["eps"])
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update, alpha=-group["lr"])
