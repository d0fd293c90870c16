"""Search spaces <-> Optuna: how a hyperparameter record (``optimizers._base``) becomes Optuna
parameters and back, trial 0's defaults, the QMC design, and finite spaces.

Optuna parameter names equal hyperparameter names, except ``OneMinusLogUniform`` ones, which Optuna
sees as ``one_minus_<name>`` (it samples ``1 - x`` log-uniformly). Categorical choices that Optuna
cannot store (tuples) are stored as their JSON text (``choice_key``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Mapping
from typing import Any

from harness.sweep.plan import StudyPlan, jsonable

ONE_MINUS = "one_minus_"  # Optuna parameter name prefix for OneMinusLogUniform hparams


def choice_key(value: Any) -> Any:
    """Optuna categorical choices must be None/bool/int/float/str: encode anything else as JSON."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(jsonable(value))


def is_int(dist: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in (dist.low, dist.high))


def suggest(trial: Any, space: Mapping[str, Any]) -> dict[str, Any]:
    """Ask ``trial`` for one value per hyperparameter of ``space`` (optimizers._base records).

    LogUniform -> ``suggest_float(log=True)``; OneMinusLogUniform -> ``1 - x`` suggested
    log-uniformly under the name ``one_minus_<hp>``; Uniform -> ``suggest_float``; Categorical ->
    ``suggest_categorical``. Integer bounds give ``suggest_int``.
    """
    from optimizers._base import Categorical, LogUniform, OneMinusLogUniform, Uniform

    out: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, OneMinusLogUniform):
            out[name] = 1.0 - trial.suggest_float(ONE_MINUS + name, dist.low, dist.high, log=True)
        elif isinstance(dist, (LogUniform, Uniform)):
            log = isinstance(dist, LogUniform)
            if is_int(dist):
                out[name] = trial.suggest_int(name, dist.low, dist.high, log=log)
            else:
                out[name] = trial.suggest_float(name, dist.low, dist.high, log=log)
        elif isinstance(dist, Categorical):
            keys = [choice_key(c) for c in dist.choices]
            picked = trial.suggest_categorical(name, keys)
            out[name] = dist.choices[keys.index(picked)]
        else:
            raise TypeError(f"unknown search-space record {dist!r} for {name}")
    return out


def defaults_outside(space: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """The searched hyperparameters whose optimizer default lies outside ``space``, each as
    ``"lr=0.001 not in [1e-09, 2e-09]"`` (empty when trial 0 can run the defaults)."""
    from optimizers._base import Categorical, OneMinusLogUniform

    out = []
    for name, dist in space.items():
        value = defaults[name]
        if dist.contains(value):
            continue
        if isinstance(dist, Categorical):
            where = f"choices {list(dist.choices)}"
        elif isinstance(dist, OneMinusLogUniform):
            where = f"[{1.0 - dist.high:g}, {1.0 - dist.low:g}]"
        else:
            where = f"[{dist.low:g}, {dist.high:g}]"
        out.append(f"{name}={value!r} not in {where}")
    return out


def default_params(space: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any] | None:
    """Optuna parameters of trial 0: the optimizer's defaults, or None when a default lies outside a
    narrowed ``space`` (``defaults_outside``). Trial 0 is then sampled like every other trial: a
    sweep never runs a configuration outside the space its file declares, and every optimizer
    still gets the same number of trials."""
    if defaults_outside(space, defaults):
        return None
    return projected_defaults(space, defaults)


def projected_defaults(space: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults projected into ``space`` (nearest bound; a categorical without the default, its
    first choice): a valid point of the space, used to validate a plan before anything runs."""
    from optimizers._base import Categorical, OneMinusLogUniform

    params: dict[str, Any] = {}
    for name, dist in space.items():
        value = defaults[name]
        if isinstance(dist, Categorical):
            keys = [choice_key(c) for c in dist.choices]
            key = choice_key(value)
            params[name] = key if key in keys else keys[0]
        elif isinstance(dist, OneMinusLogUniform):
            params[ONE_MINUS + name] = min(max(1.0 - float(value), dist.low), dist.high)
        else:
            clipped = min(max(value, dist.low), dist.high)
            params[name] = int(clipped) if is_int(dist) else float(clipped)
    return params


def hparams_from_params(
    params: Mapping[str, Any], space: Mapping[str, Any], fixed: Mapping[str, Any]
) -> dict[str, Any]:
    """The hyperparameters a finished trial ran with: its Optuna ``params`` decoded + ``fixed``."""
    from optimizers._base import Categorical, OneMinusLogUniform

    out = dict(fixed)
    for name, dist in space.items():
        if isinstance(dist, OneMinusLogUniform):
            out[name] = 1.0 - params[ONE_MINUS + name]
        elif isinstance(dist, Categorical):
            keys = [choice_key(c) for c in dist.choices]
            out[name] = dist.choices[keys.index(params[name])]
        else:
            out[name] = params[name]
    return out


def default_hparams(plan: StudyPlan) -> dict[str, Any]:
    """Hyperparameters of an untuned plan (the fixed values over the defaults), and the point every
    tuned plan is validated with before it runs: its defaults projected into the space, plus fixed
    values. (Trial 0 runs exactly the defaults only when they lie in the space: ``default_params``.)"""
    from harness import plugins

    spec = plugins.optimizer(plan.optimizer)
    if plan.trials == 0:
        return dict(plan.fixed)
    return hparams_from_params(projected_defaults(plan.space, spec.defaults), plan.space, plan.fixed)


def stable_seed(*parts: Any) -> int:
    """A 32-bit seed that depends on ``parts`` only (not on Python's hash randomisation)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


# ---------------------------------------------------------------------------------------------
# QMC: a configuration per slot index
# ---------------------------------------------------------------------------------------------


def qmc_params(space: Mapping[str, Any], seed: int, index: int) -> dict[str, Any]:
    """Optuna parameters of point ``index`` of a scrambled Sobol sequence over ``space`` (one
    dimension per hyperparameter, in name order; Owen-scrambled with ``seed``; scipy.stats.qmc,
    Sobol 1967 / Joe & Kuo 2008 direction numbers). A function of ``index`` alone, so a slot that is
    re-run after a crash, or run by another worker, gets the same configuration; Optuna's own
    QMCSampler instead hands out the next point per ask(), which interrupted sweeps shift."""
    import warnings

    from scipy.stats import qmc

    names = sorted(space)
    if not names:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "balance properties of Sobol' points require n = 2^m"
        point = qmc.Sobol(d=len(names), scramble=True, seed=seed).random(index + 1)[index]
    return {param_name(n, space[n]): unit_to_param(space[n], float(u)) for n, u in zip(names, point)}


def param_name(name: str, dist: Any) -> str:
    """The Optuna parameter name of hyperparameter ``name``."""
    from optimizers._base import OneMinusLogUniform

    return ONE_MINUS + name if isinstance(dist, OneMinusLogUniform) else name


def unit_to_param(dist: Any, u: float) -> Any:
    """Map ``u`` in [0, 1) to the Optuna parameter value of ``dist`` (the inverse CDF of the
    distribution Optuna would sample: log-uniform, uniform, or uniform over the choices)."""
    from optimizers._base import Categorical, LogUniform, OneMinusLogUniform

    u = min(max(u, 0.0), math.nextafter(1.0, 0.0))
    if isinstance(dist, Categorical):
        keys = [choice_key(c) for c in dist.choices]
        return keys[min(int(u * len(keys)), len(keys) - 1)]
    low, high = float(dist.low), float(dist.high)
    log = isinstance(dist, (LogUniform, OneMinusLogUniform))
    if is_int(dist):  # an integer range: every integer equally likely (log: rounded log-uniform)
        step = (
            round(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
            if log
            else int(dist.low) + int(u * (int(dist.high) - int(dist.low) + 1))
        )
        return min(max(int(step), int(dist.low)), int(dist.high))
    value = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if log else low + u * (high - low)
    return min(max(value, low), high)


# ---------------------------------------------------------------------------------------------
# Finite spaces (only choices and integer ranges): at most ``space_size`` distinct trials
# ---------------------------------------------------------------------------------------------


def space_size(space: Mapping[str, Any]) -> int | None:
    """How many distinct configurations ``space`` holds, or None when it is continuous (one
    float range makes repeats a probability-zero event). An empty space holds one."""
    from optimizers._base import Categorical

    size = 1
    for dist in space.values():
        if isinstance(dist, Categorical):
            size *= len(dist.choices)
        elif is_int(dist):
            size *= int(dist.high) - int(dist.low) + 1
        else:
            return None
    return size


def config_key(params: Mapping[str, Any]) -> str:
    """A canonical text of Optuna parameters: equal keys = the same configuration."""
    return json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True, default=str)


def unused_params(space: Mapping[str, Any], used: set[str], seed: int) -> dict[str, Any]:
    """A configuration of the finite ``space`` whose ``config_key`` is not in ``used``: the first of
    the space's configurations in an order shuffled by ``seed`` (deterministic for a given seed).
    Raises ValueError when every configuration is used (validation keeps trials <= space_size)."""
    from optimizers._base import Categorical

    names = sorted(space)
    axes = []
    for name in names:
        dist = space[name]
        if isinstance(dist, Categorical):
            axes.append([choice_key(c) for c in dist.choices])
        else:
            axes.append(list(range(int(dist.low), int(dist.high) + 1)))
    grid = [dict(zip([param_name(n, space[n]) for n in names], values)) for values in itertools.product(*axes)]
    random.Random(seed).shuffle(grid)
    for params in grid:
        if config_key(params) not in used:
            return params
    raise ValueError(f"every one of the {len(grid)} configurations of the space is used")
