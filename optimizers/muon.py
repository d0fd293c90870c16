"""Muon: SGD-momentum whose update for each hidden weight matrix is orthogonalised by a quintic
Newton-Schulz iteration, with an auxiliary AdamW for every other parameter in the same optimizer.

Lineage: Keller Jordan, "Muon: An optimizer for hidden layers in neural networks" (blog post, 2024;
github.com/KellerJordan/Muon and the modded-nanogpt speedrun), the steepest-descent-under-the-spectral-
norm view of Bernstein & Newhouse ("Old optimizer, new norm", arXiv 2409.20325). The Softsign paper's
SoftMuon (arXiv 2605.31371, ``optimizers/softmuon.py``) starts from this exact update.

Update for a matrix parameter ``p`` (conv kernels flattened to ``(out, in * kh * kw)``)::

    m <- lerp(m, g, 1 - beta)                  # EMA momentum
    u <- lerp(g, m, beta)  (Nesterov)  or  m
    O <- newton_schulz5(u)                     # ~ U V^T with singular values in about [0.7, 1.2]
    p <- p * (1 - lr * wd) - lr * sqrt(max(1, p.size(-2) / p.size(-1))) * O

Where it applies: hidden 2-D weights and conv kernels (role ``matrix``). The stem convolution
(``conv_first``), embeddings, the output head and 1-D parameters (``vector``) are not hidden linear
maps (the reference keeps them on AdamW; Muon's argument is about hidden layers' operator norms), so
they go to an AdamW that lives in the same optimizer object (param groups flagged ``use_muon=False``):
one ``step()``, one ``state_dict()``. A ``matrix`` parameter with fewer than two dimensions is routed
to the AdamW as well. Used as a library (``Muon(model.parameters(), lr=...)``, named parameters,
``add_param_group``), a group without ``use_muon`` is split by ``ndim``: matrices to Muon, the rest to
the AdamW with the ``aux_*`` options (docs/optimizers-as-library.md).

Variants (hyperparameters, recorded in every result row; defaults = the reference):
  shape_scale "reference" (default): ``sqrt(max(1, grad.size(-2) / grad.size(-1)))`` of the
      *unflattened* gradient, as in Keller Jordan's ``muon.py`` and the official SoftMuon: the RMS
      correction for tall 2-D matrices, and ``kh / kw = 1`` for every square conv kernel (a 1x1
      ResNet shortcut conv gets 1).
    "flattened" (optbench's earlier choice): the same formula on the flattened ``(out, in*kh*kw)``
      matrix NS5 actually sees, ``sqrt(max(1, out / (in*kh*kw)))``; it differs only for conv
      kernels with ``out > in*kh*kw`` (ResNet-18's 1x1 shortcut convs, out = 2 in: sqrt(2) instead
      of 1). Kept so that runs made before the reference scale became the default can be repeated.
  ns_dtype "auto" (default): the Newton-Schulz iterations run in bfloat16 on CUDA (as the
      reference) and float32 elsewhere (CPUs have no fast bfloat16 matmul; the reference casts to
      bfloat16 everywhere). "bfloat16" / "float32" force one dtype on every device (a CUDA run in
      float32 to see what bfloat16 costs; a CPU run in bfloat16 to reproduce the reference's
      rounding). The SoftMuon soft polar iteration follows the same option.

Differences from the reference: same-shape matrices are stacked and orthogonalised in one batched
call (fewer kernel launches on GPU; on 2 CPU threads 1.0-1.4x faster on ResNet-18 shapes and up to 2x
on transformer blocks, measured on a busy machine); the Newton-Schulz output is cast back to the
parameter dtype; ``p.grad`` is never modified in place (the reference overwrites it with ``u``).
The training loop owns the LR schedule: it rescales ``group["lr"]`` of every group (Muon and AdamW
groups alike) each step, and the step reads it at step time.

Half precision: Muon matrices may be float16 or bfloat16 (the iterations run in ``ns_dtype``, the
result is cast back). The auxiliary AdamW computes in the parameter dtype, as torch.optim.AdamW does:
with float16 parameters ``aux_eps = 1e-8`` rounds to 0 and small second moments underflow, so a
coordinate whose gradient is 0 from the first step becomes 0 / 0. Train float16 models with float32
parameters (the harness's ``--amp bf16`` keeps parameters float32) or use bfloat16.

Defaults and why:
  lr 0.02, momentum 0.95, nesterov True: the reference values (Keller Jordan's Muon, modded-nanogpt,
      the Softsign code's SoftMuon, D-Muon); the update has RMS ~ 1/sqrt(cols), so this lr is not
      comparable to AdamW's.
  weight_decay 0.01: decoupled ``p *= 1 - lr * wd``, i.e. a 2e-4 shrink per step at lr 0.02, a mild
      regulariser (the reference default 0 cannot lie in a log-uniform search space; D-Muon's 0.1 is
      paired with a smaller, RMS-matched lr).
  aux_lr 1e-3, aux_betas (0.9, 0.999), aux_eps 1e-8, aux_weight_decay 0.01: torch.optim.AdamW's
      defaults, which are also the aux-Adam settings of the tabular Muon benchmark and the aux lr of
      the epfml LLM Muon recipe. With them, Muon vs AdamW differs only on the hidden matrices. (The
      reference class defaults 3e-4 / (0.9, 0.95) / 1e-10, also in the Softsign code, come from its
      GPT speedrun setting.)

The pure tensor operations of the step (NS5, the matrix views, the shape scale, the auxiliary AdamW's
foreach step) live in ``optimizers/_muon_ops.py``; ``newton_schulz5`` is importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from optimizers._base import (
    ROLES,
    Distribution,
    LogUniform,
    OneMinusLogUniform,
    OptimizerSpec,
    add_param_group_unfilled,
    check_betas,
    check_bool,
    check_lr,
    check_nonneg,
    check_positive,
    check_unit_interval,
    checked_group,
    decay_groups,
    scalar_dtype,
)
from optimizers._muon_ops import adamw_foreach, map_matrices, ns_compute_dtype, shape_scale
from optimizers._muon_ops import newton_schulz5 as newton_schulz5  # public here (docs/optimizers.md)
from optimizers._switch import check_choice, load_keeping_own_keys, run_clock
from optimizers.signum import decay_and_step, step_lr

DEFAULTS: dict[str, Any] = {
    "lr": 0.02,
    "weight_decay": 0.01,
    "momentum": 0.95,
    "nesterov": True,
    "aux_lr": 1e-3,
    "aux_betas": (0.9, 0.999),
    "aux_eps": 1e-8,
    "aux_weight_decay": 0.01,
    "shape_scale": "reference",  # see "Variants" above
    "ns_dtype": "auto",
}

SHAPE_SCALES = ("reference", "flattened")
NS_DTYPES = ("auto", "bfloat16", "float32")

SEARCH_SPACE: dict[str, Distribution] = {
    "lr": LogUniform(1e-3, 0.1),
    "weight_decay": LogUniform(1e-4, 1.0),
    "momentum": OneMinusLogUniform(0.01, 0.2),  # beta in [0.8, 0.99]
    "aux_lr": LogUniform(1e-4, 1e-2),
}


# --- the optimizer ---------------------------------------------------------------------------

# Per-group keys and the hyperparameter each comes from (for error messages that name it).
MUON_KEYS = {
    "lr": "lr",
    "weight_decay": "weight_decay",
    "momentum": "momentum",
    "nesterov": "nesterov",
    "shape_scale": "shape_scale",
    "ns_dtype": "ns_dtype",
}
AUX_KEYS = {"lr": "aux_lr", "betas": "aux_betas", "eps": "aux_eps", "weight_decay": "aux_weight_decay"}


def validate(hparams: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first invalid Muon hyperparameter."""
    check_lr("lr", hparams["lr"])
    check_nonneg("weight_decay", hparams["weight_decay"])
    check_unit_interval("momentum", hparams["momentum"])
    check_bool("nesterov", hparams["nesterov"])
    check_lr("aux_lr", hparams["aux_lr"])
    check_betas("aux_betas", hparams["aux_betas"])
    check_positive("aux_eps", hparams["aux_eps"])
    check_nonneg("aux_weight_decay", hparams["aux_weight_decay"])
    check_choice("shape_scale", hparams["shape_scale"], SHAPE_SCALES)
    check_choice("ns_dtype", hparams["ns_dtype"], NS_DTYPES)


class Muon(torch.optim.Optimizer):
    """Muon on the matrices, an auxiliary AdamW on every other parameter, in one optimizer.

    Built like any ``torch.optim`` optimizer: ``Muon(model.parameters(), lr=0.02)``, named
    parameters, param-group dicts, ``add_param_group`` mid-run. A param group without a ``use_muon``
    flag is split: its parameters with ``ndim >= 2`` form a Muon group (with the group's own keys),
    the rest an AdamW group, which takes the ``aux_*`` values (the group's ``aux_lr`` ... if given,
    else the constructor's): 1-D parameters follow the auxiliary AdamW's lr, by design. A group with
    ``use_muon`` is taken as it is (``build`` routes by role: embeddings, the head and the stem
    convolution go to the AdamW although they are matrices).

    Muon groups carry ``lr, weight_decay, momentum, nesterov, shape_scale, ns_dtype`` and ``step``
    (optimizer steps taken, so subclasses run schedules that travel with ``state_dict()``); AdamW
    groups carry ``lr, betas, eps, weight_decay``. Per-parameter state: ``momentum_buffer`` (Muon) or
    ``exp_avg``, ``exp_avg_sq``, ``step`` (AdamW, as torch.optim.AdamW). Complex parameters are
    refused (a ``ValueError`` naming the optimizer); zero-size matrices are left alone.
    """

    # group key -> hyperparameter (constructor argument) it defaults to, per kind of group
    _muon_keys: Mapping[str, str] = MUON_KEYS
    _aux_keys: Mapping[str, str] = AUX_KEYS
    _extra_keys: tuple[str, ...] = ()  # constructor keywords a subclass adds

    def __init__(
        self,
        params,
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
        **extra: Any,
    ):
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "aux_lr": aux_lr,
            "aux_betas": tuple(aux_betas),
            "aux_eps": aux_eps,
            "aux_weight_decay": aux_weight_decay,
            "shape_scale": shape_scale,
            "ns_dtype": ns_dtype,
        }
        unknown = sorted(set(extra) - set(self._extra_keys))
        if unknown:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected keyword argument(s) {unknown}")
        defaults.update(extra)
        self._validate(defaults)
        super().__init__(params, defaults)

    @staticmethod
    def _validate(hparams: Mapping[str, Any]) -> None:
        validate(hparams)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Route (``use_muon`` given, or split by ``ndim``), fill each kind's keys, validate, and
        append with torch's checks; a Muon group joins the run's clock."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        for part in self._route(param_group):
            keys = self._muon_keys if part["use_muon"] else self._aux_keys
            for key, name in keys.items():
                part.setdefault(key, self.defaults[name])
            clock = run_clock(self.param_groups)
            add_param_group_unfilled(self, part)
            group = checked_group(self, self._check_group)
            if group["use_muon"]:
                self._join(group, clock)

    def _route(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        if "use_muon" in group:
            return [group]
        params = group["params"]
        if isinstance(params, set):  # torch refuses unordered collections: let it say so
            return [{**group, "use_muon": True}]
        params = [params] if isinstance(params, Tensor) else list(params)
        is_matrix = [(p[1] if isinstance(p, tuple) else p).ndim >= 2 for p in params]
        keys = {k: v for k, v in group.items() if k != "params" and not k.startswith("aux_")}
        parts = []
        if any(is_matrix) or all(is_matrix):
            parts.append({**keys, "params": [p for p, m in zip(params, is_matrix) if m], "use_muon": True})
        if not all(is_matrix):
            aux = {key: group[name] for key, name in self._aux_keys.items() if name in group}
            parts.append({**aux, "params": [p for p, m in zip(params, is_matrix) if not m], "use_muon": False})
        return parts

    def _check_group(self, group: dict[str, Any]) -> None:
        keys = self._muon_keys if group["use_muon"] else self._aux_keys
        self._validate({**self.defaults, **{name: group[key] for key, name in keys.items()}})
        if group["use_muon"]:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(f"Muon groups take matrices only; got a parameter of shape {tuple(p.shape)}")

    def _join(self, group: dict[str, Any], clock: int) -> None:
        """A new Muon group starts at the run's clock (SoftMuon adds its switch bookkeeping)."""
        group["step"] = clock

    def __setstate__(self, state: dict[str, Any]) -> None:
        """torch's, then older forms: a non-tensor AdamW ``step`` becomes a tensor (as torch.optim.AdamW
        does), a Muon group pickled before ``shape_scale`` / ``ns_dtype`` existed gets the defaults."""
        super().__setstate__(state)
        for group in self.param_groups:
            if group.get("use_muon"):
                for key in ("shape_scale", "ns_dtype"):
                    group.setdefault(key, DEFAULTS[key])
                continue
            for p in group["params"]:
                p_state = self.state.get(p)
                if p_state and "step" in p_state and not torch.is_tensor(p_state["step"]):
                    p_state["step"] = torch.tensor(float(p_state["step"]), dtype=scalar_dtype())

    # Hook for SoftMuon: map the Nesterov inputs of one group to their update directions.
    def _directions(self, group: dict[str, Any], updates: list[Tensor]) -> list[Tensor]:
        dtype = ns_compute_dtype(group["ns_dtype"], updates[0].device)
        return map_matrices(lambda X: newton_schulz5(X, dtype=dtype), updates)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``; group keys the checkpoint lacks keep this optimizer's values
        (a Muon checkpoint into SoftMuon, see ``optimizers/_switch.py``; an older Muon checkpoint
        without ``shape_scale`` / ``ns_dtype``)."""
        load_keeping_own_keys(self, state_dict, super().load_state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._step_groups()
        return loss

    def _step_groups(self) -> None:
        """The update of every group (subclasses call this, never ``super().step()``: torch wraps
        each class's ``step`` with the step hooks, which must run once per step)."""
        for group in self.param_groups:
            if group["use_muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)

    def _muon_step(self, group: dict[str, Any]) -> None:
        group["step"] += 1  # counts optimizer steps (the run's clock), with or without gradients
        params = [p for p in group["params"] if p.grad is not None and p.numel() > 0]
        if not params:
            return
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        beta = group["momentum"]
        torch._foreach_lerp_(bufs, grads, 1 - beta)
        updates = torch._foreach_lerp(grads, bufs, beta) if group["nesterov"] else bufs
        directions = self._directions(group, list(updates))
        lr, wd = step_lr(group["lr"]), group["weight_decay"]
        # One foreach add per distinct shape scale (usually one or two).
        by_scale: dict[float, tuple[list[Tensor], list[Tensor]]] = {}
        for p, d in zip(params, directions):
            ps, ds = by_scale.setdefault(shape_scale(p, group["shape_scale"]), ([], []))
            ps.append(p)
            ds.append(d)
        for scale, (ps, ds) in by_scale.items():
            decay_and_step(ps, ds, lr, wd, foreach=True, scale=scale)

    def _adamw_step(self, group: dict[str, Any]) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"the auxiliary AdamW of {type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        adamw_foreach(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            steps,
            lr=step_lr(group["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
        )

    def diagnostics(self) -> dict[str, float]:
        """Nothing cheap and useful to log beyond the loss (as for Signum and AdamW)."""
        return {}


def param_groups(
    groups: Mapping[str, list[torch.nn.Parameter]], hparams: Mapping[str, Any], **muon_extra: Any
) -> list[dict[str, Any]]:
    """Route roles to groups: ``matrix`` (ndim >= 2) -> one Muon group; everything else -> AdamW
    groups split by ``decay_groups`` (no weight decay on 1-D parameters)."""
    matrices: list[torch.nn.Parameter] = []
    others: list[torch.nn.Parameter] = []
    seen: set[int] = set()
    for role in ROLES:
        for p in groups.get(role, ()):
            if id(p) in seen:
                continue
            seen.add(id(p))
            (matrices if role == "matrix" and p.ndim >= 2 else others).append(p)
    out: list[dict[str, Any]] = []
    if matrices:
        out.append(
            {
                "params": matrices,
                "use_muon": True,
                **{key: hparams[name] for key, name in MUON_KEYS.items()},
                **muon_extra,
            }
        )
    out += decay_groups(
        others,
        hparams["aux_weight_decay"],
        use_muon=False,
        lr=hparams["aux_lr"],
        betas=tuple(hparams["aux_betas"]),
        eps=hparams["aux_eps"],
    )
    return out


def build(groups: Mapping[str, list[torch.nn.Parameter]], hparams: dict[str, Any], total_steps: int) -> Muon:
    """Muon over the ``matrix`` role with an auxiliary AdamW over the other roles."""
    validate(hparams)
    return Muon(param_groups(groups, hparams))


SPEC = OptimizerSpec(
    name="muon",
    summary="Muon (Nesterov momentum orthogonalised by 5 quintic Newton-Schulz steps) on hidden matrices, "
    "AdamW on the rest",
    defaults=DEFAULTS,
    search_space=SEARCH_SPACE,
    build_fn=build,
    implementation="foreach",
    extra={
        "ns_steps": 5,
        "batched_by_shape": True,
        "variants": {
            "shape_scale": "reference (default, Keller Jordan's muon.py) | flattened (optbench's earlier)",
            "ns_dtype": "auto (default: bfloat16 on CUDA, float32 elsewhere) | bfloat16 | float32",
        },
    },
)
