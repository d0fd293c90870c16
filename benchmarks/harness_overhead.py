"""Harness overhead: our training loop vs a bare hand-written loop on the same model, data and optimizer.

Both loops draw the same init and the same batches and take the same number of optimizer steps with
the task's gradient clipping. Our loop's time is its ``train_seconds`` (evaluation excluded: it is
counted separately and the bare loop has none); the bare loop's time is its wall time. Runs alternate
between the two; the ratio of medians and the ratio of minima (the least-disturbed run of each, the
steadier figure on a shared machine) are printed (target: <= 1.05x).

    python benchmarks/harness_overhead.py --task tabular_mlp --size small --optimizer adamw
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

import optimizers
from harness.run.loop import derive_seed, lr_factor, pick_device, run
from harness.run.resolve import resolve


def bare_loop(task, spec, device) -> float:
    """The loop a person writes by hand: warmup+decay LR, forward, backward, clip, step."""
    torch.manual_seed(derive_seed(spec.seed, "dropout"))
    model = task.make_model(torch.Generator().manual_seed(derive_seed(spec.seed, "init"))).to(device)
    data = task.make_data(device)
    opt = optimizers.REGISTRY[spec.optimizer].build(task.roles(model), spec.hparams, spec.steps)
    base = [g["lr"] for g in opt.param_groups]
    params = [p for p in model.parameters() if p.requires_grad]
    batches = data.batches(torch.Generator().manual_seed(derive_seed(spec.seed, "data")))
    warmup = int(round(task.warmup_fraction * spec.steps))
    model.train()
    t0 = time.perf_counter()
    for step in range(spec.steps):
        f = lr_factor(step, spec.steps, warmup, task.schedule, task.min_lr_ratio)
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * f
        loss = task.loss(model, next(batches))
        loss.backward()
        if task.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, task.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="tabular_mlp")
    ap.add_argument("--size", default="small")
    ap.add_argument("--optimizer", default="adamw")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="CSV path (default benchmarks/results/harness_overhead_<device>.csv)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    spec, task = resolve(task=args.task, optimizer=args.optimizer, size=args.size, steps=args.steps)
    # Warm up both paths once (allocator, kernels, data build caches).
    bare_loop(task, spec, device)
    run(spec, task=task, device=str(device), progress=False)
    ours, bare = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(task, spec, device))
        ours.append(run(spec, task=task, device=str(device), progress=False).row["train_seconds"])
    m_ours, m_bare = statistics.median(ours), statistics.median(bare)
    ratio = m_ours / m_bare
    ratio_min = min(ours) / min(bare)
    print(
        f"device {device}, threads {args.threads}, {args.task}/{spec.dataset} [{args.size}] "
        f"{args.optimizer}, {spec.steps} steps, {args.repeats} repeats"
    )
    print(f"{'loop':<10}{'median s':>10}{'ms/step':>10}")
    print(f"{'bare':<10}{m_bare:>10.3f}{1e3 * m_bare / spec.steps:>10.3f}")
    print(f"{'optbench':<10}{m_ours:>10.3f}{1e3 * m_ours / spec.steps:>10.3f}")
    print(f"overhead ratio (optbench / bare): median {ratio:.3f}x, min {ratio_min:.3f}x  (target <= 1.05x)")
    out = Path(args.out or f"benchmarks/results/harness_overhead_{device.type}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "device",
                "threads",
                "task",
                "dataset",
                "size",
                "optimizer",
                "steps",
                "repeats",
                "bare_median_s",
                "optbench_median_s",
                "ratio",
                "bare_min_s",
                "optbench_min_s",
                "ratio_min",
            ]
        )
        w.writerow(
            [
                str(device),
                args.threads,
                args.task,
                spec.dataset,
                args.size,
                args.optimizer,
                spec.steps,
                args.repeats,
                f"{m_bare:.4f}",
                f"{m_ours:.4f}",
                f"{ratio:.4f}",
                f"{min(bare):.4f}",
                f"{min(ours):.4f}",
                f"{ratio_min:.4f}",
            ]
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
