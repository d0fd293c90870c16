"""Training throughput of the task families, model-FLOPs utilisation, and Newton-Schulz throughput.

Used by ``optbench check`` and by ``benchmarks/task_throughput.py`` (its CLI, table and CSV).

Throughput: a case builds its task with the task's own builders (``tasks.make``: model, data, loss) and
times bare training steps: next batch, forward + loss under optional bf16 autocast (CUDA), backward,
AdamW step (fused on CUDA), zero_grad. No LR schedule, clipping, evals or logging (that is the loop's
overhead, measured by ``benchmarks/harness_overhead.py``). ``warmup`` untimed steps (compilation and
allocator warm-up happen there), then ``steps`` timed steps between two device synchronisations (no
per-step host sync). Units (``UNITS``): images/s (cifar_resnet), tokens/s (llm, lstm_lm: target tokens),
nodes/s (gnn_graphland: the whole graph is forwarded every step, full batch), rows/s (tabular_mlp); a
task not listed there (a plugin) is counted in batches/s.

MFU (llm only) = flops per token x tokens/s / peak. Flops per token = 6 N + 12 L d T
(``tasks.models.llama.flops_per_token``): 6 N for the forward and backward matmuls of the N matmul parameters
(Kaplan et al. 2020, "Scaling laws", section 2.1) plus the attention scores and values over the full
T x T matrix, as in PaLM (Chowdhery et al. 2022, appendix B) and nanoGPT's ``estimate_mfu``
(github.com/karpathy/nanoGPT, model.py: ``6N + 12 L H Q T`` with H Q = d). Peak = the dense bf16
tensor-core throughput of the GPU from its datasheet (``PEAK_BF16_TFLOPS``) or ``--peak-tflops``.

NS5: ``optimizers.muon.newton_schulz5`` on stacks of matrices (bf16 on CUDA, as Muon runs it). For an
``m x n`` input with ``m <= n`` (the function transposes to get there) each of the 5 iterations does
``A = X X^T`` (2 m^2 n flops), ``A @ A`` inside ``baddbmm`` (2 m^3) and ``B @ X`` (2 m^2 n): a GEMM of
``(a x b) (b x c)`` is 2abc flops. The element-wise terms are O(m n) and left out.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

Clock = Callable[[], float]

# Dense bf16 tensor-core peak in TFLOP/s with FP32 accumulation (no 2:4 sparsity), from NVIDIA's
# datasheets and architecture whitepapers. (label, regex on torch.cuda.get_device_name, TFLOP/s); the
# first match wins, so the more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, str, float], ...] = (
    ("H100 NVL", r"H100.*NVL", 835.0),  # H100 datasheet (NVL, per GPU)
    ("H100 PCIe", r"H100.*PCIe", 756.0),  # H100 datasheet
    ("GH200", r"GH200", 989.4),  # GH200 datasheet: the H100 SXM tensor cores
    ("H200 NVL", r"H200.*NVL", 835.0),  # H200 datasheet
    ("H200 SXM", r"H200", 989.4),  # H200 datasheet
    ("H100 SXM", r"H100", 989.4),  # H100 datasheet (SXM5)
    ("H800", r"H800", 989.4),  # the H100 SXM die
    ("A100", r"A100|A800", 312.0),  # A100 datasheet (40 GB and 80 GB, SXM and PCIe)
    ("A10G", r"A10G", 125.0),  # NVIDIA publishes none for AWS's A10G: the A10's figure
    ("A10", r"\bA10\b", 125.0),  # A10 datasheet
    ("L40S", r"L40S", 362.05),  # L40S datasheet
    ("L40", r"\bL40\b", 181.05),  # L40 datasheet
    ("L4", r"\bL4\b", 121.0),  # L4 datasheet
    ("RTX 4090", r"RTX 4090", 165.2),  # Ada whitepaper, FP32 accumulate (330 with FP16 accumulate)
    ("RTX 3090", r"RTX 3090", 71.0),  # Ampere GA102 whitepaper, FP32 accumulate
)

# What one batch item is, per registered task family.
UNITS = {
    "cifar_resnet": "images",
    "gnn_graphland": "nodes",
    "llm": "tokens",
    "lstm_lm": "tokens",
    "tabular_mlp": "rows",
}


def peak_tflops(device_name: str | None, override: float | None = None) -> tuple[float | None, str]:
    """(peak dense bf16 TFLOP/s, where it comes from) for a device name; ``override`` wins.
    (None, "unknown ...") for CPUs and GPUs not in ``PEAK_BF16_TFLOPS``."""
    if override:
        return float(override), "--peak-tflops"
    if not device_name:
        return None, "unknown (no GPU; pass --peak-tflops)"
    for label, pattern, peak in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return peak, f"{label} datasheet"
    return None, f"unknown for {device_name!r} (pass --peak-tflops)"


# --------------------------------------------------------------------------------------------------
# Task throughput


@dataclass(frozen=True)
class Case:
    """One measurement: a task at a size (and dataset/options)."""

    task: str
    size: str
    dataset: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fallback_dataset: str | None = None  # offline stand-in when the real data is missing

    @property
    def label(self) -> str:
        return f"{self.task}:{self.size}"

    @property
    def unit(self) -> str:
        return UNITS.get(self.task, "batches")


def items_in(batch: Any, unit: str) -> int:
    """Batch items of one training batch in ``unit``: images or rows (leading dim of the inputs),
    tokens (elements of the targets), nodes (of the full graph), or 1 batch."""
    if unit in ("images", "rows"):
        return int(batch[0].shape[0])
    if unit == "tokens":
        return int(batch[1].numel())
    if unit == "nodes":
        return int(batch.x.shape[0])
    return 1


def device_name(device: torch.device) -> str:
    """The GPU's marketing name, or the device type (cpu, mps)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def _model_name(task) -> str:
    opts = dict(task.options)
    if opts.get("model"):
        return str(opts["model"])
    if opts.get("hidden"):  # lstm_lm
        return f"lstm {opts.get('layers', '?')}x{opts['hidden']}"
    return ""


def make_case_task(case: Case, data_dir: str | None = None, llm_batch: int | None = None):
    """(task, note): ``case``'s task, on its fallback dataset (with a note why) when the real one is missing."""
    import tasks
    from harness.errors import UserError

    options = dict(case.options)
    if case.task == "llm" and llm_batch:
        options["batch_size"] = llm_batch
    try:
        return tasks.make(case.task, size=case.size, dataset=case.dataset, data_dir=data_dir, **options), ""
    except UserError as exc:
        if case.fallback_dataset is None:
            raise
        note = f"{case.fallback_dataset} stand-in ({str(exc)[:60]}...)"
        return tasks.make(case.task, size=case.size, dataset=case.fallback_dataset, data_dir=data_dir, **options), note


def measure(
    case: Case,
    device: torch.device,
    *,
    steps: int,
    warmup: int,
    amp: bool,
    compile: bool,
    llm_batch: int | None,
    data_dir: str | None,
    peak: float | None,
    clock: Clock = time.perf_counter,
) -> dict[str, Any]:
    """Build ``case`` and time ``steps`` bare training steps; returns one table row (items/s, and for
    llm the flops per token, TFLOP/s and MFU against ``peak`` TFLOP/s when given)."""
    from harness.check.step import synchronize

    task, note = make_case_task(case, data_dir, llm_batch)
    gen = torch.Generator().manual_seed(0)
    model = task.make_model(gen).to(device)
    data = task.make_data(device)
    batches = data.batches(torch.Generator().manual_seed(1))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True if device.type == "cuda" else None)
    net = torch.compile(model) if compile else model
    use_amp = amp and device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    def step() -> int:
        batch = next(batches)
        with autocast():
            loss = task.loss(net, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return items_in(batch, case.unit)

    model.train()
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = clock()
    items = sum(step() for _ in range(steps))
    synchronize(device)
    seconds = clock() - t0

    rate = items / seconds
    row: dict[str, Any] = {
        "task": case.task,
        "size": case.size,
        "dataset": task.dataset,
        "model": _model_name(task),
        "device": device_name(device),
        "amp": "bf16" if use_amp else "fp32",
        "compile": compile,
        "batch_items": items // steps,
        "unit": case.unit,
        "items_per_s": rate,
        "step_ms": 1000.0 * seconds / steps,
        "params": sum(p.numel() for p in params),
        "flops_per_item": math.nan,
        "tflops_per_s": math.nan,
        "mfu": math.nan,
        "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan,
        "steps": steps,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "notes": note,
    }
    if case.task == "llm":
        from tasks.models import llama

        fpt = llama.flops_per_token(model, model.cfg.ctx)
        row["flops_per_item"] = fpt
        row["tflops_per_s"] = fpt * rate / 1e12
        if peak:
            row["mfu"] = row["tflops_per_s"] / peak
    return row


# --------------------------------------------------------------------------------------------------
# Newton-Schulz (Muon's orthogonalisation)


def ns5_flops(rows: int, cols: int, steps: int = 5) -> float:
    """Matmul flops of ``newton_schulz5`` on one ``rows x cols`` matrix (see the module docstring)."""
    m, n = min(rows, cols), max(rows, cols)
    return steps * (4.0 * m * m * n + 2.0 * m**3)


def _ns_dtype(device: torch.device) -> str:
    """The dtype ``newton_schulz5`` computes in by default on ``device`` (bf16 on CUDA, fp32 elsewhere)."""
    try:
        from optimizers._muon_ops import ns_compute_dtype
    except ImportError:  # an optimizers package without the helper: the documented default
        return "bf16" if device.type == "cuda" else "fp32"
    return {torch.bfloat16: "bf16", torch.float32: "fp32"}.get(ns_compute_dtype(None, device), "?")


def time_ns5(
    batch: int,
    rows: int,
    cols: int,
    device: torch.device,
    *,
    repeats: int,
    warmup: int = 2,
    peak: float | None = None,
    clock: Clock = time.perf_counter,
) -> dict[str, Any]:
    """Median seconds of ``newton_schulz5`` on a ``(batch, rows, cols)`` stack, and its TFLOP/s (and
    fraction of ``peak`` TFLOP/s when given). Each call is timed between two synchronisations."""
    from harness.check.step import synchronize
    from optimizers.muon import newton_schulz5

    g = torch.Generator().manual_seed(0)
    G = torch.randn(batch, rows, cols, generator=g).to(device)
    for _ in range(warmup):
        newton_schulz5(G)
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = clock()
        newton_schulz5(G)
        synchronize(device)
        times.append(clock() - t0)
    seconds = sorted(times)[len(times) // 2]
    flops = batch * ns5_flops(rows, cols)
    tflops = flops / seconds / 1e12
    return {
        "shape": f"{batch}x{rows}x{cols}",
        "batch": batch,
        "rows": rows,
        "cols": cols,
        "dtype": _ns_dtype(device),
        "ms": seconds * 1e3,
        "gflop": flops / 1e9,
        "tflops_per_s": tflops,
        "frac_peak": tflops / peak if peak else math.nan,
    }
