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
  * 1-D parameters are never decayed (SPEC; the official class decays every parameter of a group);
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
    LogUniform,
    OneMinusLogUniform,
    OptimizerSpec,
    all_params,
    check_int,
    check_positive,
    check_unit_interval,
    checked_group,
    decay_groups,
)
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
SEARCH_SPACE = {
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


# --- the temperature schedule ---------------------------------------------------------------------

def fit_cauchy(values: Tensor, *, overwrite: bool = False) -> tuple[Tensor, Tensor]:
    """Robust Cauchy fit of all entries: ``mu = median(v)``, ``sigma = median(|v - mu|)``.

    The median is the lower middle element for an even count, as ``torch.median``. A zero MAD
    (more than half of the entries equal, e.g. dead units) falls back to the mean absolute
    deviation, and if that is zero too (all entries equal) to ``max(1e-6 * |mu|, tiny)``: the scale
    is always finite and > 0. Returns float64 0-d tensors on ``values``' device.

    Torch only, on every device: two selections (``torch.median``) and the fallbacks through
    ``torch.where``, so no host sync and nothing ``torch.compile`` cannot trace (optbench fitted on
    CPUs with ``numpy.partition`` before, ~1.7x faster, but a compiled step could not cross the
    switch; the fit runs once per run). ``overwrite=True`` lets it reuse ``values``' memory for the
    absolute deviations (a caller's own copy).
    """
    v = values.detach().reshape(-1)
    if v.numel() == 0:
        raise ValueError("cannot fit a temperature schedule to an empty tensor")
    if v.dtype not in (torch.float32, torch.float64):
        v, overwrite = v.float(), True
    return _fit_cauchy_torch(v, overwrite=overwrite)


_TINY = torch.finfo(torch.float32).tiny


def _fit_cauchy_torch(v: Tensor, *, overwrite: bool = False) -> tuple[Tensor, Tensor]:
    """``fit_cauchy`` of a flat tensor with device-side fallbacks (``torch.where``): no host sync."""
    mu = v.median()
    dev = v.sub_(mu) if overwrite else v - mu
    dev = dev.abs_()
    sigma = dev.median().double()
    mean_dev = dev.mean(dtype=torch.float64)
    mu = mu.double()
    fallback = torch.clamp(mu.abs() * 1e-6, min=_TINY)
    sigma = torch.where(sigma > 0, sigma, torch.where(mean_dev > 0, mean_dev, fallback))
    return mu, sigma


def folded_cauchy_quantile(p: Tensor, mu: Tensor, sigma: Tensor, newton_iters: int = 10) -> Tensor:
    """Quantiles ``q`` with ``F(q) = p`` of the folded Cauchy ``|X|``, ``X ~ Cauchy(mu, sigma)``.

    ``F(q) = C((q - mu)/sigma) - C((-q - mu)/sigma)`` with ``C(z) = 1/2 + atan(z)/pi``, solved by
    Newton's method vectorised over ``p`` from ``q0 = sigma * tan(pi p / 2) + |mu|`` (which always
    lies at or above the root), clamping ``q >= 0`` after every step (as the official code does).
    Computed in float64.
    """
    p = p.double()
    mu = mu.double()
    sigma = sigma.double()
    q = sigma * torch.tan(0.5 * math.pi * p) + mu.abs()
    for _ in range(newton_iters):
        a = (q - mu) / sigma
        b = (q + mu) / sigma
        cdf = (torch.atan(a) + torch.atan(b)) / math.pi
        pdf = (1.0 / (1.0 + a * a) + 1.0 / (1.0 + b * b)) / (math.pi * sigma)
        q = torch.clamp(q - (cdf - p) / pdf, min=0.0)
    return q


def temperature_schedule(
    values: Tensor,
    n: int,
    eps: float = 1e-4,
    newton_iters: int = 10,
    tmax: float = 1e9,
    c: float | None = None,
    *,
    overwrite: bool = False,
) -> Tensor:
    """The SoftSignum temperature schedule ``tau_0 >= ... >= tau_{n-1}`` built from ``values``.

    ``values`` is every entry of the update direction at the switch step of all the parameters the
    schedule covers (signed; SoftMuon passes singular values). Fit ``mu = median``, ``sigma = MAD``
    (``fit_cauchy``), take the folded-Cauchy quantiles ``q_j`` at ``p_j = j / n``
    (``folded_cauchy_quantile``) and return
    ``tau_j = clip(c / q_j, 1, tmax)``, with ``c = atanh(1 - eps)`` by default (SoftMuon passes
    ``c = (1 - eps) / sqrt(1 - (1 - eps)^2)``). So at step ``j`` of the transition, about a fraction
    ``1 - p_j`` of the coordinates is saturated (``|tanh(tau_j d)| > 1 - eps``).

    Returns a float64 tensor of length ``n`` on ``values``' device (CPU for MPS, which has no
    float64). Two selections (median, then MAD): never ``torch.quantile``, which sorts and fails
    above 2^24 entries. ``overwrite=True`` lets the fit scramble ``values`` (a caller's own copy).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"invalid n: {n!r} (must be an integer >= 1)")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"invalid eps: {eps!r} (must lie in (0, 1))")
    if not (math.isfinite(tmax) and tmax >= 1.0):
        raise ValueError(f"invalid tmax: {tmax!r} (must be a finite number >= 1)")
    if not isinstance(newton_iters, int) or newton_iters < 0:
        raise ValueError(f"invalid newton_iters: {newton_iters!r} (must be an integer >= 0)")
    if c is None:
        c = math.atanh(1.0 - eps)
    if values.device.type == "mps":
        values = values.cpu()
    mu, sigma = fit_cauchy(values, overwrite=overwrite)
    p = torch.arange(n, dtype=torch.float64, device=mu.device) / n
    q = folded_cauchy_quantile(p, mu, sigma, newton_iters)
    # q_0 = 0 (p_0 = 0) gives c / 0 = inf, clipped to tmax: the transition starts as a pure sign.
    return torch.clamp(c / q, min=1.0, max=tmax)


# --- schedule storage, shared with SoftMuon ---------------------------------------------------

_HALF = (torch.float16, torch.bfloat16)


def fit_schedule(
    values: list[Tensor], n: int, *, eps: float, newton_iters: int, tmax: float, c: float | None = None,
    scales: list[float] | None = None,
) -> Tensor:
    """One schedule of length ``n`` over all entries of ``values`` (each entry of ``values[i]``
    multiplied by ``scales[i]`` if given), as a float32 tensor on ``values[0]``'s device.

    One pass copies (and scales) every entry into one float32-or-wider vector (half precision is
    widened so the median and MAD are not rounded to 8 bits), then ``temperature_schedule`` fits it
    in place. Float32 storage: the schedule multiplies float32 (or narrower) directions, and MPS has
    no float64.
    """
    device = values[0].device
    dtype = torch.float32 if values[0].dtype in _HALF else values[0].dtype
    flat = torch.empty(sum(v.numel() for v in values), dtype=dtype, device=device)
    offset = 0
    for i, v in enumerate(values):
        segment = flat[offset:offset + v.numel()]
        source = v.detach().reshape(-1).to(device)
        if scales is None or scales[i] == 1.0:
            segment.copy_(source)
        else:
            torch.mul(source, scales[i], out=segment)
        offset += v.numel()
    schedule = temperature_schedule(flat, n, eps=eps, newton_iters=newton_iters, tmax=tmax, c=c, overwrite=True)
    return schedule.to(device=device, dtype=torch.float32)


def group_tau(group: dict[str, Any], j: int, device: torch.device | None = None) -> Tensor:
    """The 0-d float32 temperature ``tau_j`` (tensor indexing: no host sync).

    A schedule on another device (e.g. after ``load_state_dict`` of a CPU checkpoint into a CUDA
    run) is moved once and kept there.
    """
    if device is not None and group["tau_schedule"].device != device:
        group["tau_schedule"] = group["tau_schedule"].to(device)
    return group["tau_schedule"][j]


# --- the update ---------------------------------------------------------------------------------

def soft_step(
    params: list[Tensor], directions: list[Tensor], tau: Tensor, *, lr: float, weight_decay: float,
    foreach: bool, directions_are_scratch: bool = False,
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
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov,
                    "alpha_sign": alpha_sign, "eps": eps, "tmax": tmax, "newton_iters": newton_iters,
                    "schedule_scope": schedule_scope, "foreach": foreach, "total_steps": total_steps}
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
        group = checked_group(self, lambda g: (validate(g), check_shared_schedule(self.param_groups, SCHEDULE_KEYS)))
        init_switch_state(group, group["alpha_sign"], group["total_steps"], "tau_schedule", step=clock)
        share_switch_state(self.param_groups, group, "tau_schedule")

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
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
            soft.append((group, j, buckets, [scaled_momentum_directions(g, e, momentum, nesterov, foreach=foreach)
                                             for _, g, e in buckets]))
        self._build_due_schedules(soft)
        for group, j, buckets, directions in soft:
            if group["tau_schedule"] is None:  # only zero-size tensors so far: nothing to update
                continue
            for (p, _, _), d in zip(buckets, directions):
                soft_step(p, d, _bucket_tau(group, j, p[0]), lr=group["lr"], weight_decay=group["weight_decay"],
                          foreach=group["foreach"], directions_are_scratch=group["nesterov"])
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
            schedule = fit_schedule(values, first["total_steps"] - first["sign_steps"], eps=first["eps"],
                                    newton_iters=first["newton_iters"], tmax=first["tmax"], scales=scales)
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
            if soft and phase == 0.0:
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
    keys = ("lr", "momentum", "weight_decay", "nesterov", "alpha_sign", "eps", "tmax", "newton_iters",
            "schedule_scope")
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
    extra={"momentum_convention": "heavy-ball m <- beta*m + g (first m = g), stored as (1-beta)*m",
           "cpu_tanh": "2*(sigmoid(2x)-1/2) on the CPU foreach path, torch.tanh elsewhere",
           "variants": {"schedule_scope": "optimizer (default, official: one schedule over every parameter) | "
                                          "group (one per param group, optbench's earlier)"}},
)
