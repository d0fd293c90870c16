"""Cost of the delayed-gradient condition (``harness/run/delay.py``): time of backward + delay swap + optimizer
step over backward + step, on a ~10M-parameter MLP.

Two identical MLPs, one trained plainly and one through ``GradientDelay(params, d)``, take steps in
alternation (the order flips every step) so load drift on a shared machine hits both sides. Each step's
timed span runs from ``loss.backward()`` to the end of ``optimizer.step()`` (the forward pass, identical
on both sides, is not timed). A repeat is ``--steps`` steps of each; its ratio is the ratio of the two
medians. Printed: the median ratio over the repeats and its spread (min, max), the median time of the
swap alone, and the memory the ring holds. CPU timings on a shared VM are noisy: the load average is
printed; a spread that straddles 1.0 means the difference is below what the machine can resolve.

    python benchmarks/delay_overhead.py                       # CPU, AdamW, delay 1, 1 thread
    python benchmarks/delay_overhead.py --delay 2 --optimizer signum --repeats 9 --threads 2
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import optimizers
from harness.run.delay import GradientDelay


def mlp(width: int, depth: int, d_in: int, d_out: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(d_in, width), nn.GELU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.GELU()]
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


def roles(model: nn.Sequential) -> dict[str, list[nn.Parameter]]:
    linears = [m for m in model if isinstance(m, nn.Linear)]
    return {
        "matrix": [m.weight for m in linears[:-1]],
        "head": [linears[-1].weight],
        "vector": [m.bias for m in linears],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delay", type=int, default=1)
    ap.add_argument("--optimizer", default="adamw", choices=sorted(optimizers.REGISTRY))
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--depth", type=int, default=3, help="hidden layers (width x width after the first)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=15, help="timed steps per side per repeat")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="CSV path (default benchmarks/results/delay_overhead_cpu.csv)")
    args = ap.parse_args(argv)
    if args.delay < 1:
        ap.error(f"--delay must be >= 1 (delay 0 is a no-op: nothing to time), got {args.delay}")
    torch.set_num_threads(args.threads)

    d_in, d_out = 512, 10
    plain, delayed = mlp(args.width, args.depth, d_in, d_out, 0), mlp(args.width, args.depth, d_in, d_out, 0)
    n_params = sum(p.numel() for p in plain.parameters())
    spec = optimizers.REGISTRY[args.optimizer]
    opt_plain = spec.build(roles(plain), None, 10_000)
    opt_delayed = spec.build(roles(delayed), None, 10_000)
    delay = GradientDelay(delayed.parameters(), args.delay)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.batch, d_in, generator=g), torch.randint(0, d_out, (args.batch,), generator=g)
    swaps: list[float] = []

    def timed_step(model, opt, gd: GradientDelay | None) -> float:
        loss = nn.functional.cross_entropy(model(x), y)
        t0 = time.perf_counter()
        loss.backward()
        if gd is not None:
            t1 = time.perf_counter()
            gd.apply()
            swaps.append(time.perf_counter() - t1)
        opt.step()
        elapsed = time.perf_counter() - t0
        opt.zero_grad(set_to_none=True)
        return elapsed

    for _ in range(3):  # warm up: allocator, optimizer state, the ring
        timed_step(plain, opt_plain, None)
        timed_step(delayed, opt_delayed, delay)
    swaps.clear()

    ratios, base_ms, with_ms = [], [], []
    for _ in range(args.repeats):
        a, b = [], []
        for i in range(args.steps):
            if i % 2:
                a.append(timed_step(plain, opt_plain, None))
                b.append(timed_step(delayed, opt_delayed, delay))
            else:
                b.append(timed_step(delayed, opt_delayed, delay))
                a.append(timed_step(plain, opt_plain, None))
        base_ms.append(1e3 * statistics.median(a))
        with_ms.append(1e3 * statistics.median(b))
        ratios.append(with_ms[-1] / base_ms[-1])

    med = statistics.median(ratios)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [med, med, med]
    swap_us = 1e6 * statistics.median(swaps)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cpu, {args.threads} thread(s), load average {load:.2f} (shared VM: timings are noisy)")
    print(
        f"MLP {d_in}-{args.width}x{args.depth}-{d_out}: {n_params / 1e6:.2f}M parameters, batch {args.batch}, "
        f"{args.optimizer}, delay {args.delay}; {args.repeats} repeats x {args.steps} steps per side"
    )
    print(f"backward + step          median {statistics.median(base_ms):8.2f} ms")
    print(f"backward + swap + step   median {statistics.median(with_ms):8.2f} ms")
    print(
        f"ratio (with / without)   median {med:.4f}x, IQR [{q[0]:.4f}, {q[2]:.4f}], "
        f"range [{min(ratios):.4f}, {max(ratios):.4f}]"
    )
    print(
        f"swap alone               median {swap_us:8.1f} us ({len(delay.params)} tensors; "
        f"{swap_us / 1e3 / statistics.median(base_ms) * 100:.3f}% of a step)"
    )
    print(
        f"ring memory              {delay.nbytes() / 2**20:.1f} MiB = {args.delay} x the gradients "
        f"({4 * n_params / 2**20:.1f} MiB of fp32 parameters)"
    )
    out = Path(args.out or "benchmarks/results/delay_overhead_cpu.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "device",
                "threads",
                "load_avg",
                "params",
                "batch",
                "optimizer",
                "delay",
                "repeats",
                "steps",
                "base_median_ms",
                "delayed_median_ms",
                "ratio_median",
                "ratio_q1",
                "ratio_q3",
                "ratio_min",
                "ratio_max",
                "swap_median_us",
                "ring_bytes",
            ]
        )
        w.writerow(
            [
                "cpu",
                args.threads,
                f"{load:.2f}",
                n_params,
                args.batch,
                args.optimizer,
                args.delay,
                args.repeats,
                args.steps,
                f"{statistics.median(base_ms):.3f}",
                f"{statistics.median(with_ms):.3f}",
                f"{med:.4f}",
                f"{q[0]:.4f}",
                f"{q[2]:.4f}",
                f"{min(ratios):.4f}",
                f"{max(ratios):.4f}",
                f"{swap_us:.1f}",
                delay.nbytes(),
            ]
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
