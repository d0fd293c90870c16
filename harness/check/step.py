"""Optimizer step cost: median time of one ``step()`` of every registered optimizer, as a ratio to
``torch.optim.AdamW(foreach=True)`` on the same parameters in the same run.

Used by ``optbench check`` and by ``benchmarks/optimizer_step.py`` (its CLI, table and CSV).

Parameter sets are built from shapes (no model, no forward pass), roles assigned as a task would:
  a  ResNet-18 for CIFAR (3x3 stem; 11.17M at width 64): conv kernels ``matrix``, stem ``conv_first``,
     BN ``vector``, fc ``head``. ``width`` scales every stage (``optbench check --quick`` uses 8).
  b  a Llama-style decoder (RMSNorm gains, q/k/v/o, SwiGLU, untied embedding and head), sizes in
     ``LLM_SIZES``: ``130m`` is GaLore's llama_130m (12 blocks, d 768, FFN 2048, vocab 32k, 134M).

Gradients are random, drawn once per set and fixed. Every optimizer is timed step-by-step in
alternation with its own AdamW reference (separate copies of the parameters), after warmup steps, so
load drift on a shared machine hits both sides of each ratio. Optimizers with ``alpha_sign`` (SoftSignum,
SoftMuon, ...) are timed in the sign phase and in the soft phase (the switch forced at step 2 by
``alpha_sign = 1/K``); the one-off schedule build is the switch step's time minus the median soft step,
reported as a multiple of an AdamW step. An optimizer with ``soft_ns_steps`` (SoftMuon) is timed with
``soft_ns_steps=5`` (the default, compared with Muon's step) and ``None`` (accurate, for information).
The list of optimizers is ``optimizers.REGISTRY`` at call time: nothing is hard-coded but the targets.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import optimizers
from optimizers._base import ROLES, all_params, decay_groups

Roles = dict[str, list[torch.nn.Parameter]]
Clock = Callable[[], float]

LLM_SIZES = {
    "tiny": {"blocks": 2, "d": 128, "ffn": 384, "vocab": 2048},  # optbench check --quick
    "small": {"blocks": 8, "d": 512, "ffn": 1536, "vocab": 32000},
    "130m": {"blocks": 12, "d": 768, "ffn": 2048, "vocab": 32000},
}


# --- parameter sets ------------------------------------------------------------------------------


def resnet18_shapes(width: int = 64, classes: int = 10) -> dict[str, list[tuple[int, ...]]]:
    """Parameter shapes of the CIFAR ResNet-18 (kuangliu/pytorch-cifar), by role; ``width`` is the
    first stage's channels (64 in the published model; stages double it)."""
    shapes: dict[str, list[tuple[int, ...]]] = {role: [] for role in ROLES}
    shapes["conv_first"].append((width, 3, 3, 3))
    shapes["vector"] += [(width,), (width,)]
    in_planes = width
    for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
        planes = width * mult
        for block_stride in (stride, 1):
            shapes["matrix"] += [(planes, in_planes, 3, 3), (planes, planes, 3, 3)]
            shapes["vector"] += [(planes,)] * 4
            if block_stride != 1 or in_planes != planes:
                shapes["matrix"].append((planes, in_planes, 1, 1))
                shapes["vector"] += [(planes,)] * 2
            in_planes = planes
    shapes["head"].append((classes, 8 * width))
    shapes["vector"].append((classes,))
    return shapes


def llm_shapes(blocks: int, d: int, ffn: int, vocab: int) -> dict[str, list[tuple[int, ...]]]:
    """Parameter shapes of a Llama-style decoder without biases, by role."""
    shapes: dict[str, list[tuple[int, ...]]] = {role: [] for role in ROLES}
    shapes["embedding"].append((vocab, d))
    for _ in range(blocks):
        shapes["vector"] += [(d,), (d,)]  # attention and MLP RMSNorm gains
        shapes["matrix"] += [(d, d)] * 4 + [(ffn, d), (ffn, d), (d, ffn)]
    shapes["vector"].append((d,))
    shapes["head"].append((vocab, d))
    return shapes


def make_params(shapes: dict[str, list[tuple[int, ...]]], device: torch.device, seed: int) -> Roles:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return {
        role: [torch.nn.Parameter((torch.randn(s, generator=g) * 0.02).to(device)) for s in role_shapes]
        for role, role_shapes in shapes.items()
    }


def clone_roles(roles: Roles, grads: list[torch.Tensor]) -> Roles:
    """A fresh copy of the parameters with (copies of) the fixed gradients attached."""
    out = {role: [torch.nn.Parameter(p.detach().clone()) for p in ps] for role, ps in roles.items()}
    for p, g in zip(all_params(out), grads):
        p.grad = g.clone()
    return out


# --- timing --------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA, MPS); a no-op on CPU where ops are synchronous."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(
    step: Callable[[], Any],
    device: torch.device,
    clock: Clock = time.perf_counter,
    cpu_clock: Clock = time.process_time,
) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call, between two device synchronisations.
    CPU seconds sum over threads; other processes on a busy machine inflate wall time much more than
    they inflate CPU time. (On a GPU the CPU time is only the host's launch cost.)"""
    synchronize(device)
    t0, c0 = clock(), cpu_clock()
    step()
    synchronize(device)
    return clock() - t0, cpu_clock() - c0


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)


def torch_adamw(roles: Roles) -> torch.optim.Optimizer:
    """The reference: torch.optim.AdamW, multi-tensor path, torch's default hyperparameters."""
    return torch.optim.AdamW(decay_groups(all_params(roles), 0.01), lr=1e-3, foreach=True)


def paired(
    make: Callable[[Roles], torch.optim.Optimizer],
    roles: Roles,
    grads: list[torch.Tensor],
    device: torch.device,
    warmup: int,
    repeats: int,
    prelude: int = 0,
):
    """Median (wall, CPU) seconds per step of ``make(...)`` and of the AdamW reference, timed alternately.

    ``prelude`` untimed steps bring the optimizer into the phase to measure (before the warmup).
    """
    ref_opt = torch_adamw(clone_roles(roles, grads))
    opt = make(clone_roles(roles, grads))
    for _ in range(prelude):
        opt.step()
    for _ in range(warmup):
        ref_opt.step()
        opt.step()
    ref_times, times = [], []
    for _ in range(repeats):
        ref_times.append(timed(ref_opt.step, device))
        times.append(timed(opt.step, device))
    return medians(times), medians(ref_times)


def switch_times(
    make: Callable[[Roles], torch.optim.Optimizer],
    roles: Roles,
    grads: list[torch.Tensor],
    device: torch.device,
    samples: int,
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of the switch step (schedule build + first soft step) on fresh optimizers whose
    sign phase is one step long."""
    out = []
    for _ in range(samples):
        opt = make(clone_roles(roles, grads))
        opt.step()  # step 1: sign phase, lazy state
        out.append(timed(opt.step, device))  # step 2: the switch
        del opt
        gc.collect()
    return out


# --- the run -------------------------------------------------------------------------------------


def configs(total_steps: int) -> list[dict[str, Any]]:
    """What to time for each registered optimizer: (name, phase, hparams, total_steps, prelude)."""
    out = []
    for name, spec in optimizers.REGISTRY.items():
        if "alpha_sign" not in spec.defaults:
            out.append({"optimizer": name, "phase": "step", "hparams": {}, "K": total_steps, "prelude": 0})
            continue
        # Sign phase: the default alpha_sign over a budget far longer than the measurement.
        out.append({"optimizer": name, "phase": "sign", "hparams": {}, "K": 10**6, "prelude": 0})
        # Soft phase: S = 1, the switch at step 2 (taken in the prelude), N = K - 1 temperatures.
        soft = {"alpha_sign": 1.0 / total_steps}
        variants: list[tuple[str, dict[str, Any]]] = [("soft", {})]
        if "soft_ns_steps" in spec.defaults:
            variants = [("soft", {"soft_ns_steps": 5}), ("soft-accurate", {"soft_ns_steps": None})]
        for phase, extra in variants:
            out.append(
                {"optimizer": name, "phase": phase, "hparams": {**soft, **extra}, "K": total_steps, "prelude": 2}
            )
        out.append({"optimizer": name, "phase": "build", "hparams": soft, "K": total_steps, "prelude": 0})
    return out


def target_for(name: str, phase: str, device: torch.device) -> tuple[float | None, str]:
    """(target, what it is relative to) for a row: the cost targets of the optimizer issue."""
    if device.type == "cuda":
        if name in ("signum", "softsignum") and phase in ("step", "sign", "soft"):
            return 0.8, "adamw"
        return None, ""
    if name in ("signum", "softsignum") and phase in ("step", "sign"):
        return 0.6, "adamw"
    if name == "softsignum" and phase == "soft":
        return 1.2, "adamw"
    if phase == "build":
        return 20.0, "adamw steps"
    if name == "softmuon" and phase == "soft":
        return 1.3, "muon"
    return None, ""


def run_set(
    set_name: str,
    shapes: dict[str, list[tuple[int, ...]]],
    device: torch.device,
    *,
    warmup: int,
    repeats: int,
    build_samples: int,
    total_steps: int,
    log: Callable[[str], None] = print,
    rows: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Time every registered optimizer on one parameter set; one row per (optimizer, phase).

    Rows are appended to ``rows`` as they are measured (so a caller that interrupts the set keeps the
    finished ones); the ratios to Muon and the target verdicts are filled in at the end.
    """
    rows = [] if rows is None else rows
    first = len(rows)
    roles = make_params(shapes, device, seed=0)
    params = all_params(roles)
    g = torch.Generator(device="cpu").manual_seed(1)
    grads = [torch.randn(p.shape, generator=g).to(device) for p in params]
    n_params = sum(p.numel() for p in params)
    n_matrix = sum(p.numel() for p in roles["matrix"])
    log(
        f"set {set_name}: {n_params / 1e6:.2f}M parameters ({n_matrix / 1e6:.2f}M in Muon matrices), "
        f"{len(params)} tensors"
    )
    for cfg in configs(total_steps):
        spec = optimizers.REGISTRY[cfg["optimizer"]]
        hp = spec.resolve(cfg["hparams"])

        def make(r: Roles, spec=spec, hp=hp, K=cfg["K"]) -> torch.optim.Optimizer:
            return spec.build(r, hp, K)

        t0 = time.perf_counter()
        if cfg["phase"] == "build":
            switch = medians(switch_times(make, roles, grads, device, build_samples))
            soft = next(r for r in rows[first:] if r["optimizer"] == cfg["optimizer"] and r["phase"] == "soft")
            (wall, cpu) = (max(switch[0] - soft["ms"] / 1e3, 0.0), max(switch[1] - soft["cpu_ms"] / 1e3, 0.0))
            (ref_wall, ref_cpu) = (soft["adamw_ms"] / 1e3, soft["adamw_cpu_ms"] / 1e3)
        else:
            (wall, cpu), (ref_wall, ref_cpu) = paired(make, roles, grads, device, warmup, repeats, cfg["prelude"])
        rows.append(
            {
                "set": set_name,
                "n_params": n_params,
                "optimizer": cfg["optimizer"],
                "phase": cfg["phase"],
                "ms": wall * 1e3,
                "adamw_ms": ref_wall * 1e3,
                "ratio": wall / ref_wall,
                "cpu_ms": cpu * 1e3,
                "adamw_cpu_ms": ref_cpu * 1e3,
                "cpu_ratio": cpu / ref_cpu if ref_cpu > 0 else math.nan,
                "implementation": spec.implementation,
            }
        )
        log(
            f"  {cfg['optimizer']:<15}{cfg['phase']:<14}{wall * 1e3:>10.2f} ms  (AdamW {ref_wall * 1e3:.2f} ms; "
            f"{time.perf_counter() - t0:.0f}s)"
        )
        gc.collect()
    finish_rows(rows[first:], device)
    return rows


def finish_rows(rows: list[dict[str, Any]], device: torch.device) -> None:
    """Fill ``vs_muon`` (SoftMuon rows) and the target verdicts of one set's rows, in place.

    Ratios to Muon: each side is normalised by its own paired AdamW, which cancels load drift. A build is
    a one-off cost: compared with one Muon step (its AdamW-step multiple divided by Muon's AdamW ratio).
    """
    by = {(r["optimizer"], r["phase"]): r for r in rows}
    if ("muon", "step") in by:
        muon_row = by[("muon", "step")]
        for r in rows:
            if r["optimizer"] == "softmuon":
                r["vs_muon"] = r["ratio"] / muon_row["ratio"]
    for r in rows:
        target, against = target_for(r["optimizer"], r["phase"], device)
        value = r.get("vs_muon") if against == "muon" else r["ratio"]
        r["target"] = "" if target is None else f"<= {target:g}x {against}"
        r["ok"] = "" if target is None or value is None else ("yes" if value <= target else "NO")
