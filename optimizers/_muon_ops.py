"""The pure tensor operations of Muon's step, shared by the Muon family (``optimizers/muon.py``,
``optimizers/softmuon.py``): the quintic Newton-Schulz orthogonalisation (``newton_schulz5``, Keller
Jordan's coefficients, github.com/KellerJordan/Muon) and the dtype it runs in, the matrix view of a
conv kernel and the batching of same-shape matrices around it, the update's shape scale, and the
auxiliary AdamW's foreach step (Loshchilov & Hutter, "Decoupled weight decay regularization",
arXiv 1711.05101, in the op order of torch's foreach AdamW). No optimizer state lives here.

``newton_schulz5`` stays importable from ``optimizers.muon``, where docs/optimizers.md names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "NS_COEFFICIENTS",
    "ns_compute_dtype",
    "newton_schulz5",
    "as_matrix",
    "map_matrices",
    "shape_scale",
    "adamw_foreach",
]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def ns_compute_dtype(ns_dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The dtype the Newton-Schulz iterations run in: ``"auto"`` / ``None`` = bfloat16 on CUDA and
    float32 elsewhere; ``"bfloat16"`` / ``"float32"`` (or a torch dtype) as given."""
    if isinstance(ns_dtype, torch.dtype):
        return ns_dtype
    if ns_dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[ns_dtype]


def newton_schulz5(G: Tensor, steps: int = 5, dtype: str | torch.dtype | None = None) -> Tensor:
    """Approximate orthogonalisation ``U V^T`` of ``G = U S V^T`` by a quintic Newton-Schulz iteration.

    ``X <- a X + (b A + c A^2) X`` with ``A = X X^T`` and ``(a, b, c) = (3.4445, -4.7750, 2.0315)``
    (Keller Jordan's coefficients: they maximise the slope at zero, so five steps lift even small
    singular values, at the price of not converging: the output's singular values land in about
    [0.7, 1.2] instead of exactly 1). ``X`` starts as ``G / (||G||_F + 1e-7)`` (so every singular
    value is <= 1) and is transposed so that rows <= cols (the Gram matrix is the small side).

    Works on ``(..., rows, cols)`` (leading dims are a batch). Computed in ``dtype``
    (``ns_compute_dtype``: by default bfloat16 on CUDA, as the reference, and float32 elsewhere);
    the result has ``G``'s dtype and shape. Singular values far
    below the largest one (about 1e-3 of it after 5 steps) are only partly lifted: each step
    multiplies them by at most 3.4445.
    """
    if G.ndim < 2:
        raise ValueError(f"newton_schulz5 needs a matrix (ndim >= 2), got shape {tuple(G.shape)}")
    a, b, c = NS_COEFFICIENTS
    shape = G.shape
    X = G.reshape(-1, shape[-2], shape[-1]).to(ns_compute_dtype(dtype, G.device))
    transposed = shape[-2] > shape[-1]
    if transposed:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b A + c A^2
        X = torch.baddbmm(X, B, X, beta=a)  # a X + B X
    if transposed:
        X = X.mT
    return X.to(G.dtype).reshape(shape)


def as_matrix(t: Tensor) -> Tensor:
    """The 2-D view Muon works on: conv kernels ``(out, in, kh, kw)`` become ``(out, in*kh*kw)``."""
    return t.reshape(t.shape[0], -1) if t.ndim > 2 else t


def map_matrices(fn: Callable[[Tensor], Tensor], tensors: list[Tensor]) -> list[Tensor]:
    """Apply a batched matrix map ``fn((B, r, c)) -> (B, r, c)`` to each tensor (as a matrix).

    Same-shape matrices are stacked into one batch, so a model with many equal layers costs one
    batched call per shape. Returns tensors shaped like the inputs.
    """
    buckets: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        buckets.setdefault(tuple(as_matrix(t).shape), []).append(i)
    out = list(tensors)  # every slot is replaced below: the buckets cover every index
    for idx in buckets.values():
        if len(idx) == 1:
            batch = as_matrix(tensors[idx[0]]).unsqueeze(0)
        else:
            batch = torch.stack([as_matrix(tensors[i]) for i in idx])
        result = fn(batch)
        for k, i in enumerate(idx):
            out[i] = result[k].reshape(tensors[i].shape)
    return out


def shape_scale(p: Tensor, mode: str = "reference") -> float:
    """The update's shape factor ``sqrt(max(1, rows / cols))``, which equalises the RMS of tall matrices.

    ``"reference"``: ``rows, cols = p.size(-2), p.size(-1)`` of the unflattened tensor, as Keller
    Jordan's ``muon.py`` and the official SoftMuon (1 for a square conv kernel). ``"flattened"``: of the
    ``(out, in*kh*kw)`` matrix that NS5 sees.
    """
    rows, cols = as_matrix(p).shape if mode == "flattened" else p.shape[-2:]
    return math.sqrt(max(1.0, rows / cols))


# --- the auxiliary AdamW ---------------------------------------------------------------------


def adamw_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """One AdamW step in place, in the op order of torch's foreach AdamW (same numbers on CPU).

    ``steps`` are per-parameter float32 CPU counters (as torch keeps them), so bias corrections are
    host floats and nothing syncs with the device. A tensor ``lr`` (``step_lr`` under ``torch.compile``)
    scales the step with tensor arithmetic (``_foreach_addcdiv_`` takes only number step sizes).
    """
    if not params:
        return
    torch._foreach_add_(steps, 1)
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    counts = [s.item() for s in steps]
    bias2_sqrt = [(1 - beta2**t) ** 0.5 for t in counts]
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias2_sqrt)
    torch._foreach_add_(denom, eps)
    if isinstance(lr, Tensor):
        # Bias corrections as numbers, lr as one tensor factor (step sizes as a list of tensors
        # compiled to wrong values from the third step on, torch 2.14).
        updates = torch._foreach_div(exp_avgs, denom)
        torch._foreach_div_(updates, [1 - beta1**t for t in counts])
        torch._foreach_add_(params, torch._foreach_mul(updates, -lr))
        return
    torch._foreach_addcdiv_(params, exp_avgs, denom, [-lr / (1 - beta1**t) for t in counts])
