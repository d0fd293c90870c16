"""Sweep files: the ``optimizers`` list, each optimizer's ``fixed``/``search`` overrides and ``branch_from``.

Part of the validation of a sweep file (``harness.sweep.schema``, which reads the rest): every
optimizer registered (or a plugin) and listed once; every hyperparameter it fixes or searches one of
the optimizer's own, a searched range of a kind the registry knows with valid bounds; a
``branch_from`` naming the optimizer of the sweep that this one is before its switch. A task entry's
``hparams`` overrides are read by the same :func:`read_overrides`. Errors name the file, the line and
the key (``harness.sweep.yamlfile``). The registries import torch: called only after the plain YAML
checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.errors import UserError
from harness.sweep.expand import Optimizers
from harness.sweep.yamlfile import _Checker, _where

OPTIMIZER_SCHEMA: dict[str, str] = {
    "name": "registered optimizer name",
    "fixed": "hyperparameters held fixed (removed from the search space)",
    "search": "hyperparameter -> [low, high] (same kind as the registry's) or {log|uniform|one_minus_log: "
    "[low, high]} or {choices: [...]}; ranges are in the hyperparameter's own units",
    "branch_from": "the optimizer this one is before its switch (softsignum: signum, softmuon: muon, hardswitchsign: "
    "signum), also in the sweep: this optimizer takes that one's tuned configuration for the "
    "hyperparameters they share, and every run of it starts from that optimizer's checkpoint at "
    "S = floor(alpha_sign K) (same seed and configuration) and runs only S+1..K. Its own "
    "hyperparameters (e.g. alpha_sign as {choices: [...]}) are tuned over those branches",
}


def read(chk: _Checker, value: Any) -> Optimizers:
    """The sweep's ``optimizers``: each one registered (or a plugin), listed once, with valid
    ``fixed``/``search`` overrides and a valid ``branch_from``."""
    from harness import plugins

    opt_list = chk.name_list(value, ("optimizers",), "optimizers")
    overrides: dict[str, tuple[dict, dict]] = {}
    index: dict[str, int] = {}
    branches: dict[str, str] = {}  # optimizer -> the optimizer it branches from
    specs: dict[str, Any] = {}  # optimizer -> its OptimizerSpec (built-in or plugin)
    for i, item in enumerate(opt_list):
        p = ("optimizers", i)
        if isinstance(item, str):
            item = {"name": item}
        chk.keys(item, p, OPTIMIZER_SCHEMA, "an optimizer entry", required=("name",))
        name = item["name"]
        try:
            specs[name] = plugins.optimizer(str(name))
        except UserError as exc:
            raise chk.error(p + ("name",) if (p + ("name",)) in chk.lines else p, f"'{_where(p)}': {exc}") from None
        if name in overrides:
            raise chk.error(p, f"optimizer {name!r} is listed twice in 'optimizers'")
        overrides[name] = read_overrides(chk, specs[name], item, p)
        index[name] = i
        if "branch_from" in item:
            branches[name] = item["branch_from"]
    _check_branches(chk, branches, index, specs)
    return Optimizers(overrides=overrides, index=index, branches=branches, specs=specs)


def _check_branches(chk: _Checker, branches: Mapping[str, str], opt_index: Mapping[str, int], registry) -> None:
    """``branch_from`` names an optimizer of the sweep that the branching optimizer *is* before its
    switch (a fact of its registry spec), and that does not branch itself."""
    for name, parent in branches.items():
        where = ("optimizers", opt_index[name], "branch_from")
        declared = registry[name].branch_from
        if declared is None:
            import optimizers

            can = ", ".join(sorted(k for k, v in optimizers.REGISTRY.items() if v.branch_from))
            raise chk.error(
                where,
                f"optimizer {name!r} cannot branch: it is not another optimizer for its first steps "
                f"(optimizers that can: {can})",
            )
        if parent != declared:
            raise chk.error(
                where,
                f"'{_where(where)}': {name} can branch only from {declared!r} (it is {declared} "
                f"before its switch), not from {parent!r}",
            )
        if parent not in opt_index:
            raise chk.error(
                where,
                f"'{_where(where)}': {name} branches from {parent!r}, which the sweep does not run; "
                f"add {parent} to 'optimizers'",
            )
        if parent in branches:
            raise chk.error(
                where, f"'{_where(where)}': {parent} branches itself; a branch needs a parent that runs whole"
            )


def read_overrides(chk: _Checker, spec, item: Mapping, path: tuple) -> tuple[dict, dict]:
    """Validate ``fixed`` and ``search`` of one optimizer override against the registry."""
    from optimizers._base import Categorical, LogUniform, OneMinusLogUniform, Uniform

    fixed = item.get("fixed", {}) or {}
    search = item.get("search", {}) or {}
    for key, what in (("fixed", fixed), ("search", search)):
        if not isinstance(what, dict):
            raise chk.error(path + (key,), f"'{_where(path + (key,))}' must be a mapping of hyperparameters")
        for hp in what:
            if hp not in spec.defaults:
                raise chk.error(
                    path + (key, hp),
                    f"unknown hyperparameter '{hp}' for optimizer '{spec.name}' at "
                    f"'{_where(path + (key,))}'; valid: {', '.join(sorted(spec.defaults))}",
                )
    both = sorted(set(fixed) & set(search))
    if both:
        raise chk.error(
            path + ("search", both[0]), f"hyperparameter '{both[0]}' is both fixed and searched at '{_where(path)}'"
        )
    out_search: dict[str, Any] = {}
    kinds = {"log": LogUniform, "uniform": Uniform, "one_minus_log": OneMinusLogUniform}
    for hp, rng in search.items():
        p = path + ("search", hp)
        base = spec.search_space.get(hp)
        if isinstance(rng, dict):
            if len(rng) != 1 or next(iter(rng)) not in (*kinds, "choices"):
                raise chk.error(
                    p,
                    f"'{_where(p)}' must be one of {{log: [lo, hi]}}, {{uniform: [lo, hi]}}, "
                    "{one_minus_log: [lo, hi]}, {choices: [...]}",
                )
            kind, rng = next(iter(rng.items()))
            p = p + (kind,)
        elif isinstance(base, Categorical):
            kind = "choices"
        elif isinstance(base, (LogUniform, Uniform, OneMinusLogUniform)):
            kind = {LogUniform: "log", Uniform: "uniform", OneMinusLogUniform: "one_minus_log"}[type(base)]
        else:
            raise chk.error(
                p,
                f"'{hp}' is not in optimizer '{spec.name}''s search space "
                f"({', '.join(sorted(spec.search_space)) or 'empty'}); give its kind, e.g. {{log: [lo, hi]}}",
            )
        if kind == "choices":
            if not isinstance(rng, list) or not rng:
                raise chk.error(p, f"'{_where(p)}' must be a non-empty list of choices, got {rng!r}")
            out_search[hp] = Categorical(tuple(tuple(c) if isinstance(c, list) else c for c in rng))
            continue
        if not isinstance(rng, list) or len(rng) != 2:
            raise chk.error(p, f"'{_where(p)}' must be a range [low, high], got {rng!r}")
        low, high = (chk.number(v, p + (k,)) for k, v in enumerate(rng))
        if not low < high:
            raise chk.error(p, f"'{_where(p)}' needs low < high, got [{low}, {high}]")
        if kind == "log" and low <= 0:
            raise chk.error(p, f"'{_where(p)}' is log-uniform: bounds must be > 0, got [{low}, {high}]")
        if kind == "one_minus_log":
            # The user writes the value's own range (momentum [0.9, 0.999]); the record holds 1 - x.
            if not high < 1:
                raise chk.error(
                    p, f"'{_where(p)}' samples 1 - x log-uniformly: bounds must be < 1, got [{low}, {high}]"
                )
            out_search[hp] = OneMinusLogUniform(1.0 - high, 1.0 - low)
        else:
            out_search[hp] = kinds[kind](low, high)
    return dict(fixed), out_search
