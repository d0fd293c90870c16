"""Optimizers and tasks from outside optbench: by import path, by entry point, or from torch.optim.

One lookup for every place that turns a name into an optimizer or a task (the CLI, sweeps, the
training loop, the leaderboard), so a plugin goes through the same build/record path as a built-in:

``optimizer(name)`` / ``task(name)`` accept
  - a built-in name (``optimizers.REGISTRY`` / ``tasks.REGISTRY``);
  - ``pkg.module:ATTR``: an ``OptimizerSpec``, or any ``torch.optim.Optimizer`` subclass (wrapped,
    see ``wrap_optimizer_class``) / a ``TaskSpec``;
  - ``torch:NAME``: ``torch.optim.NAME`` (e.g. ``torch:RAdam``), wrapped the same way;
  - a name an installed package registers in the entry-point group ``optbench.optimizers`` /
    ``optbench.tasks`` (value ``pkg.module:ATTR``).
A name that more than one source provides (a built-in and an entry point, or two entry points), a
module that fails to import, a missing attribute or one of the wrong kind is a ``UserError`` (CLI:
exit 2) naming the module. Every run records where its optimizer and task came from and the
providing package's version (``Origin``; columns ``optimizer_origin`` ... ``task_version``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import UserError

if TYPE_CHECKING:  # torch is imported only where a class is wrapped
    from torch.optim import Optimizer

GROUPS = {"optimizer": "optbench.optimizers", "task": "optbench.tasks"}
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
TORCH_PREFIX = "torch:"
# A wrapped torch.optim class searches only its learning rate, log-uniformly in this range, unless a
# sweep entry gives its own ``search``: the range holds the usual defaults of SGD- to Adam-type methods.
DEFAULT_LR_RANGE = (1e-5, 1e-1)
DEFAULT_LR = 1e-3  # for a class whose lr has no default
# Constructor arguments that choose an implementation, not a hyperparameter: never searched or recorded.
IMPLEMENTATION_ARGS = frozenset({"params", "foreach", "fused", "capturable", "differentiable", "maximize"})


@dataclass(frozen=True)
class Origin:
    """Where an optimizer or task came from: ``kind`` is built-in, entry point, import path or
    torch.optim; ``source`` the distribution or module; ``version`` the providing package's."""

    kind: str
    source: str = ""
    version: str = ""

    def label(self) -> str:
        return self.kind if not self.source else f"{self.kind} {self.source}"


BUILT_IN = Origin("built-in")


# ----------------------------------------------------------------------------------- lookups


def optimizer(name: str) -> Any:
    """The ``OptimizerSpec`` called ``name`` (see the module docstring for the forms)."""
    return resolve("optimizer", name)[0]


def task(name: str) -> Any:
    """The ``TaskSpec`` called ``name`` (see the module docstring for the forms)."""
    return resolve("task", name)[0]


def origin(kind: str, name: str) -> Origin:
    """Where ``name`` comes from. A name no source knows is a task or optimizer object handed to
    ``harness.run.loop.run`` directly by a program (``Origin("in-process")``): recorded as such."""
    try:
        return resolve(kind, name)[1]
    except UserError:
        return Origin("in-process", name)


def resolve(kind: str, name: str) -> tuple[Any, Origin]:
    """``(spec, origin)`` for an optimizer or task name. A built-in is read from its registry on
    every call (tests and programs may replace an entry); a plugin is loaded once per process."""
    if kind not in GROUPS:
        raise ValueError(f"unknown plugin kind {kind!r}; known: {', '.join(GROUPS)}")
    builtin = _builtins(kind)
    if isinstance(name, str) and name in builtin and name not in _entry_point_names(kind):
        return builtin[name], BUILT_IN
    return _resolve_plugin(kind, name)


@functools.cache
def _entry_point_names(kind: str) -> frozenset[str]:
    return frozenset(ep.name for ep in _entry_points(kind))


@functools.cache
def _resolve_plugin(kind: str, name: str) -> tuple[Any, Origin]:
    if not isinstance(name, str) or not name:
        raise UserError(f"{kind} name must be a non-empty string, got {name!r}")
    if name.startswith(TORCH_PREFIX) and kind == "optimizer":
        return _torch_optimizer(name)
    if IMPORT_PATH.match(name):
        module = name.split(":", 1)[0]
        return _accept(kind, name, _import_attr(name), Origin("import path", module, _version_of(module)))
    builtin = _builtins(kind)
    points = [ep for ep in _entry_points(kind) if ep.name == name]
    sources = (["built-in"] if name in builtin else []) + [f"entry point {ep.value} ({_dist(ep)})" for ep in points]
    if len(sources) > 1:
        raise UserError(
            f"{kind} name {name!r} is provided by {len(sources)} sources: {'; '.join(sources)}; "
            f"uninstall one, or name the plugin by its import path (pkg.module:ATTR)"
        )
    if name in builtin:
        return builtin[name], BUILT_IN
    if points:
        ep = points[0]
        try:
            obj = ep.load()
        except (Exception, SystemExit) as exc:  # SystemExit: a module that exits on import
            raise UserError(
                f"{kind} {name!r}: entry point {ep.value} of {_dist(ep)} failed to load: {_import_failure(exc)}"
            ) from None
        module = ep.value.split(":", 1)[0]
        return _accept(kind, name, obj, Origin("entry point", _dist(ep), _version_of(module, ep)))
    known = sorted(set(builtin) | {ep.name for ep in _entry_points(kind)})
    forms = "pkg.module:ATTR" + (", torch:NAME (a torch.optim class)" if kind == "optimizer" else "")
    raise UserError(f"unknown {kind} {name!r}; known: {', '.join(known)} (or a plugin: {forms})")


def available(kind: str) -> dict[str, Origin]:
    """Every name ``optbench list`` shows: the built-ins and the installed entry points (not loaded:
    a broken plugin does not hide the others)."""
    out = {name: BUILT_IN for name in _builtins(kind)}
    for ep in _entry_points(kind):
        label = Origin("entry point", _dist(ep), _version_of(ep.value.split(":", 1)[0], ep))
        out[ep.name if ep.name not in out else f"{ep.name} (clashes with a built-in)"] = label
    return out


def _builtins(kind: str) -> Mapping[str, Any]:
    if kind == "optimizer":
        import optimizers

        return optimizers.REGISTRY
    import tasks

    return tasks.REGISTRY


def _entry_points(kind: str) -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=GROUPS[kind]), key=lambda ep: (ep.name, ep.value))


def _dist(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an installed package"


def _version_of(module: str, ep: Any = None) -> str:
    """The version of the package providing ``module``: its distribution's, else ``__version__``."""
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return str(dist.version)
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    top = module.split(".", 1)[0]
    for name in packages_distributions().get(top, []):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    loaded = importlib.import_module(module)
    return str(getattr(loaded, "__version__", "") or getattr(importlib.import_module(top), "__version__", ""))


def _import_attr(path: str) -> Any:
    module_name, attr = path.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # ImportError, the module raising, or exiting on import
        raise UserError(f"cannot import module {module_name!r} (from {path!r}): {_import_failure(exc)}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UserError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})") from None


def _import_failure(exc: BaseException) -> str:
    """What went wrong importing a plugin module, in words: a module that calls ``sys.exit`` while it
    is imported is a broken plugin, not the end of optbench's command."""
    if isinstance(exc, SystemExit):
        return (
            f"the module called sys.exit({exc.code!r}) while being imported (SystemExit); a plugin module must not exit"
        )
    return f"{type(exc).__name__}: {exc}"


def _accept(kind: str, name: str, obj: Any, where: Origin) -> tuple[Any, Origin]:
    """Check that ``obj`` is what a ``kind`` plugin may be, wrapping optimizer classes."""
    if kind == "task":
        from harness.task import TaskSpec

        if isinstance(obj, TaskSpec):
            return obj, where
        raise UserError(
            f"task {name!r} ({where.source}) is a {type(obj).__name__}, not a harness.task.TaskSpec "
            "record (see tasks/*.py: each module exports one TASK = TaskSpec(...))"
        )
    import torch

    from optimizers._base import OptimizerSpec

    if isinstance(obj, OptimizerSpec):
        return obj, where
    if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer):
        return wrap_optimizer_class(obj, name), where
    raise UserError(
        f"optimizer {name!r} ({where.source}) is a {type(obj).__name__}, not an "
        "optimizers.OptimizerSpec or a torch.optim.Optimizer subclass"
    )


def _torch_optimizer(name: str) -> tuple[Any, Origin]:
    import torch

    attr = name[len(TORCH_PREFIX) :]
    cls = getattr(torch.optim, attr, None)
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)) or cls is torch.optim.Optimizer:
        known = sorted(
            n
            for n, c in vars(torch.optim).items()
            if inspect.isclass(c) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer
        )
        raise UserError(f"torch.optim has no optimizer {attr!r}; known: {', '.join(known)}")
    return wrap_optimizer_class(cls, name), Origin("torch.optim", "torch", torch.__version__)


# ------------------------------------------------------------------------------ wrapping a class


def class_defaults(cls: type[Optimizer]) -> dict[str, Any]:
    """Hyperparameters of an optimizer class, from its ``__init__`` signature: every argument after
    ``params`` with a plain default (number, bool, string, tuple, None), implementation switches
    (``foreach``, ``fused``, ...) left out. An ``lr`` without a default gets ``DEFAULT_LR``."""
    out: dict[str, Any] = {}
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.name in IMPLEMENTATION_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = p.default
        if default is p.empty:
            if p.name == "lr":
                out["lr"] = DEFAULT_LR
            continue
        if hasattr(default, "item") and callable(default.item):  # a 0-d tensor default (torch >= 2.2 lr)
            default = default.item()
        if default is None or isinstance(default, (bool, int, float, str, tuple)):
            out[p.name] = default
    return out


_LR_ALIASES = ("learning_rate", "step_size", "eta", "alpha", "lr_max")


def unsupported_class(cls: type[Optimizer]) -> str | None:
    """Why the training loop cannot drive the ``torch.optim.Optimizer`` subclass ``cls`` (None: it
    can). The loop sets every param group's ``lr`` from its schedule, calls ``step()`` with no
    argument, and its tasks produce dense gradients; so a class must take ``lr``, must not need a
    closure (L-BFGS re-evaluates the loss inside ``step``), and must not need sparse gradients
    (SparseAdam accepts only those)."""
    import torch

    params = inspect.signature(cls.__init__).parameters
    if "lr" not in params:
        alias = next((a for a in _LR_ALIASES if a in params), None)
        named = f"its learning rate is the argument {alias!r}" if alias else "it takes no learning rate"
        return (
            f"{named}; optbench's schedules set each param group's 'lr', so the class must take an "
            "'lr' argument (rename it, or wrap the class in one that does)"
        )
    closure = inspect.signature(cls.step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        return (
            "its step() needs a closure that re-evaluates the loss (as L-BFGS does); optbench's loop "
            "calls step() once per batch without one"
        )
    sparse = getattr(torch.optim, "SparseAdam", None)
    if sparse is not None and issubclass(cls, sparse):
        return "it accepts only sparse gradients (nn.Embedding(sparse=True)); optbench's tasks produce dense gradients"
    return None


def wrap_optimizer_class(cls: type[Optimizer], name: str) -> Any:
    """An ``OptimizerSpec`` around a ``torch.optim.Optimizer`` subclass: defaults from its signature
    (``class_defaults``), the search space ``{lr: log-uniform DEFAULT_LR_RANGE}`` (a sweep's
    ``search:`` replaces or extends it), one param group (two when the class takes ``weight_decay``:
    1-D parameters are never decayed). A class with ``optbench_routing = "matrix"`` (Muon-like) gets
    only the hidden matrices (role ``matrix``, ndim >= 2); every other parameter goes to an auxiliary
    AdamW inside the same optimizer object (``aux_lr``, ``aux_betas``, ``aux_eps``,
    ``aux_weight_decay``, as the built-in Muon)."""
    from optimizers._base import LogUniform, OptimizerSpec

    refused = unsupported_class(cls)
    if refused:
        raise UserError(f"optimizer {name!r} ({cls.__module__}.{cls.__qualname__}) cannot run in optbench: {refused}")
    defaults = class_defaults(cls)
    routed = getattr(cls, "optbench_routing", None)
    if routed not in (None, "matrix"):
        raise UserError(f"optimizer {name!r}: optbench_routing must be 'matrix' (or absent), got {routed!r}")
    if routed:
        from optimizers import muon

        defaults.update({k: muon.DEFAULTS[k] for k in ("aux_lr", "aux_betas", "aux_eps", "aux_weight_decay")})
    space = {"lr": LogUniform(*DEFAULT_LR_RANGE)} if "lr" in defaults else {}

    def build(groups, hparams, total_steps):
        return _build_wrapped(cls, groups, hparams, routed)

    summary = (inspect.getdoc(cls) or cls.__name__).splitlines()[0]
    return OptimizerSpec(
        name=name,
        summary=f"{cls.__module__}.{cls.__qualname__}: {summary}",
        defaults=defaults,
        search_space=space,
        build_fn=build,
        implementation="plugin",
        extra={"class": f"{cls.__module__}.{cls.__qualname__}", "routing": routed or "all"},
    )


def _build_wrapped(cls: type, groups: Mapping[str, list], hparams: Mapping[str, Any], routed: str | None):
    from optimizers._base import all_params, decay_groups

    own = {k: v for k, v in hparams.items() if not k.startswith("aux_")}
    if not routed:
        params = all_params(groups)
        param_groups = decay_groups(params, own["weight_decay"]) if "weight_decay" in own else [{"params": params}]
        return cls(param_groups, **own)
    from optimizers.routed import RoutedOptimizer

    matrices = [p for p in groups.get("matrix", ()) if p.ndim >= 2]
    taken = {id(p) for p in matrices}
    rest = [p for p in all_params(groups) if id(p) not in taken]
    main = decay_groups(matrices, own["weight_decay"]) if "weight_decay" in own else [{"params": matrices}]
    param_groups = [{**g, "route": "main"} for g in main if g["params"]]
    param_groups += [{**g, "route": "aux"} for g in decay_groups(rest, hparams["aux_weight_decay"])]
    return RoutedOptimizer(
        param_groups,
        cls,
        aux_lr=hparams["aux_lr"],
        aux_betas=tuple(hparams["aux_betas"]),
        aux_eps=hparams["aux_eps"],
        aux_weight_decay=hparams["aux_weight_decay"],
        **own,
    )


def __getattr__(name: str) -> Any:
    """``RoutedOptimizer`` still imports from here, where it used to live (loaded lazily: this
    module does not import torch until an optimizer is built)."""
    if name == "RoutedOptimizer":
        from optimizers.routed import RoutedOptimizer

        return RoutedOptimizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
