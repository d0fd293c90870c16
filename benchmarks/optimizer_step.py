"""Optimizer step cost: median time of one ``step()`` of every registered optimizer, as a ratio to
``torch.optim.AdamW(foreach=True)`` on the same parameters in the same run.

Two parameter sets, built from shapes (no model, no forward pass), roles assigned as a task would:
  a  ResNet-18 for CIFAR (3x3 stem, 11.17M): conv kernels ``matrix``, stem ``conv_first``, BN
     ``vector``, fc ``head``.
  b  a Llama-style decoder (RMSNorm gains, q/k/v/o, SwiGLU, untied embedding and head):
     ``--llm small`` = 8 blocks, d 512, vocab 32k (60M; the CPU default); ``--llm 130m`` = GaLore's
     llama_130m (12 blocks, d 768, FFN 2048, vocab 32k, 134M; the CUDA default).

Gradients are random, drawn once per set and fixed. Every optimizer is timed step-by-step in
alternation with its own AdamW reference (separate copies of the parameters), after warmup steps,
so load drift on a shared machine hits both sides of each ratio. Optimizers with ``alpha_sign``
(SoftSignum, SoftMuon) are timed in the sign phase and in the soft phase (the switch forced at step
2 by ``alpha_sign = 1/K``); the one-off schedule build is the switch step's time minus the median
soft step, reported as a multiple of an AdamW step. SoftMuon is timed with ``soft_ns_steps=5`` (the
default, compared with Muon's step) and ``None`` (accurate, for information).

    python benchmarks/optimizer_step.py --threads 2                  # CPU, both sets
    python benchmarks/optimizer_step.py --set a --repeats 30 --out /tmp/step.csv
    python benchmarks/optimizer_step.py --device cuda --llm 130m     # GPU (the default when present)

Targets (ratios; checked and printed): CPU: Signum and SoftSignum's sign phase <= 0.6x AdamW,
SoftSignum's soft phase <= 1.2x, a schedule build <= 20 AdamW steps, SoftMuon's soft phase
(5 steps) <= 1.3x Muon. CUDA: Signum and SoftSignum (both phases) <= 0.8x AdamW.
"""

from __future__ import annotations

import argparse
import csv
import gc
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import optimizers
from optimizers._base import ROLES, all_params, decay_groups

Roles = dict[str, list[torch.nn.Parameter]]

LLM_SIZES = {
    "small": {"blocks": 8, "d": 512, "ffn": 1536, "vocab": 32000},
    "130m": {"blocks": 12, "d": 768, "ffn": 2048, "vocab": 32000},
}


# --- parameter sets ------------------------------------------------------------------------------

def resnet18_shapes() -> dict[str, list[tuple[int, ...]]]:
    """Parameter shapes of the CIFAR ResNet-18 (kuangliu/pytorch-cifar), by role."""
    shapes: dict[str, list[tuple[int, ...]]] = {role: [] for role in ROLES}
    shapes["conv_first"].append((64, 3, 3, 3))
    shapes["vector"] += [(64,), (64,)]
    in_planes = 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block_stride in (stride, 1):
            shapes["matrix"] += [(planes, in_planes, 3, 3), (planes, planes, 3, 3)]
            shapes["vector"] += [(planes,)] * 4
            if block_stride != 1 or in_planes != planes:
                shapes["matrix"].append((planes, in_planes, 1, 1))
                shapes["vector"] += [(planes,)] * 2
            in_planes = planes
    shapes["head"].append((10, 512))
    shapes["vector"].append((10,))
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

def timed(step: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call. CPU seconds sum over threads; other
    processes on a busy machine inflate wall time much more than they inflate CPU time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0, c0 = time.perf_counter(), time.process_time()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, time.process_time() - c0


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)


def torch_adamw(roles: Roles) -> torch.optim.Optimizer:
    """The reference: torch.optim.AdamW, multi-tensor path, torch's default hyperparameters."""
    return torch.optim.AdamW(decay_groups(all_params(roles), 0.01), lr=1e-3, foreach=True)


def paired(make: Callable[[Roles], torch.optim.Optimizer], roles: Roles, grads: list[torch.Tensor],
           device: torch.device, warmup: int, repeats: int, prelude: int = 0):
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


def switch_times(make: Callable[[Roles], torch.optim.Optimizer], roles: Roles, grads: list[torch.Tensor],
                 device: torch.device, samples: int) -> list[tuple[float, float]]:
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
        variants = [("soft", {})]
        if "soft_ns_steps" in spec.defaults:
            variants = [("soft", {"soft_ns_steps": 5}), ("soft-accurate", {"soft_ns_steps": None})]
        for phase, extra in variants:
            out.append({"optimizer": name, "phase": phase, "hparams": {**soft, **extra}, "K": total_steps,
                        "prelude": 2})
        out.append({"optimizer": name, "phase": "build", "hparams": soft, "K": total_steps, "prelude": 0})
    return out


def target_for(name: str, phase: str, device: torch.device) -> tuple[float | None, str]:
    """(target, what it is relative to) for a row."""
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


def run_set(set_name: str, shapes, device: torch.device, args) -> list[dict[str, Any]]:
    roles = make_params(shapes, device, seed=0)
    params = all_params(roles)
    g = torch.Generator(device="cpu").manual_seed(1)
    grads = [torch.randn(p.shape, generator=g).to(device) for p in params]
    n_params = sum(p.numel() for p in params)
    n_matrix = sum(p.numel() for p in roles["matrix"])
    print(f"\nset {set_name}: {n_params / 1e6:.2f}M parameters ({n_matrix / 1e6:.2f}M in Muon matrices), "
          f"{len(params)} tensors")
    rows: list[dict[str, Any]] = []
    for cfg in configs(args.total_steps):
        spec = optimizers.REGISTRY[cfg["optimizer"]]
        hp = spec.resolve(cfg["hparams"])

        def make(r: Roles, spec=spec, hp=hp, K=cfg["K"]) -> torch.optim.Optimizer:
            return spec.build(r, hp, K)

        t0 = time.perf_counter()
        if cfg["phase"] == "build":
            switch = medians(switch_times(make, roles, grads, device, args.build_samples))
            soft = next(r for r in rows if r["optimizer"] == cfg["optimizer"] and r["phase"] == "soft")
            (wall, cpu) = (max(switch[0] - soft["ms"] / 1e3, 0.0), max(switch[1] - soft["cpu_ms"] / 1e3, 0.0))
            (ref_wall, ref_cpu) = (soft["adamw_ms"] / 1e3, soft["adamw_cpu_ms"] / 1e3)
        else:
            (wall, cpu), (ref_wall, ref_cpu) = paired(make, roles, grads, device, args.warmup, args.repeats,
                                                      cfg["prelude"])
        rows.append({"set": set_name, "n_params": n_params, "optimizer": cfg["optimizer"], "phase": cfg["phase"],
                     "ms": wall * 1e3, "adamw_ms": ref_wall * 1e3, "ratio": wall / ref_wall,
                     "cpu_ms": cpu * 1e3, "adamw_cpu_ms": ref_cpu * 1e3,
                     "cpu_ratio": cpu / ref_cpu if ref_cpu > 0 else math.nan,
                     "implementation": spec.implementation})
        print(f"  {cfg['optimizer']:<11}{cfg['phase']:<14}{wall * 1e3:>10.1f} ms  (AdamW {ref_wall * 1e3:.1f} ms; "
              f"{time.perf_counter() - t0:.0f}s)", flush=True)
        gc.collect()
    # Ratios to Muon: each side is normalised by its own paired AdamW, which cancels load drift.
    by = {(r["optimizer"], r["phase"]): r for r in rows}
    if ("muon", "step") in by:
        muon_row = by[("muon", "step")]
        for r in rows:
            if r["optimizer"] == "softmuon":
                # A build is a one-off cost: compare it with one Muon step (its AdamW-step multiple
                # divided by Muon's AdamW ratio).
                r["vs_muon"] = r["ratio"] / muon_row["ratio"]
    for r in rows:
        target, against = target_for(r["optimizer"], r["phase"], device)
        value = r.get("vs_muon") if against == "muon" else r["ratio"]
        r["target"] = "" if target is None else f"<= {target:g}x {against}"
        r["ok"] = "" if target is None or value is None else ("yes" if value <= target else "NO")
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Wall-time table; 'cpu x' is the same ratio on process CPU time (robust to a busy machine).
    Build rows: ms of the one-off build, 'x AdamW' = AdamW steps, 'x Muon' = Muon steps."""
    head = (f"{'set':<4}{'optimizer':<12}{'phase':<14}{'ms':>10}{'AdamW ms':>10}{'x AdamW':>9}{'cpu x':>8}"
            f"{'x Muon':>8}  target")
    print("\n" + head + "\n" + "-" * (len(head) + 22))
    for r in rows:
        vs_muon = f"{r['vs_muon']:.2f}" if "vs_muon" in r else ""
        target = f"{r['target']} {r['ok']}".strip()
        print(f"{r['set']:<4}{r['optimizer']:<12}{r['phase']:<14}{r['ms']:>10.1f}{r['adamw_ms']:>10.1f}"
              f"{r['ratio']:>9.2f}{r['cpu_ratio']:>8.2f}{vs_muon:>8}  {target}".rstrip())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("a", "b", "both"), default="both", help="a: ResNet-18, b: LLM")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when present")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per optimizer (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--build-samples", type=int, default=3, help="fresh switches timed for the build")
    ap.add_argument("--total-steps", type=int, default=1000, help="K for the soft phase (N = K - 1)")
    ap.add_argument("--llm", choices=sorted(LLM_SIZES), default=None,
                    help="LLM set size (default: small on CPU, 130m on CUDA)")
    ap.add_argument("--out", default=None, help="CSV path (default benchmarks/results/optimizer_step_<device>.csv)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.build_samples < 1 or args.total_steps < 10:
        ap.error("need --repeats >= 1, --warmup >= 0, --build-samples >= 1, --total-steps >= 10")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available here")
    if args.threads:
        torch.set_num_threads(args.threads)
    llm = args.llm or ("130m" if device.type == "cuda" else "small")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, cores {os.cpu_count()}, "
          f"load average {load[0]:.1f}, repeats {args.repeats}, warmup {args.warmup}")

    sets = {"a": ("a", resnet18_shapes()), "b": ("b", llm_shapes(**LLM_SIZES[llm]))}
    chosen = ["a", "b"] if args.set == "both" else [args.set]
    rows = []
    for key in chosen:
        rows += run_set(*sets[key], device, args)
    print_table(rows)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(f"load average at the end {load_end[0]:.1f} on {os.cpu_count()} cores"
          + ("  (busy machine: timings are noisy)" if load_end[0] > (os.cpu_count() or 1) else ""))

    out = Path(args.out or f"benchmarks/results/optimizer_step_{device.type}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["device", "torch", "threads", "set", "n_params", "llm", "optimizer", "phase", "implementation",
              "ms", "adamw_ms", "ratio", "cpu_ms", "adamw_cpu_ms", "cpu_ratio", "vs_muon", "target", "ok",
              "repeats", "load_avg"]
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "device": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "llm": llm if r["set"] == "b" else "", "repeats": args.repeats,
                        "ms": f"{r['ms']:.3f}", "adamw_ms": f"{r['adamw_ms']:.3f}", "ratio": f"{r['ratio']:.4f}",
                        "cpu_ms": f"{r['cpu_ms']:.3f}", "adamw_cpu_ms": f"{r['adamw_cpu_ms']:.3f}",
                        "cpu_ratio": f"{r['cpu_ratio']:.4f}",
                        "vs_muon": f"{r['vs_muon']:.4f}" if "vs_muon" in r else "",
                        "load_avg": f"{load_end[0]:.2f}"})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
