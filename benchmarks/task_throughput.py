"""Training throughput of the task families: images/s (cifar_resnet), tokens/s (lstm_lm, llm) and, for
the llm task, model FLOP utilisation (MFU).

A thin CLI over ``harness/check/speed.py``, which holds the measuring code (``optbench check`` runs the
same measurement for every task family, nodes/s for gnn_graphland and rows/s for tabular_mlp).

Each case builds its task with the task's own builders (``tasks.make``: model, data, loss) and times a
bare training step: next batch, forward + loss under optional bf16 autocast, backward, AdamW step
(fused on CUDA), zero_grad. No LR schedule, clipping, evals or logging (that is the loop's overhead,
measured elsewhere). Timing: ``--warmup`` untimed steps (compilation happens there), then ``--steps``
timed steps between two device synchronisations (no per-step host sync).

MFU = (flops per token x tokens/s) / peak, flops per token = 6 N + 12 L d T (PaLM appendix B; N = the
parameters in matmuls incl. the lm head, T = context), i.e. attention counted over the full T x T
matrix as PaLM and nanoGPT do. Peak = dense bf16 tensor-core throughput of the GPU (``PEAK_BF16_TFLOPS``,
NVIDIA datasheets) or ``--peak-tflops``.

CPU (default when no GPU): tiny and small sizes, quick. CUDA: the paper-scale cases, including llm 130M
(GaLore llama_130m, vocab 32000, ctx 256) in bf16; the llm case reads the offline pydoc corpus with
byte tokens, which changes nothing in the model's flops (the model keeps its 32000-entry vocabulary).

    .venv/bin/python benchmarks/task_throughput.py                       # CPU: tiny + small
    .venv/bin/python benchmarks/task_throughput.py --device cuda          # GPU: paper-scale cases
    .venv/bin/python benchmarks/task_throughput.py --device cuda --case llm:paper --llm-batch 128

Prints a table and writes ``benchmarks/results/task_throughput_<device>.csv``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import re
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from harness.check.speed import Case, measure  # noqa: E402
from harness.check.speed import device_name as _device_name  # noqa: E402
from harness.check.speed import peak_tflops as _peak_for_name  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

CPU_CASES = (
    Case("cifar_resnet", "tiny"),
    Case("cifar_resnet", "small"),
    Case("lstm_lm", "tiny"),
    Case("lstm_lm", "small"),
    Case("llm", "tiny"),
    Case("llm", "small"),
)
CUDA_CASES = (
    # CIFAR-10 ResNet-18 if CIFAR-10 is in the data dir, else the same model on 16x16 synthetic images.
    Case("cifar_resnet", "paper", fallback_dataset="synthetic", options={"model": "resnet18"}),
    Case("lstm_lm", "paper", dataset="pydoc"),
    Case("llm", "paper", dataset="pydoc"),  # 130M, ctx 256, bf16: the MFU case
)


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    """The bf16 peak for ``device`` (None on CPU or an unknown GPU unless ``override``)."""
    if override:
        return override
    if device.type != "cuda":
        return None
    return _peak_for_name(torch.cuda.get_device_name(device))[0]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


COLUMNS = (
    "task",
    "size",
    "dataset",
    "model",
    "amp",
    "compile",
    "batch_items",
    "unit",
    "items_per_s",
    "step_ms",
    "params",
    "tflops_per_s",
    "mfu",
    "peak_mem_gb",
    "notes",
)


def print_table(rows: list[dict[str, Any]]) -> None:
    cells = [[_fmt(r.get(c, "")) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", help="cpu or cuda[:i] (default: cuda when present)")
    p.add_argument(
        "--case",
        action="append",
        metavar="TASK:SIZE",
        help="run only these cases (repeatable), e.g. llm:paper; default: the device's set",
    )
    p.add_argument("--steps", type=int, help="timed steps (default: 20 on CPU, 50 on CUDA)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default: 3 on CPU, 10 on CUDA)")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bf16 autocast on CUDA (default: on; CPU always fp32)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the model (default: on for CUDA, off for CPU)",
    )
    p.add_argument(
        "--llm-batch",
        type=int,
        default=None,
        help="llm sequences per step (default: 128 on CUDA -- the 130M recipe's 512 needs "
        "several GPUs or gradient accumulation -- and the task's own on CPU)",
    )
    p.add_argument("--peak-tflops", type=float, help="peak bf16 TFLOP/s for MFU (default: from the GPU name)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data-dir", help="data folder for the tasks (default: $OPTBENCH_DATA_DIR or ~/.cache/optbench)")
    p.add_argument("--out", help="CSV path (default: benchmarks/results/task_throughput_<device>.csv)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cases = CUDA_CASES if cuda else CPU_CASES
    if args.case:
        known = {c.label: c for c in (*CPU_CASES, *CUDA_CASES)}
        wanted = []
        for label in args.case:
            task, _, size = label.partition(":")
            match = next((c for c in cases if c.label == label), None) or known.get(label)
            if match is None and size:
                match = Case(task, size)
            if match is None:
                print(f"unknown case {label!r}; known: {', '.join(sorted(known))}", file=sys.stderr)
                return 2
            wanted.append(match)
        cases = tuple(wanted)
    steps = args.steps or (50 if cuda else 20)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 3)
    compile_ = args.compile if args.compile is not None else cuda
    llm_batch = args.llm_batch or (128 if cuda else None)
    peak = peak_tflops(device, args.peak_tflops)

    rows = []
    for case in cases:
        print(f"[{case.label}] ...", file=sys.stderr, flush=True)
        try:
            row = measure(
                case,
                device,
                steps=steps,
                warmup=warmup,
                amp=args.amp,
                compile=compile_,
                llm_batch=llm_batch,
                data_dir=args.data_dir,
                peak=peak,
            )
        except Exception as exc:  # one failing case (missing data, OOM) must not lose the others
            row = {
                "task": case.task,
                "size": case.size,
                "unit": case.unit,
                "device": _device_name(device),
                "notes": f"failed: {type(exc).__name__}: {str(exc)[:120]}",
            }
        rows.append(row)
        if cuda:
            torch.cuda.empty_cache()
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for row in rows:
        row["timestamp"] = stamp
    print(f"device: {_device_name(device)}; peak bf16: {peak or '-'} TFLOP/s; steps {steps} after {warmup} warmup")
    print_table(rows)
    tag = "cpu" if not cuda else "cuda-" + re.sub(r"[^a-z0-9]+", "-", _device_name(device).lower()).strip("-")
    out = Path(args.out) if args.out else RESULTS / f"task_throughput_{tag}.csv"
    write_csv(rows, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
