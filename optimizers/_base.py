"""Shared pieces of the optimizer registry: the spec record, search-space records, hyperparameter
validation and the weight-decay grouping rule.

Every optimizer module (``optimizers/<name>.py``) holds, in order: a docstring naming the paper and
what differs from its baseline, ``DEFAULTS``, ``SEARCH_SPACE``, the optimizer class, ``build`` and
``SPEC``. ``optimizers.REGISTRY`` lists the modules' ``SPEC`` explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.vocab import ROLES  # the parameter roles tasks declare (one vocabulary, torch-free)


@dataclass(frozen=True)
class LogUniform:
    """Sample ``x`` log-uniformly in [low, high]."""

    low: float
    high: float

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class OneMinusLogUniform:
    """Sample ``1 - x`` log-uniformly in [low, high] (momentum-like values close to 1)."""

    low: float  # bounds on 1 - x
    high: float

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= 1.0 - value <= self.high


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class Categorical:
    choices: tuple

    def contains(self, value: Any) -> bool:
        return value in self.choices


Distribution = LogUniform | OneMinusLogUniform | Uniform | Categorical

# Tensor lists as torch._foreach_* kernels take them; their out-of-place forms return tuples.
Tensors = list[torch.Tensor] | tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class OptimizerSpec:
    """A registered optimizer: plain data plus a build function.

    ``build(groups, hparams, total_steps)`` merges ``hparams`` over ``defaults`` (unknown keys are
    rejected with the valid names), validates the values and returns one ``torch.optim.Optimizer``.
    ``groups`` maps a role (see ``ROLES``) to its parameters.
    """

    name: str
    summary: str
    defaults: Mapping[str, Any]
    search_space: Mapping[str, Distribution]
    build_fn: Callable[[Mapping[str, list[torch.nn.Parameter]], dict[str, Any], int], torch.optim.Optimizer]
    implementation: str = "foreach"  # recorded in result rows
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The registered optimizer this one *is* for steps 1..floor(alpha_sign * K) (softsignum and
    # hardswitchsign: "signum"; softmuon: "muon"), or None. Its checkpoint at step S starts this one
    # (``load_state_dict``, tested bit for bit), and a SoftX-vs-X comparison pairs the two.
    branch_from: str | None = None

    def resolve(self, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``hparams``; unknown keys raise ``ValueError`` naming valid ones."""
        hparams = dict(hparams or {})
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for optimizer "
                f"'{self.name}'; valid: {', '.join(sorted(self.defaults))}"
            )
        merged = dict(self.defaults)
        for key, value in hparams.items():
            default = self.defaults[key]
            # Keep tuples as tuples (YAML/JSON give lists) so configs hash and compare stably.
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            merged[key] = value
        return merged

    def build(
        self,
        groups: Mapping[str, Iterable[torch.nn.Parameter]],
        hparams: Mapping[str, Any] | None,
        total_steps: int,
    ) -> torch.optim.Optimizer:
        unknown_roles = sorted(set(groups) - set(ROLES))
        if unknown_roles:
            raise ValueError(f"unknown parameter role(s) {unknown_roles}; valid: {', '.join(ROLES)}")
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        resolved = self.resolve(hparams)
        trainable = {role: [p for p in params if p.requires_grad] for role, params in groups.items()}
        return self.build_fn(trainable, resolved, total_steps)


# --- validation helpers (each raises ValueError naming the parameter) -------------------------


def check_nonneg(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid {name}: {value!r} (must be a finite number >= 0)")


def check_lr(name: str, value: Any) -> None:
    """A learning rate: a finite number >= 0, or a 1-element real tensor holding one (as torch.optim:
    LR schedulers write into it in place and compiled steps read it without recompiling).
    A multi-element tensor is refused with torch's own words."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor lr must be 1-element (invalid {name}: a tensor of shape {tuple(value.shape)})")
        if value.is_complex():
            raise ValueError(f"invalid {name}: {value!r} (must be real)")
        value = value.item()
    check_nonneg(name, value)


def check_real(optimizer: str, params: Iterable[Any]) -> None:
    """``ValueError`` naming the optimizer for a complex parameter (optbench's update rules are
    defined on real coordinates; a complex parameter can be optimised as ``torch.view_as_real(p)``)."""
    for p in params:
        tensor = p[1] if isinstance(p, tuple) else p
        if isinstance(tensor, torch.Tensor) and tensor.is_complex():
            raise ValueError(
                f"{optimizer} does not support complex parameters (got a {tensor.dtype} tensor of shape "
                f"{tuple(tensor.shape)}); optimize a real view instead, e.g. torch.view_as_real(p)"
            )


def scalar_dtype() -> torch.dtype:
    """The dtype of tensor step counters: float32, or float64 when that is the default dtype (as torch.optim)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def check_positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"invalid {name}: {value!r} (must be a finite number > 0)")


def check_unit_interval(name: str, value: Any, *, closed_right: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value
    ok = ok and (value <= 1.0 if closed_right else value < 1.0)
    if not ok:
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"invalid {name}: {value!r} (must lie in {interval})")


def check_betas(name: str, value: Any) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"invalid {name}: {value!r} (must be a pair (beta1, beta2))")
    for i, beta in enumerate(value):
        check_unit_interval(f"{name}[{i}]", beta)


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"invalid {name}: {value!r} (must be true or false)")


def check_int(name: str, value: Any, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"invalid {name}: {value!r} (must be an integer >= {minimum})")


def add_param_group_unfilled(optimizer: torch.optim.Optimizer, param_group: dict[str, Any]) -> dict[str, Any]:
    """torch's ``Optimizer.add_param_group`` (its checks and normalisation: a tensor or generator of
    params, named parameters, leaf tensors, duplicates, with/without names) without filling in
    ``optimizer.defaults``: for optimizers whose groups are of two kinds with different keys (a
    Muon group and an auxiliary AdamW group), each filled by the caller. Returns the appended group."""
    defaults, optimizer.defaults = optimizer.defaults, {}
    try:
        torch.optim.Optimizer.add_param_group(optimizer, param_group)
    finally:
        optimizer.defaults = defaults
    return optimizer.param_groups[-1]


def checked_group(optimizer: torch.optim.Optimizer, check: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run ``check`` on the group just appended; if it raises, take the group out again (an invalid
    group never stays half-added) and re-raise."""
    group = optimizer.param_groups[-1]
    try:
        check_real(type(optimizer).__name__, group["params"])
        check(group)
    except Exception:
        optimizer.param_groups.pop()
        raise
    return group


# --- weight-decay grouping ---------------------------------------------------------------------


def decay_groups(params: Iterable[torch.nn.Parameter], weight_decay: float, **extra: Any) -> list[dict]:
    """Split ``params`` into a decayed group (ndim >= 2) and a non-decayed group (1-D and scalars).

    Weight decay never touches biases and norm gains (decoupled decay, never on 1-D: docs/optimizers.md#conventions).
    Empty groups are dropped; ``extra`` keys are copied into both groups.
    """
    params = list(params)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    out = []
    if decay:
        out.append({"params": decay, "weight_decay": weight_decay, **extra})
    if no_decay:
        out.append({"params": no_decay, "weight_decay": 0.0, **extra})
    return out


def all_params(groups: Mapping[str, Iterable[torch.nn.Parameter]]) -> list[torch.nn.Parameter]:
    """All parameters of all roles, in role order, each once."""
    seen: set[int] = set()
    out = []
    for role in ROLES:
        for p in groups.get(role, ()):
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out
