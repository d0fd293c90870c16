"""``optbench check``: what runs where. Sizes, step counts and each section's time budget per device type
(CUDA full, ``--quick``, anything else), read by ``harness.check.cli.run_check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Plan", "plan_for"]


@dataclass(frozen=True)
class Plan:
    """Sizes, step counts and time budgets (seconds) of one check."""

    budgets: dict[str, float]
    smoke_steps: int
    smoke_cell_s: float
    step_sets: tuple[tuple[str, str, dict[str, Any]], ...]  # (set, description, llm_shapes kwargs or {"width": w})
    step_repeats: int
    step_warmup: int
    step_build_samples: int
    cases: tuple[Any, ...]
    case_s: float
    tp_steps: int
    tp_warmup: int
    llm_batch: int | None
    ns5_shapes: tuple[tuple[int, int, int], ...]
    ns5_repeats: int
    step_total_steps: int = 1000


def plan_for(device_type: str, quick: bool) -> Plan:
    """The plan for a device type. CUDA (full): 30 + 100 + 45 + 120 + 15 = 310 s of section budgets, so
    about 5.5 minutes worst case with start-up: inside the 8-minute target on one H100-class GPU, and
    room in a 10-minute session for ``benchmarks/gpu_session.sh``'s paper-size runs."""
    from harness.check.speed import Case
    from harness.check.step import LLM_SIZES

    names = ("cifar_resnet", "gnn_graphland", "llm", "lstm_lm", "tabular_mlp")
    resnet = lambda w: ("a", f"ResNet-18 width {w}", {"width": w})  # noqa: E731
    llm = lambda s: ("b", f"LLM {s}", dict(LLM_SIZES[s]))  # noqa: E731
    if device_type == "cuda" and not quick:
        paper = (
            Case("cifar_resnet", "paper", fallback_dataset="synthetic", options={"model": "resnet18"}),
            Case("gnn_graphland", "paper", fallback_dataset="sbm"),
            Case("llm", "paper", dataset="pydoc"),  # 130M, ctx 256, bf16: the MFU case
            Case("lstm_lm", "paper", dataset="pydoc"),
            Case("tabular_mlp", "paper", fallback_dataset="digits"),
        )
        return Plan(
            budgets={"environment": 30, "smoke": 100, "optimizer_step": 45, "throughput": 120, "ns5": 15},
            smoke_steps=8,
            smoke_cell_s=30,
            step_sets=(resnet(64), llm("130m")),
            step_repeats=20,
            step_warmup=5,
            step_build_samples=3,
            cases=paper,
            case_s=60,
            tp_steps=10,
            tp_warmup=3,
            llm_batch=128,
            ns5_shapes=((48, 768, 768), (36, 768, 2048), (1, 8192, 8192)),
            ns5_repeats=10,
        )
    if quick:
        # Budgets far above the ~15 s a quiet 2-core CPU needs: they only stop a hung unit, and a busy
        # shared machine must not turn slowness into failures.
        return Plan(
            budgets={"environment": 60, "smoke": 120, "optimizer_step": 90, "throughput": 60, "ns5": 30},
            smoke_steps=4,
            smoke_cell_s=20,
            step_sets=(resnet(8), llm("tiny")),
            step_repeats=7,
            step_warmup=2,
            step_build_samples=1,
            cases=tuple(Case(n, "tiny") for n in names),
            case_s=10,
            tp_steps=4,
            tp_warmup=1,
            llm_batch=None,
            ns5_shapes=((4, 64, 64), (2, 64, 256)),
            ns5_repeats=3,
            step_total_steps=100,
        )
    return Plan(
        budgets={"environment": 60, "smoke": 300, "optimizer_step": 600, "throughput": 300, "ns5": 60},
        smoke_steps=8,
        smoke_cell_s=60,
        step_sets=(resnet(64), llm("small")),
        step_repeats=5,
        step_warmup=2,
        step_build_samples=2,
        cases=tuple(Case(n, "small") for n in names),
        case_s=120,
        tp_steps=10,
        tp_warmup=2,
        llm_batch=None,
        ns5_shapes=((12, 256, 256), (4, 256, 1024)),
        ns5_repeats=5,
    )
