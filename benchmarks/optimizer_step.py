"""Optimizer step cost: median time of one ``step()`` of every registered optimizer, as a ratio to
``torch.optim.AdamW(foreach=True)`` on the same parameters in the same run.

A thin CLI over ``harness/check/step.py``, which holds the measuring code (``optbench check`` runs the
same measurement, on smaller sets with ``--quick``).

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
import math
import os
from pathlib import Path
from typing import Any

import torch

from harness.check.step import LLM_SIZES, llm_shapes, resnet18_shapes, run_set

# The CLI offers the published sizes; "tiny" is the quick check's stand-in.
CLI_LLM_SIZES = ("small", "130m")


def print_table(rows: list[dict[str, Any]]) -> None:
    """Wall-time table; 'cpu x' is the same ratio on process CPU time (robust to a busy machine).
    Build rows: ms of the one-off build, 'x AdamW' = AdamW steps, 'x Muon' = Muon steps."""
    head = (
        f"{'set':<4}{'optimizer':<15}{'phase':<14}{'ms':>10}{'AdamW ms':>10}{'x AdamW':>9}{'cpu x':>8}"
        f"{'x Muon':>8}  target"
    )
    print("\n" + head + "\n" + "-" * (len(head) + 22))
    for r in rows:
        vs_muon = f"{r['vs_muon']:.2f}" if "vs_muon" in r else ""
        target = f"{r['target']} {r['ok']}".strip()
        print(
            f"{r['set']:<4}{r['optimizer']:<15}{r['phase']:<14}{r['ms']:>10.1f}{r['adamw_ms']:>10.1f}"
            f"{r['ratio']:>9.2f}{r['cpu_ratio']:>8.2f}{vs_muon:>8}  {target}".rstrip()
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("a", "b", "both"), default="both", help="a: ResNet-18, b: LLM")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when present")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per optimizer (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--build-samples", type=int, default=3, help="fresh switches timed for the build")
    ap.add_argument("--total-steps", type=int, default=1000, help="K for the soft phase (N = K - 1)")
    ap.add_argument(
        "--llm", choices=CLI_LLM_SIZES, default=None, help="LLM set size (default: small on CPU, 130m on CUDA)"
    )
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
    print(
        f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, cores {os.cpu_count()}, "
        f"load average {load[0]:.1f}, repeats {args.repeats}, warmup {args.warmup}"
    )

    sets = {"a": ("a", resnet18_shapes()), "b": ("b", llm_shapes(**LLM_SIZES[llm]))}
    chosen = ["a", "b"] if args.set == "both" else [args.set]
    rows = []
    for key in chosen:
        print()
        rows += run_set(
            *sets[key],
            device,
            warmup=args.warmup,
            repeats=args.repeats,
            build_samples=args.build_samples,
            total_steps=args.total_steps,
            log=lambda line: print(line, flush=True),
        )
    print_table(rows)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(
        f"load average at the end {load_end[0]:.1f} on {os.cpu_count()} cores"
        + ("  (busy machine: timings are noisy)" if load_end[0] > (os.cpu_count() or 1) else "")
    )

    out = Path(args.out or f"benchmarks/results/optimizer_step_{device.type}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = [
        "device",
        "torch",
        "threads",
        "set",
        "n_params",
        "llm",
        "optimizer",
        "phase",
        "implementation",
        "ms",
        "adamw_ms",
        "ratio",
        "cpu_ms",
        "adamw_cpu_ms",
        "cpu_ratio",
        "vs_muon",
        "target",
        "ok",
        "repeats",
        "load_avg",
    ]
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    **r,
                    "device": device.type,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "llm": llm if r["set"] == "b" else "",
                    "repeats": args.repeats,
                    "ms": f"{r['ms']:.3f}",
                    "adamw_ms": f"{r['adamw_ms']:.3f}",
                    "ratio": f"{r['ratio']:.4f}",
                    "cpu_ms": f"{r['cpu_ms']:.3f}",
                    "adamw_cpu_ms": f"{r['adamw_cpu_ms']:.3f}",
                    "cpu_ratio": f"{r['cpu_ratio']:.4f}",
                    "vs_muon": f"{r['vs_muon']:.4f}" if "vs_muon" in r else "",
                    "load_avg": f"{load_end[0]:.2f}",
                }
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
