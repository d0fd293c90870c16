"""Optimizer registry: name -> ``OptimizerSpec``. One module per optimizer, listed explicitly."""

from __future__ import annotations

from optimizers import adamw, hardswitchsign, muon, sgd, signum, softmuon, softsignum
from optimizers._base import ROLES, OptimizerSpec

REGISTRY: dict[str, OptimizerSpec] = {
    "adamw": adamw.SPEC,
    "signum": signum.SPEC,
    "softsignum": softsignum.SPEC,
    "hardswitchsign": hardswitchsign.SPEC,
    "muon": muon.SPEC,
    "softmuon": softmuon.SPEC,
    "sgd": sgd.SPEC,
}


def get(name: str) -> OptimizerSpec:
    """The registered spec, or ``KeyError`` naming the known optimizers."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown optimizer {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


__all__ = ["REGISTRY", "ROLES", "OptimizerSpec", "get"]
