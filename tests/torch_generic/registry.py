"""One ``OptimizerInfo`` per optbench optimizer, in the form pytorch's generic tests consume
(``torch.testing._internal.common_optimizers``: ``optim_inputs_func(device, dtype)`` returns
``OptimizerInput``s without params; ``supported_impls`` names the implementation flags).

Budgets. The switching optimizers (SoftSignum, HardSwitchSign, SoftMuon) leave the sign phase at step
``S + 1``, ``S = floor(alpha_sign * total_steps)``. Their inputs carry budgets chosen against what the
generic tests do (20 steps for "goes the right direction", 7 for foreach-vs-for-loop, 10 primed + 10
after a state_dict load, 3 primed + 1 after a load of an older state_dict):

  K = 10000                 sign phase throughout (the switching optimizer is its parent X)
  K = 25, alpha_sign = 0    soft from step 1
  K = 6,  alpha_sign = 0.5  S = 3: the switch inside the 7-step foreach-vs-for-loop window; a state
                            saved at S (3 primed steps) is loaded and switches right after; past K
                            from step 7 on (the last temperature / gain is held)
  K = 30, alpha_sign = 0.5  S = 15: a state_dict saved at step 10, before S, is loaded and the
                            loaded optimizer crosses the switch at step 16

Required and run-wide keys. ``total_steps`` is a required constructor argument of the switching
optimizers, and the keys that define their one schedule (``SCHEDULE_KEYS``) must agree across the
groups that pool it (by design, docs/optimizers-as-library.md). The two upstream tests that spread
an input's kwargs over param groups pass these keys to the constructor instead (``constructor_keys``).

The upstream OptimizerInfo records are used as they are; only keyword arguments the installed torch
knows are passed (``_info``), so torch 2.11 .. 2.14 all build them.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

try:
    from torch.testing._internal.common_optimizers import OptimizerInfo, OptimizerInput
except Exception as exc:  # ImportError, or a torch whose testing internals moved
    raise ImportError(
        "optbench's generic optimizer tests need torch.testing._internal.common_optimizers (OptimizerInfo, "
        "OptimizerInput; torch >= 2.2) and the test-only package it imports, expecttest "
        "(`pip install expecttest`; it is in optbench's dev extra). Import failed with "
        f"{type(exc).__name__}: {exc}"
    ) from exc

from optimizers.adamw import AdamW
from optimizers.hardswitchsign import HardSwitchSign
from optimizers.muon import Muon
from optimizers.routed import RoutedOptimizer
from optimizers.sgd import SGD
from optimizers.signum import Signum
from optimizers.softmuon import SoftMuon
from optimizers.softsignum import SoftSignum

EXAMPLE_PLUGINS = Path(__file__).resolve().parents[2] / "examples" / "plugins"


def _example_lion() -> type:
    """The example plugin's Lion (examples/plugins), imported from the checkout without installing it."""
    sys.path.insert(0, str(EXAMPLE_PLUGINS))
    try:
        return importlib.import_module("optbench_example.lion").Lion
    finally:
        sys.path.remove(str(EXAMPLE_PLUGINS))


class RoutedLion(RoutedOptimizer):
    """What ``optbench_routing = "matrix"`` builds for the example Lion: Lion on the matrices, the
    auxiliary AdamW on everything else, one ``torch.optim.Optimizer``."""

    main_cls = _example_lion()


@dataclass(frozen=True)
class ErrorCase:
    """Inputs that must fail: at construction (``on="construct"``) or at the first ``step()``."""

    params: Any
    kwargs: dict[str, Any]
    error: type[BaseException]
    match: str
    on: str = "construct"
    desc: str = ""


@dataclass(frozen=True)
class Entry:
    """An optbench optimizer under the generic tests: the upstream ``OptimizerInfo`` plus what the
    tests need to know that upstream records cannot say."""

    name: str
    info: Any  # torch's OptimizerInfo
    errors: Callable[[], list[ErrorCase]]
    default_weight_decay: float  # what a 2-D parameter is decayed by when an input names none
    constructor_keys: tuple[str, ...] = ()  # passed to the constructor, never spread over groups
    by_design: Mapping[str, str] = field(default_factory=dict)  # upstream test -> why it is skipped


def _info(cls: type, inputs: Callable, **kwargs: Any) -> Any:
    """``OptimizerInfo(cls, ...)`` with the keyword arguments this torch version accepts."""
    accepted = set(inspect.signature(OptimizerInfo.__init__).parameters)
    missing = {"optim_inputs_func", "supported_impls", "not_og_supported_flags", "supports_complex"} - accepted
    if missing:
        raise ImportError(f"torch's OptimizerInfo lacks {sorted(missing)}: the generic tests need them")
    return OptimizerInfo(cls, optim_inputs_func=inputs, **{k: v for k, v in kwargs.items() if k in accepted})


def _inputs(*cases: tuple[dict[str, Any], str]) -> Callable:
    """An ``optim_inputs_func``: fresh ``OptimizerInput``s (fresh tensor lrs) on every call."""

    def make(device: Any = None, dtype: Any = None) -> list[Any]:
        return [
            OptimizerInput(
                params=None, kwargs={k: (v.clone() if torch.is_tensor(v) else v) for k, v in kw.items()}, desc=desc
            )
            for kw, desc in cases
        ]

    return make


SIGN = ({"total_steps": 10_000}, "sign phase throughout")
SOFT_FROM_1 = ({"total_steps": 25, "alpha_sign": 0.0}, "soft from step 1")
SWITCH_AT_4 = ({"total_steps": 6, "alpha_sign": 0.5}, "switch at step 4")
SWITCH_AT_16 = ({"total_steps": 30, "alpha_sign": 0.5}, "switch at step 16")


def _budget(budget: tuple[dict, str], desc: str = "", **kwargs: Any) -> tuple[dict[str, Any], str]:
    return {**budget[0], **kwargs}, f"{budget[1]}{', ' + desc if desc else ''}"


# --- error inputs ---------------------------------------------------------------------------------


def _common_errors(name: str, required: dict[str, Any], complex_ok: bool = False) -> Callable[[], list[ErrorCase]]:
    """What every torch.optim optimizer refuses, plus complex parameters (optbench: a ValueError
    naming the optimizer at construction) and sparse gradients (at the first step)."""

    def make() -> list[ErrorCase]:
        w, w2 = torch.nn.Parameter(torch.randn(2, 2)), torch.nn.Parameter(torch.randn(2, 2))
        sparse = torch.nn.Parameter(torch.randn(3, 2))
        sparse.grad = torch.randn(3, 2).to_sparse()
        cases = [
            ErrorCase(w, required, TypeError, "should be an iterable of Tensors or dicts", desc="a bare tensor"),
            ErrorCase([w, w], required, UserWarning, "a parameter group with duplicate parameters"),
            ErrorCase(
                [{"params": w}, {"params": w}],
                required,
                ValueError,
                "some parameters appear in more than one parameter group",
            ),
            ErrorCase(None, {**required, "lr": torch.tensor([1e-3, 1e-3])}, ValueError, "Tensor lr must be 1-element"),
            ErrorCase([("weight", w), w2], required, ValueError, "all optimizer params should be with/without names"),
            ErrorCase(
                [{"params": [w], "lr": 1e-2}, {"params": [("weight", w2)]}],
                required,
                ValueError,
                "all optimizer param groups should be with/without names",
            ),
            ErrorCase([w], {**required, "lr": -1.0}, ValueError, "lr"),
            ErrorCase([sparse], required, RuntimeError, "sparse", on="step"),
        ]
        if not complex_ok:
            z = torch.nn.Parameter(torch.randn(2, 2, dtype=torch.complex64))
            cases += [
                ErrorCase([w, z], required, ValueError, f"{name} does not support complex parameters"),
                ErrorCase(
                    [{"params": [w]}, {"params": [z], "lr": 1e-3}],
                    required,
                    ValueError,
                    f"{name} does not support complex parameters",
                ),
            ]
        return cases

    return make


def _with(base: Callable[[], list[ErrorCase]], *extra: Callable[[], ErrorCase]) -> Callable[[], list[ErrorCase]]:
    return lambda: base() + [make() for make in extra]


def _bad(kwargs: dict[str, Any], match: str, params_shape=(2, 2)) -> Callable[[], ErrorCase]:
    return lambda: ErrorCase([torch.nn.Parameter(torch.randn(*params_shape))], kwargs, ValueError, match)


# --- the registry ---------------------------------------------------------------------------------

TORCH_FLAGS = ("foreach", "differentiable", "maximize", "capturable")
SOFTSIGNUM_SCHEDULE = ("total_steps", "alpha_sign", "eps", "tmax", "newton_iters")
SOFTMUON_SCHEDULE = (*SOFTSIGNUM_SCHEDULE, "schedule_source")
AUX_LR = "by design: 1-D parameters of a Muon-family (routed) optimizer follow the auxiliary AdamW's lr"
K = {"total_steps": 20}

ENTRIES: dict[str, Entry] = {}


def _register(entry: Entry) -> None:
    ENTRIES[entry.name] = entry


_register(
    Entry(
        "AdamW",
        _info(
            AdamW,
            _inputs(
                ({}, "default"),
                ({"lr": 1e-2}, "non-default lr"),
                ({"weight_decay": 0.0}, "no weight decay"),
                ({"betas": (0.8, 0.9), "eps": 1e-6}, "betas and eps"),
            ),
            supported_impls=("foreach",),
            not_og_supported_flags=TORCH_FLAGS,
            supports_complex=True,
        ),
        errors=_common_errors("AdamW", {}, complex_ok=True),
        default_weight_decay=0.01,
    )
)

_register(
    Entry(
        "Signum",
        _info(
            Signum,
            _inputs(
                ({}, "default"),
                ({"lr": 1e-2}, "non-default lr"),
                ({"lr": torch.tensor(1e-3)}, "tensor lr"),
                ({"weight_decay": 0.0}, "no weight decay"),
                ({"momentum": 0.0}, "no momentum"),
                ({"nesterov": True, "weight_decay": 0.5}, "nesterov"),
            ),
            supported_impls=("foreach",),
            not_og_supported_flags=("foreach", "step"),
            supports_complex=False,
        ),
        errors=_with(_common_errors("Signum", {}), _bad({"momentum": 1.0}, "invalid momentum")),
        default_weight_decay=0.03,
    )
)

_register(
    Entry(
        "SGD",
        _info(
            SGD,
            _inputs(
                ({}, "default"),
                ({"lr": 1e-2, "weight_decay": 0.0}, "non-default lr, no weight decay"),
                ({"lr": torch.tensor(1e-3)}, "tensor lr"),
                ({"momentum": 0.0}, "no momentum"),
                ({"nesterov": True}, "nesterov"),
            ),
            supported_impls=("foreach",),
            not_og_supported_flags=("foreach",),
            supports_complex=False,
        ),
        errors=_with(_common_errors("SGD", {}), _bad({"momentum": -0.5}, "invalid momentum")),
        default_weight_decay=5e-3,
    )
)

_register(
    Entry(
        "SoftSignum",
        _info(
            SoftSignum,
            _inputs(
                _budget(SIGN),
                _budget(SIGN, "nesterov, lr 1e-2, momentum 0.5", lr=1e-2, momentum=0.5, nesterov=True),
                _budget(SOFT_FROM_1),
                _budget(SOFT_FROM_1, "nesterov, no weight decay", nesterov=True, weight_decay=0.0),
                _budget(SWITCH_AT_4),
                _budget(
                    SWITCH_AT_4,
                    "one schedule per group, tmax 50, no weight decay",
                    schedule_scope="group",
                    tmax=50.0,
                    weight_decay=0.0,
                ),
                _budget(SWITCH_AT_16, "nesterov", nesterov=True),
                _budget(SWITCH_AT_4, "tensor lr", lr=torch.tensor(1e-3)),
            ),
            supported_impls=("foreach",),
            not_og_supported_flags=("foreach", "schedule_scope"),
            supports_complex=False,
        ),
        errors=_with(
            _common_errors("SoftSignum", K),
            _bad({"total_steps": 0}, "total_steps"),
            _bad({**K, "alpha_sign": 1.5}, "invalid alpha_sign"),
        ),
        default_weight_decay=0.03,
        constructor_keys=SOFTSIGNUM_SCHEDULE,
    )
)

_register(
    Entry(
        "HardSwitchSign",
        _info(
            HardSwitchSign,
            _inputs(
                _budget(SIGN),
                _budget(SOFT_FROM_1, "nesterov", nesterov=True),
                _budget(SWITCH_AT_4, "no weight decay", weight_decay=0.0),
                _budget(SWITCH_AT_4, "switch_scale 0.3", switch_scale=0.3),
                _budget(SWITCH_AT_16, "lr 1e-2", lr=1e-2),
                _budget(SWITCH_AT_4, "tensor lr", lr=torch.tensor(1e-3)),
            ),
            supported_impls=("foreach",),
            not_og_supported_flags=("foreach",),
            supports_complex=False,
        ),
        errors=_with(_common_errors("HardSwitchSign", K), _bad({**K, "switch_scale": 0.0}, "invalid switch_scale")),
        default_weight_decay=0.03,
        constructor_keys=("total_steps", "alpha_sign"),
    )
)

_register(
    Entry(
        "Muon",
        _info(
            Muon,
            _inputs(
                ({}, "default"),
                ({"lr": 0.05, "nesterov": False, "momentum": 0.9}, "heavy ball"),
                ({"weight_decay": 0.0, "aux_weight_decay": 0.0}, "no weight decay"),
                ({"lr": torch.tensor(0.02)}, "tensor lr"),
                ({"shape_scale": "flattened", "aux_lr": 3e-3}, "variants"),
            ),
            supported_impls=(),
            not_og_supported_flags=("shape_scale", "ns_dtype"),
            supports_complex=False,
        ),
        errors=_with(
            _common_errors("Muon", {}),
            _bad({"ns_dtype": "half"}, "invalid ns_dtype"),
            lambda: ErrorCase(
                [{"params": [torch.nn.Parameter(torch.randn(3))], "use_muon": True}], {}, ValueError, "matrices only"
            ),
        ),
        default_weight_decay=0.01,
        by_design={"test_param_groups_lr": AUX_LR},
    )
)

_register(
    Entry(
        "SoftMuon",
        _info(
            SoftMuon,
            _inputs(
                _budget(SIGN),
                _budget(SOFT_FROM_1, "accurate soft polar map", soft_ns_steps=None),
                _budget(SWITCH_AT_4, "no weight decay", weight_decay=0.0, aux_weight_decay=0.0),
                _budget(
                    SWITCH_AT_4,
                    "schedule from the Nesterov input, heavy ball",
                    schedule_source="nesterov",
                    nesterov=False,
                ),
                _budget(SWITCH_AT_16),
                _budget(SWITCH_AT_4, "tensor lr", lr=torch.tensor(0.02)),
            ),
            supported_impls=(),
            not_og_supported_flags=("shape_scale", "ns_dtype", "schedule_source", "schedule_scope"),
            supports_complex=False,
        ),
        errors=_with(
            _common_errors("SoftMuon", K),
            _bad({"total_steps": -1}, "total_steps"),
            _bad({**K, "soft_ns_steps": 0}, "invalid soft_ns_steps"),
        ),
        default_weight_decay=0.01,
        constructor_keys=SOFTMUON_SCHEDULE,
        by_design={"test_param_groups_lr": AUX_LR},
    )
)

_register(
    Entry(
        "RoutedLion",
        _info(
            RoutedLion,
            _inputs(
                ({}, "default"),
                ({"betas": (0.8, 0.95)}, "betas"),
                ({"weight_decay": 0.1}, "weight decay"),
                ({"lr": torch.tensor(1e-4)}, "tensor lr"),
                ({"aux_lr": 3e-3}, "aux lr"),
            ),
            supported_impls=(),
            not_og_supported_flags=(),
            supports_complex=False,
        ),
        errors=_common_errors("RoutedLion", {}),
        default_weight_decay=0.0,
        by_design={"test_param_groups_lr": AUX_LR},
    )
)


def effective_weight_decay(entry: Entry, kwargs: Mapping[str, Any]) -> float:
    """The decoupled weight decay a 2-D parameter gets from ``kwargs`` (optbench's defaults are not 0)."""
    return float(kwargs.get("weight_decay", entry.default_weight_decay))
