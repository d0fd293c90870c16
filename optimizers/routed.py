"""A routed optimizer: a plugin optimizer class on the hidden matrices and an auxiliary AdamW on every
other parameter, as one ``torch.optim.Optimizer``. It is what ``harness.plugins`` builds for a class
that declares ``optbench_routing = "matrix"`` (Muon-like methods, which are defined for hidden
weight matrices only; the built-in Muon routes the same way, see ``optimizers/muon.py``).

One optimizer object, not two side by side: ``param_groups`` holds every group (each tagged
``route: "main"`` or ``"aux"``), ``state`` every parameter's state, ``state_dict()`` is torch's one
format, and hooks, ``add_param_group``, LR schedulers, ``zero_grad``, deepcopy and pickling behave as
for any torch optimizer. Inside, an instance of the plugin class and a ``torch.optim.AdamW`` share
those very group dicts and that state (rebound after every ``load_state_dict`` / unpickling), and
``step()`` runs their update rules without their step hooks, so the routed optimizer's own hooks
and torch's global ones fire once per step.

Routing: a param group with ``route`` is taken as it is; one without is split like Muon's, its
parameters with ``ndim >= 2`` to the plugin class, the rest to the AdamW with the ``aux_*`` values
(the group's ``aux_lr`` ... if given, else the constructor's). Complex parameters and sparse
gradients are refused (the plugin class may not know how to take them).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from optimizers._base import add_param_group_unfilled, check_betas, check_lr, check_nonneg, check_real

AUX_DEFAULTS: dict[str, Any] = {"aux_lr": 1e-3, "aux_betas": (0.9, 0.999), "aux_eps": 1e-8, "aux_weight_decay": 0.01}
AUX_KEYS = {"lr": "aux_lr", "betas": "aux_betas", "eps": "aux_eps", "weight_decay": "aux_weight_decay"}
ROUTES = ("main", "aux")


def unhooked_step(optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
    """``optimizer``'s own ``step`` without torch's hook wrapper (the routed optimizer's wrapper
    already ran the global and its own hooks)."""
    fn = inspect.unwrap(type(optimizer).step, stop=lambda f: not getattr(f, "hooked", False))
    return lambda: fn(optimizer)


class RoutedOptimizer(torch.optim.Optimizer):
    """``main_cls`` (a ``torch.optim.Optimizer`` subclass; a class attribute of a subclass, or the
    ``main_cls`` argument) on the matrices, ``torch.optim.AdamW`` on the rest. ``main_kwargs`` go to
    ``main_cls``; ``aux_*`` configure the AdamW."""

    main_cls: type[torch.optim.Optimizer] | None = None

    def __init__(
        self,
        params,
        main_cls: type[torch.optim.Optimizer] | None = None,
        *,
        aux_lr: float | Tensor = AUX_DEFAULTS["aux_lr"],
        aux_betas: tuple[float, float] = AUX_DEFAULTS["aux_betas"],
        aux_eps: float = AUX_DEFAULTS["aux_eps"],
        aux_weight_decay: float = AUX_DEFAULTS["aux_weight_decay"],
        **main_kwargs: Any,
    ):
        main_cls = main_cls if main_cls is not None else type(self).main_cls
        if not (isinstance(main_cls, type) and issubclass(main_cls, torch.optim.Optimizer)):
            raise TypeError(f"main_cls must be a torch.optim.Optimizer subclass, got {main_cls!r}")
        if "lr" in main_kwargs:
            check_lr("lr", main_kwargs["lr"])
            main_kwargs["lr"] = _zero_dim(main_kwargs["lr"])
        check_lr("aux_lr", aux_lr)
        check_betas("aux_betas", aux_betas)
        check_nonneg("aux_eps", aux_eps)
        check_nonneg("aux_weight_decay", aux_weight_decay)
        self._main_cls = main_cls
        self._main_kwargs = dict(main_kwargs)
        self._aux_kwargs: dict[str, Any] = {
            "lr": aux_lr,
            "betas": tuple(aux_betas),
            "eps": aux_eps,
            "weight_decay": aux_weight_decay,
        }
        self._parts: dict[str, torch.optim.Optimizer | None] = {"main": None, "aux": None}
        super().__init__(params, {**main_kwargs, **{AUX_KEYS[k]: v for k, v in self._aux_kwargs.items()}})

    @property
    def main(self) -> torch.optim.Optimizer | None:
        """The plugin class's instance (None while no matrix has been added). It shares this
        optimizer's groups and state: checkpoint through this optimizer's ``state_dict()``."""
        return self._parts["main"]

    @property
    def aux(self) -> torch.optim.AdamW | None:
        """The auxiliary AdamW (None while every parameter is a matrix)."""
        aux = self._parts["aux"]
        assert aux is None or isinstance(aux, torch.optim.AdamW)  # only _add_to_part builds it
        return aux

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        for part in self._route(param_group):
            if isinstance(part["params"], Tensor):
                part["params"] = [part["params"]]
            elif not isinstance(part["params"], set):  # torch refuses sets, saying why
                part["params"] = list(part["params"])
                check_real(type(self).__name__, part["params"])
            group = add_param_group_unfilled(self, part)
            try:
                self._add_to_part(group)
            except Exception:
                self.param_groups.pop()
                raise

    def _route(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        if "route" in group:
            if group["route"] not in ROUTES:
                raise ValueError(f"invalid route: {group['route']!r}; valid: {', '.join(map(repr, ROUTES))}")
            return [group]
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        is_matrix = [(p[1] if isinstance(p, tuple) else p).ndim >= 2 for p in params]
        parts = []
        if any(is_matrix) or all(is_matrix):
            main = {k: v for k, v in group.items() if k != "params" and not k.startswith("aux_")}
            parts.append({**main, "params": [p for p, m in zip(params, is_matrix) if m], "route": "main"})
        if not all(is_matrix):
            aux = {key: group.get(name, self._aux_kwargs[key]) for key, name in AUX_KEYS.items()}
            parts.append({**aux, "params": [p for p, m in zip(params, is_matrix) if not m], "route": "aux"})
        return parts

    def _add_to_part(self, group: dict[str, Any]) -> None:
        if "lr" in group:
            group["lr"] = _zero_dim(group["lr"])
        route = group["route"]
        inner = self._parts[route]
        if inner is None:  # the first group of its kind builds the inner optimizer around it
            if route == "main":
                inner = self._main_cls([group], **self._main_kwargs)
            else:
                inner = torch.optim.AdamW([group], **{k: v for k, v in self._aux_kwargs.items() if k not in group})
            self._parts[route] = inner
        else:
            inner.add_param_group(group)
        self._bind()

    def _bind(self) -> None:
        """Point the inner optimizers at this optimizer's group dicts and state (their own
        ``__setstate__`` fills keys an older state dict lacks, as after their own load)."""
        for route, inner in self._parts.items():
            if inner is not None:
                groups = [g for g in self.param_groups if g.get("route") == route]
                inner.__setstate__({"state": self.state, "param_groups": groups})

    def __getstate__(self) -> dict[str, Any]:
        return {
            **super().__getstate__(),
            "_main_cls": self._main_cls,
            "_main_kwargs": self._main_kwargs,
            "_aux_kwargs": self._aux_kwargs,
            "_parts": self._parts,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_parts" in self.__dict__:
            self._bind()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``; also takes the two-part ``{"main": ..., "aux": ...}`` state
        dicts optbench wrote before the routed optimizer was one optimizer."""
        if set(state_dict) == {"main", "aux"}:
            state_dict = _merge_two_part(state_dict)
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:  # evaluated once; both parts step on its gradients
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        for inner in self._parts.values():
            if inner is not None:
                unhooked_step(inner)()
        return loss

    def diagnostics(self) -> dict[str, float]:
        fn = getattr(self.main, "diagnostics", None)
        return fn() if fn is not None else {}


def _zero_dim(lr: Any) -> Any:
    """A 1-element tensor lr as a 0-d view of the same storage (as torch.optim's own optimizers take
    it: a plugin class may pass it straight to ``alpha=``; an LR scheduler's in-place write reaches it)."""
    return lr.reshape(()) if isinstance(lr, Tensor) and lr.dim() != 0 and lr.numel() == 1 else lr


def _merge_two_part(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``{"main": sd, "aux": sd or None}`` -> one state dict: main groups first, aux parameter
    indices shifted past main's, every group tagged with its route."""
    main, aux = copy.deepcopy(state_dict["main"]), copy.deepcopy(state_dict["aux"])
    groups = [{**g, "route": "main"} for g in main["param_groups"]]
    state = dict(main["state"])
    if aux is not None:
        offset = sum(len(g["params"]) for g in main["param_groups"])
        groups += [{**g, "params": [i + offset for i in g["params"]], "route": "aux"} for g in aux["param_groups"]]
        state.update({i + offset: s for i, s in aux["state"].items()})
    return {"state": state, "param_groups": groups}
