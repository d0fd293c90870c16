"""Helpers the generic checks share: inputs with the implementation flags toggled, building an
optimizer from an entry, nested equality with torch's default tolerances, and a tracker that
compares two runs step by step and re-aligns them after each comparison (so a tolerance applies per
step, not to an accumulated drift)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch

from torch_generic.registry import Entry, OptimizerInput

CLIQUEY = ("foreach", "fused", "differentiable")


def inputs(entry: Entry, dtype: torch.dtype = torch.float32) -> list[Any]:
    """The entry's inputs, fresh (tensor lrs are new tensors on every call)."""
    return entry.info.optim_inputs_func(device="cpu", dtype=dtype)


def inputs_with_impls(entry: Entry, dtype: torch.dtype = torch.float32, skip: Iterable[str] = ()) -> list[Any]:
    """Every input once with all implementation flags off, then once per flag switched on (the
    flags are alternatives, never combined), as the upstream helper of the same purpose."""
    flags = [f for f in entry.info.supported_impls if f not in skip and f != "fused"]
    out = []
    for inp in inputs(entry, dtype):
        base = copy.deepcopy(inp.kwargs)
        base.update({f: False for f in flags})
        out.append(OptimizerInput(params=None, kwargs=base, desc=inp.desc))
        for flag in flags:
            kwargs = copy.deepcopy(base)
            kwargs[flag] = True
            out.append(OptimizerInput(params=None, kwargs=kwargs, desc=f"{inp.desc} & {flag}"))
    return out


def build(entry: Entry, params: Any, kwargs: dict[str, Any]) -> torch.optim.Optimizer:
    return entry.info.optim_cls(params, **kwargs)


def take_step(entry: Entry, optimizer: torch.optim.Optimizer, closure) -> Any:
    """One step the way the upstream tests take it: closure first, then ``step()`` (no optbench
    optimizer requires a closure)."""
    if entry.info.step_requires_closure:
        return optimizer.step(closure)
    loss = closure()
    optimizer.step()
    return loss


def assert_same(
    actual: Any, expected: Any, *, rtol: float | None = None, atol: float | None = None, where: str = ""
) -> None:
    """Nested equality: tensors by ``torch.testing.assert_close`` (dtype checked; default
    tolerances unless given), containers item by item, anything else by ``==``."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"{where}: {type(actual).__name__} is not a tensor"
        torch.testing.assert_close(
            actual, expected, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{where}: {m}"
        )
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (
            f"{where}: keys {sorted(map(str, actual))} != {sorted(map(str, expected))}"
        )
        for key in expected:
            assert_same(actual[key], expected[key], rtol=rtol, atol=atol, where=f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), (
            f"{where}: {actual!r} != {expected!r}"
        )
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, rtol=rtol, atol=atol, where=f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


class Tracker:
    """Record tensors of a reference run, then check a second run against them in order; each
    checked tensor is overwritten with the reference value."""

    def __init__(self, rtol: float | None = None, atol: float | None = None):
        self.rtol, self.atol = rtol, atol
        self.pending: list[torch.Tensor] = []

    def add(self, tensor: torch.Tensor) -> None:
        self.pending.append(tensor.detach().clone())

    def check_and_align(self, tensor: torch.Tensor, where: str) -> None:
        assert self.pending, f"{where}: nothing recorded to compare against"
        reference = self.pending.pop(0)
        assert_same(tensor, reference, rtol=self.rtol, atol=self.atol, where=where)
        with torch.no_grad():
            tensor.copy_(reference)

    def all_checked(self) -> bool:
        return not self.pending


def named(params: list[torch.Tensor], is_named: bool) -> list[Any]:
    return [(f"name{i}", p) for i, p in enumerate(params)] if is_named else params


def without_param_names(state_dict: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(state_dict)
    for group in out["param_groups"]:
        group.pop("param_names", None)
    return out
