"""SoftMuon: Muon that hands over smoothly from the matrix sign ``U V^T`` to a spectral soft sign.

Source: Feoktistov, Belinsky, Veprikov, Zainullin, Beznosikov, "Softsign: Smooth Sign in Your Optimizer
For Better Parameter Heterogeneity Handling" (arXiv 2605.31371, ICML 2026); official code
github.com/brain-lab-research/softsign at commit 77526d8 (``softmuon/softmuon.py``, built on Keller
Jordan's Muon). Defaults follow the official code wherever the paper is silent.

Steps ``1..S`` (``S = floor(alpha_sign * K)``, ``K`` the run's total steps) are exactly Muon
(``optimizers/muon.py``, same code path, so the two agree bit for bit). At step ``S + 1``, before the
update, one temperature schedule ``tau_0 >= ... >= tau_{N-1}`` (``N = K - S``) is built by
``optimizers.softsignum.temperature_schedule`` from the pool of all singular values of the raw
gradients of every Muon matrix (official), with ``c = (1 - eps) / sqrt(1 - (1 - eps)^2)`` (70.705 at
eps = 1e-4, the ``x`` at which ``x / sqrt(1 + x^2) = 1 - eps``). Step ``S + 1 + j`` then replaces
``NS5(u)`` by

    Phi_tau(u) = u (u^T u + tau^-2 I)^(-1/2) = U diag(tau s / sqrt(1 + tau^2 s^2)) V^T,  tau = tau_j,

with Muon's ``lr * shape_scale`` step; steps past ``K`` hold ``tau_{N-1}`` (as the official code).
Directions with ``tau s >> 1`` still move like Muon (``~1``), directions with ``tau s << 1`` move like
SGD (``tau s``): the update becomes magnitude-sensitive as tau falls. Like the official code we feed
``Phi`` the raw Nesterov input ``u`` (no normalisation: normalising each matrix would make the map
scale-free per matrix again and remove the magnitude sensitivity across matrices SoftMuon exists for).

Variants (hyperparameters, recorded in every result row's ``hp_*`` columns; defaults = official):
  schedule_source "gradient" (default, official): singular values of the raw gradients ``g`` at step
      ``S + 1``. "nesterov" (optbench's earlier choice): singular values of the matrices ``Phi`` maps
      at that step, ``u = lerp(g, m, beta)`` (``m`` without Nesterov). Its argument: ``Phi`` sees ``u``,
      so the quantiles then hold for ``u``; but ``u`` is mostly momentum, whose noise directions are
      smaller than the gradient's, so this variant's temperatures came out 2-5x the official ones
      and the transition stays saturated longer (0.45 vs 0.20-0.31 saturated at j = 500 of 1000).
  schedule_scope "optimizer" (default, official: one fit over every Muon matrix) | "group": one fit
      per Muon param group (``build`` makes one Muon group, so the two agree there; they differ for
      a hand-made SoftMuon with several Muon groups). Groups sharing a schedule must share
      alpha_sign, eps, tmax, newton_iters and schedule_source.
  soft_ns_steps ``5`` (default, as the official code runs it): the coupled Newton-Schulz /
      Denman-Beavers-type inverse square root ``Y <- Y T, Z <- T Z, T = (3I - Z Y)/2`` on
      ``A = (X X^T + tau^-2 I)/||.||_F``, 5 steps. It is far from converged when ``A`` is
      ill-conditioned (tau large, momentum spectrum spread): small singular directions are
      under-weighted and the update shrinks. Relative Frobenius distance to the exact map, measured
      on 64x96 matrices with singular values log-spaced over 1e3: 7e-4 at tau = 0.1, 4e-4 at tau = 1,
      0.18 at tau = 10, 0.72 at tau >= 1e3 (``tests/test_muon_family.py`` pins a band).
    ``None`` (accurate): the exact formula through a float64 ``eigh`` of the short-side Gram matrix,
      ``Phi = Q diag((lam + tau^-2)^(-1/2)) Q^T X``; relative error ~1e-6 at condition number 1e3
      (tested to 1e-3 for tau in 1e-1..1e9). Why not "more fp32 iterations": the iteration works on
      ``X X^T``, which squares the condition number, so in float32 singular values below ~1e-3.5 of
      the largest carry percent-level errors whatever the step count (30 steps at tau >= 1e3:
      1e-3..2e-3 error at condition 1e3; 4e-3, then NaN at 1e5). A Newton-Schulz polar iteration on
      the augmented ``[tau X, I]`` avoids the squaring but needs ~16 steps on an r x (r + c) matrix:
      5x slower than the eigh on CPU.
  ns_dtype, shape_scale: Muon's (``optimizers/muon.py``); ns_dtype also sets the dtype of the
      5-step soft polar iteration ("auto": bfloat16 on CUDA as the official code, float32 elsewhere;
      the official code runs it in bfloat16 on every device). shape_scale "reference" (default) is
      the official ``sqrt(max(1, grad.size(-2) / grad.size(-1)))`` of the unflattened gradient.
  tmax 1e9 (the official SoftMuon default too), eps 1e-4, newton_iters 10, alpha_sign 0.9: the paper's.

Differences from the official code that change nothing in normal runs, kept on purpose: the zero-MAD
guard and the float64 fit of ``optimizers/softsignum.py`` (the official constant ``c`` is formed in
float32, where ``1 - (1 - eps)^2`` cancels: 70.6977 instead of 70.7054, 1.1e-4 relative); singular
values as square roots of ``eigvalsh`` of the float64 short-side Gram matrix (accurate down to ~1e-7 of
the largest, 7x faster than ``svdvals`` on 512x4608 on CPU; the official code uses an iterative
"CANS" SVD); a matrix without a gradient at the switch is left out of the pool (the official code
gives it a zero gradient, adding zero singular values); ``p.grad`` is never overwritten.

The diagnostics report the current tau, the share of singular values with ``tau s >= c`` (soft sign
within eps of 1) of the matrices ``Phi`` maps (``u`` while gradients are set, else the momentum
buffer, since ``u`` is not kept) and the phase.

Branching: ``load_state_dict(muon.state_dict())`` of a Muon run at step ``S`` (same hyperparameters)
continues as an unbranched SoftMuon run of ``K`` steps (``optimizers/_switch.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from optimizers import muon
from optimizers._base import OptimizerSpec, check_int, check_positive, check_unit_interval
from optimizers._muon_ops import as_matrix, map_matrices, ns_compute_dtype
from optimizers._switch import (
    SCHEDULE_SCOPES,
    check_choice,
    check_shared_schedule,
    init_switch_state,
    pools,
    share_switch_state,
    soft_index,
)
from optimizers.muon import Muon
from optimizers.softsignum import fit_schedule, group_tau

DEFAULTS: dict[str, Any] = {
    **muon.DEFAULTS,
    "alpha_sign": 0.9,
    "eps": 1e-4,
    "tmax": 1e9,
    "newton_iters": 10,
    "soft_ns_steps": 5,
    "schedule_source": "gradient",  # official (module docstring)
    "schedule_scope": "optimizer",
}

SCHEDULE_SOURCES = ("gradient", "nesterov")

# The Muon search space: the paper tunes SoftMuon like Muon (and reuses Muon's LLM hparams), with
# alpha_sign, eps and newton_iters fixed at the published 0.9, 1e-4, 10.
SEARCH_SPACE = dict(muon.SEARCH_SPACE)


# --- pure tensor functions -------------------------------------------------------------------


def polar_saturation(eps: float) -> float:
    """``c`` with ``c / sqrt(1 + c^2) = 1 - eps``: a direction with ``tau s >= c`` is saturated."""
    return (1.0 - eps) / math.sqrt(eps * (2.0 - eps))


def soft_polar(
    M: Tensor, tau: float | Tensor, steps: int | None = None, dtype: str | torch.dtype | None = None
) -> Tensor:
    """Spectral soft sign ``Phi_tau(M) = M (M^T M + tau^-2 I)^(-1/2) = U diag(tau s / sqrt(1 + tau^2 s^2)) V^T``.

    ``M`` is ``(..., rows, cols)`` (leading dims are a batch); ``tau > 0`` a float or a 0-d tensor
    (used on the device, no host sync). ``tau -> inf`` gives ``U V^T``, ``tau -> 0`` gives ``tau M``.

    ``steps=None``: accurate, via a float64 ``eigh`` of the short-side Gram matrix (no SVD).
    ``steps=k``: ``k`` coupled Newton-Schulz inverse-square-root steps as in the official Softsign code,
    in ``dtype`` (``_muon_ops.ns_compute_dtype``: by default bfloat16 on CUDA, float32 elsewhere; the
    official code uses bfloat16 everywhere); unconverged and shrinking for ill-conditioned ``M``.
    The result has ``M``'s dtype and shape.
    """
    if M.ndim < 2:
        raise ValueError(f"soft_polar needs a matrix (ndim >= 2), got shape {tuple(M.shape)}")
    if steps is not None:
        check_int("steps", steps, minimum=1)
    if not torch.is_tensor(tau):
        check_positive("tau", tau)
    shape = M.shape
    X = M.reshape(-1, shape[-2], shape[-1])
    transposed = shape[-2] > shape[-1]
    if transposed:
        X = X.mT  # Phi commutes with transposition; work with the small Gram matrix
    if steps is None:
        out = _soft_polar_eigh(X, tau)
    else:
        out = _soft_polar_coupled(X.to(ns_compute_dtype(dtype, X.device)), tau, steps)
    if transposed:
        out = out.mT
    return out.to(M.dtype).reshape(shape)


def _inv_tau_sq(tau: float | Tensor, dtype: torch.dtype) -> float | Tensor:
    if torch.is_tensor(tau):
        return tau.to(torch.float64 if dtype == torch.float64 else torch.float32).pow(-2)
    return float(tau) ** -2


def _soft_polar_eigh(X: Tensor, tau: float | Tensor) -> Tensor:
    Xd = X.to(torch.float64)
    lam, Q = torch.linalg.eigh(Xd @ Xd.mT)
    # Rounding can leave eigenvalues of a singular Gram matrix slightly negative.
    weight = (lam.clamp_min(0.0) + _inv_tau_sq(tau, torch.float64)).rsqrt()
    return ((Q * weight.unsqueeze(-2)) @ Q.mT) @ Xd


def _soft_polar_coupled(X: Tensor, tau: float | Tensor, steps: int) -> Tensor:
    A = X @ X.mT
    A.diagonal(dim1=-2, dim2=-1).add_(_inv_tau_sq(tau, X.dtype))
    norm = A.norm(dim=(-2, -1), keepdim=True)
    A = A / norm  # eigenvalues in (0, 1]: inside the iteration's region of convergence
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device).expand_as(A)
    # Y -> A^(1/2), Z -> A^(-1/2) from Y = A, Z = I. The first step (Z = I) is written out, and the
    # last step skips Y, which is no longer needed: the same iterates as the official loop, 2 fewer matmuls.
    T = torch.add(1.5 * eye, A, alpha=-0.5)  # (3I - Z Y) / 2 with Z = I
    Y, Z = (A @ T if steps > 1 else A), T
    for k in range(1, steps):
        T = torch.baddbmm(eye, Z, Y, beta=1.5, alpha=-0.5)  # (3I - Z Y) / 2
        if k < steps - 1:
            Y = Y @ T
        Z = T @ Z
    return (Z @ X) / norm.sqrt()


def singular_values(tensors: list[Tensor]) -> Tensor:
    """All singular values of all tensors (as Muon matrices), pooled into one float64 vector.

    Square roots of ``eigvalsh`` of each float64 short-side Gram matrix, batched over same shapes.
    """
    buckets: dict[tuple[int, ...], list[Tensor]] = {}
    for t in tensors:
        m = as_matrix(t)
        if m.shape[0] > m.shape[1]:
            m = m.mT
        buckets.setdefault(tuple(m.shape), []).append(m)
    pooled = []
    for mats in buckets.values():
        X = torch.stack(mats).to(torch.float64)
        lam = torch.linalg.eigvalsh(X @ X.mT)
        pooled.append(lam.clamp_min(0.0).sqrt().reshape(-1))
    return torch.cat(pooled)


# --- the optimizer ---------------------------------------------------------------------------


def validate(hparams: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first invalid SoftMuon hyperparameter."""
    muon.validate(hparams)
    check_unit_interval("alpha_sign", hparams["alpha_sign"], closed_right=True)
    eps = hparams["eps"]
    check_positive("eps", eps)
    if eps >= 1:
        raise ValueError(f"invalid eps: {eps!r} (must lie in (0, 1))")
    tmax = hparams["tmax"]
    check_positive("tmax", tmax)
    if tmax < 1:
        raise ValueError(f"invalid tmax: {tmax!r} (must be a finite number >= 1)")
    check_int("newton_iters", hparams["newton_iters"], minimum=0)
    if hparams["soft_ns_steps"] is not None:
        check_int("soft_ns_steps", hparams["soft_ns_steps"], minimum=1)
    check_choice("schedule_source", hparams["schedule_source"], SCHEDULE_SOURCES)
    check_choice("schedule_scope", hparams["schedule_scope"], SCHEDULE_SCOPES)


SOFT_KEYS = ("alpha_sign", "eps", "tmax", "newton_iters", "soft_ns_steps", "schedule_source", "schedule_scope")
# Settings that define a schedule: Muon groups sharing one schedule must agree on them.
SCHEDULE_KEYS = ("total_steps", "alpha_sign", "eps", "tmax", "newton_iters", "schedule_source")


class SoftMuon(Muon):
    """Muon for the first ``floor(alpha_sign * K)`` steps, then the spectral soft sign ``Phi_tau``.

    Muon groups additionally carry ``SOFT_KEYS`` and the phase bookkeeping of ``optimizers/_switch.py``
    (``step``, ``total_steps``, ``sign_steps``, ``tau_schedule``), so the phase and the schedule travel
    with ``state_dict()``; with ``schedule_scope="optimizer"`` every Muon group holds the same schedule.
    """

    _muon_keys = {**muon.MUON_KEYS, **{key: key for key in (*SOFT_KEYS, "total_steps")}}
    _extra_keys = (*SOFT_KEYS, "total_steps")

    def __init__(
        self,
        params,
        total_steps: int,
        lr: float | Tensor = DEFAULTS["lr"],
        weight_decay: float = DEFAULTS["weight_decay"],
        momentum: float = DEFAULTS["momentum"],
        nesterov: bool = DEFAULTS["nesterov"],
        aux_lr: float | Tensor = DEFAULTS["aux_lr"],
        aux_betas: tuple[float, float] = DEFAULTS["aux_betas"],
        aux_eps: float = DEFAULTS["aux_eps"],
        aux_weight_decay: float = DEFAULTS["aux_weight_decay"],
        shape_scale: str = DEFAULTS["shape_scale"],
        ns_dtype: str = DEFAULTS["ns_dtype"],
        alpha_sign: float = DEFAULTS["alpha_sign"],
        eps: float = DEFAULTS["eps"],
        tmax: float = DEFAULTS["tmax"],
        newton_iters: int = DEFAULTS["newton_iters"],
        soft_ns_steps: int | None = DEFAULTS["soft_ns_steps"],
        schedule_source: str = DEFAULTS["schedule_source"],
        schedule_scope: str = DEFAULTS["schedule_scope"],
    ):
        super().__init__(
            params,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            aux_lr=aux_lr,
            aux_betas=aux_betas,
            aux_eps=aux_eps,
            aux_weight_decay=aux_weight_decay,
            shape_scale=shape_scale,
            ns_dtype=ns_dtype,
            total_steps=total_steps,
            alpha_sign=alpha_sign,
            eps=eps,
            tmax=tmax,
            newton_iters=newton_iters,
            soft_ns_steps=soft_ns_steps,
            schedule_source=schedule_source,
            schedule_scope=schedule_scope,
        )

    @staticmethod
    def _validate(hparams: Mapping[str, Any]) -> None:
        check_int("total_steps", hparams["total_steps"], minimum=1)
        validate(hparams)

    @property
    def total_steps(self) -> int:
        """``K`` of new Muon groups (kept in ``defaults``, so a deepcopy or pickle keeps it)."""
        return self.defaults["total_steps"]

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        if group["use_muon"]:
            check_shared_schedule([g for g in self.param_groups if g["use_muon"]], SCHEDULE_KEYS)

    def _join(self, group: dict[str, Any], clock: int) -> None:
        """A new Muon group: the phase bookkeeping at the run's clock and, past the switch, the pooled schedule."""
        init_switch_state(group, group["alpha_sign"], group["total_steps"], "tau_schedule", step=clock)
        share_switch_state([g for g in self.param_groups if g["use_muon"]], group, "tau_schedule")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._build_due_schedules()  # before any update: the official code fits the step's raw g
        self._step_groups()
        return loss

    def _schedule_source(self, group: dict[str, Any], p: Tensor, grad: Tensor) -> Tensor:
        """The matrix whose singular values enter the schedule: ``grad`` (``p.grad``), or the ``u``
        the step will map."""
        if group["schedule_source"] == "gradient":
            return grad
        beta = group["momentum"]
        buf = self.state[p].get("momentum_buffer")
        m = grad * (1 - beta) if buf is None else buf.lerp(grad, 1 - beta)  # as the step will update it
        return grad.lerp(m, beta) if group["nesterov"] else m

    def _build_due_schedules(self) -> None:
        """Muon groups whose coming step is their first soft one get their schedule: one per pool
        (``schedule_scope``), from the pooled singular values of every matrix with a gradient."""
        due = [
            g
            for g in self.param_groups
            if g["use_muon"] and g["tau_schedule"] is None and soft_index(g, g["step"] + 1) is not None
        ]
        for pool in pools(due):
            members = [due[i] for i in pool]
            mats = [
                self._schedule_source(g, p, p.grad)
                for g in members
                for p in g["params"]
                if p.grad is not None and p.numel() > 0
            ]
            if not mats:  # no gradients (or zero-size matrices only): the step skips these; fit at the next one
                continue
            first = members[0]
            schedule = fit_schedule(
                [singular_values(mats)],
                first["total_steps"] - first["sign_steps"],
                eps=first["eps"],
                newton_iters=first["newton_iters"],
                tmax=first["tmax"],
                c=polar_saturation(first["eps"]),
            )
            for group in members:
                group["tau_schedule"] = schedule

    def _directions(self, group: dict[str, Any], updates: list[Tensor]) -> list[Tensor]:
        j = soft_index(group)
        if j is None:  # sign phase: plain Muon
            return super()._directions(group, updates)
        device = updates[0].device
        tau, steps = group_tau(group, j, device), group["soft_ns_steps"]
        dtype = ns_compute_dtype(group["ns_dtype"], device)
        return map_matrices(lambda X: soft_polar(X, tau, steps, dtype=dtype), updates)

    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """``tau`` (of the last step; inf in the Muon phase, where the map is the tau -> inf limit),
        ``saturated_frac`` (share of singular values with ``tau s >= c``, i.e. soft sign within eps of
        1; computed now from ``u = lerp(g, m, beta)`` while gradients are still set, else from the
        momentum buffers ``m``; 1.0 in the Muon phase) and ``phase`` (0 Muon, 1 soft). With several
        Muon groups, tau is the first soft group's and the share is pooled. Host syncs and one
        eigendecomposition per matrix: call at eval points only."""
        soft = [(g, soft_index(g)) for g in self.param_groups if g["use_muon"]]
        soft = [(g, j) for g, j in soft if j is not None and g["tau_schedule"] is not None]
        if not soft:
            return {"tau": math.inf, "saturated_frac": 1.0, "phase": 0.0}
        taus, saturated, total = [], 0, 0
        for group, j in soft:
            tau = float(group["tau_schedule"][j])
            taus.append(tau)
            directions = []
            for p in group["params"]:
                buf = self.state[p].get("momentum_buffer")
                if buf is not None:
                    use_u = group["nesterov"] and p.grad is not None
                    directions.append(p.grad.lerp(buf, group["momentum"]) if use_u else buf)
            if directions:
                s = singular_values(directions)
                saturated += int((tau * s >= polar_saturation(group["eps"])).sum())
                total += s.numel()
        return {"tau": taus[0], "saturated_frac": saturated / total if total else math.nan, "phase": 1.0}


def build(groups: Mapping[str, list[torch.nn.Parameter]], hparams: dict[str, Any], total_steps: int) -> SoftMuon:
    """SoftMuon over the ``matrix`` role (schedule over ``total_steps``), auxiliary AdamW on the rest."""
    validate(hparams)
    extra = {key: hparams[key] for key in SOFT_KEYS}
    return SoftMuon(muon.param_groups(groups, hparams, **extra), total_steps, **extra)


SPEC = OptimizerSpec(
    name="softmuon",
    summary="SoftMuon (Softsign paper): Muon, then the spectral soft sign Phi_tau with a quantile temperature "
    "schedule; AdamW on non-matrix parameters",
    defaults=DEFAULTS,
    search_space=SEARCH_SPACE,
    build_fn=build,
    implementation="foreach",
    branch_from="muon",
    extra={
        "soft_ns_steps": {
            5: "official coupled Newton-Schulz inverse square root, 5 steps (unconverged, shrinks the update)",
            None: "accurate: float64 eigh of the Gram matrix (exact Phi_tau to ~1e-6)",
        },
        "variants": {
            "schedule_source": "gradient (default, official: raw-gradient singular values) | "
            "nesterov (singular values of the Nesterov input u, optbench's earlier)",
            "schedule_scope": "optimizer (default, official: one schedule over all Muon matrices) | group",
            "shape_scale": "reference (default, official) | flattened",
            "ns_dtype": "auto (default: bfloat16 on CUDA, float32 elsewhere) | bfloat16 | float32",
        },
    },
)
