"""``optbench list`` and ``optbench run``: look around, and run one spec end to end."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.outputs import say
from harness.results import store as records

DEFAULT_OUT = Path("results") / "adhoc"


def parse_value(text: str) -> Any:
    """A ``--set`` value: int, float (``1e-3`` too), bool, none, a JSON list, or ``a,b`` as a tuple;
    anything else stays a string."""
    raw = text.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if raw.startswith("["):
        try:
            return tuple(json.loads(raw))
        except json.JSONDecodeError:
            raise UserError(f"cannot parse {raw!r} as a JSON list") from None
    if "," in raw:
        return tuple(parse_value(part) for part in raw.split(","))
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def parse_sets(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``key=value`` pairs into optimizer hyperparameters and ``task.<option>`` task options."""
    hparams: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {pair!r}")
        if key.startswith("task."):
            options[key[len("task.") :]] = parse_value(value)
        else:
            hparams[key] = parse_value(value)
    return hparams, options


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _type_name(option) -> str:
    return "|".join(t.__name__ for t in option.types)


def _metrics(metrics) -> str:
    return ", ".join(f"{m.name} ({m.direction})" for m in metrics)


def print_task(record) -> None:
    """A task record as ``optbench list --task NAME`` shows it: sizes, metrics, datasets (offline or
    where the download comes from), and every option with its type, default and valid values."""
    print(f"{record.name}: {record.description}")
    print(
        f"  sizes: {', '.join(record.sizes)}  (default dataset per size: "
        + ", ".join(f"{s}={d}" for s, d in record.default_dataset.items())
        + ")"
    )
    print(f"  metrics: {_metrics(record.metrics)}")
    print("  datasets:")
    for d in record.datasets:
        print(f"    {d.name:<28} {d.about}")
        where = "offline" if d.offline else f"download: {d.fetch}"
        metric = f"; metric {_metrics([d.metric])}" if d.metric is not None and len(record.metrics) > 1 else ""
        print(f"    {'':<28} [{where}{metric}]")
    for group, members in record.groups.items():
        print(f"    group {group}: {', '.join(members)}")
    print("  options (--set task.<name>=value):")
    for o in record.options:
        print(f"    {o.name:<16} {_type_name(o):<8} {o.description}")
        print(f"    {'':<16} {'':<8} default {o.shown_default()}; must {o.requirement()}")


def _listing(kind: str, describe) -> None:
    """Every available ``kind`` (built-ins and entry points) with its origin and ``describe(spec)``'s
    lines; one that fails to load says why and the listing goes on."""
    from harness import plugins

    print(f"{kind}s:")
    for name, where in plugins.available(kind).items():
        print(f"  {name:<16} [{where.label()}]")
        try:
            lines = describe(plugins.resolve(kind, name)[0])
        except UserError as exc:
            lines = [f"cannot load: {exc}"]
        for line in lines:
            print(f"  {'':<16} {line}")


def cmd_list(args: argparse.Namespace) -> int:
    """Every task and optimizer optbench can run here, with where it comes from: built-in, or an
    entry point of an installed package (a plugin named by import path, ``pkg.module:ATTR``, is not
    discoverable: ``optbench list --task pkg.module:ATTR`` / ``--optimizer ...`` shows one)."""
    from harness import plugins

    if args.task:
        print_task(plugins.task(args.task))
        print(f"  origin: {plugins.origin('task', args.task).label()}")
        return 0
    if args.optimizer:
        spec = plugins.optimizer(args.optimizer)
        print(f"{args.optimizer}: {spec.summary}")
        print(f"  origin: {plugins.origin('optimizer', args.optimizer).label()}")
        print("  defaults: " + ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items()))
        print("  search space: " + (", ".join(f"{k} {v}" for k, v in spec.search_space.items()) or "(none)"))
        if spec.branch_from:
            print(f"  is {spec.branch_from} before its switch: can branch from a {spec.branch_from} checkpoint")
        return 0
    _listing(
        "task",
        lambda r: [r.description, f"metrics: {_metrics(r.metrics)}; options: " + ", ".join(o.name for o in r.options)],
    )
    _listing("optimizer", lambda s: [s.summary, "defaults: " + ", ".join(f"{k}={v!r}" for k, v in s.defaults.items())])
    print(
        "\n`optbench list --task NAME` shows a task's datasets and options. Plugins: pkg.module:ATTR,\n"
        "torch:NAME (a torch.optim class) or a package's entry points optbench.optimizers / optbench.tasks."
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness.run.loop import run
    from harness.run.resolve import resolve

    hparams, options = parse_sets(args.set or [])
    spec, task = resolve(
        task=args.task,
        optimizer=args.optimizer,
        dataset=args.dataset,
        size=args.size,
        hparams=hparams,
        task_options=options,
        seed=args.seed,
        steps=args.steps,
        amp=args.amp,
        compile=args.compile,
        data_dir=args.data_dir,
        delay=args.delay,
        budget=args.budget,
        schedule=_schedule_override(args),
    )
    # Everything that can be refused is checked before anything is written (a record moved aside too).
    policy, parent = _checkpointing(args, spec)
    if parent is not None:
        from harness.run.lineage import branch_spec

        spec = branch_spec(spec, parent, args.branch_from)  # BranchRefused (exit 2) names what differs
    out = Path(args.out)
    if int(os.environ.get("RANK", "0")) == 0:  # the rank that writes the record
        # Refuse now, not after training: a run whose record cannot be written is thrown away.
        records.check_writable(out)
        state, why = records.record_state(out, spec.run_id)
        if state == "corrupt":
            moved = records.quarantine(records.run_path(out, spec.run_id))
            say(
                f"optbench run: warning: run record {records.run_path(out, spec.run_id)} is unreadable ({why}); "
                f"moved it to {moved.name} and running again"
            )
    if parent is not None:
        say(
            f"optbench run: starting from {args.branch_from} (run {spec.branched_from}, steps after "
            f"{spec.branch_step} only)"
        )
    from harness.run.preempt import sigterm_stops_training

    # SIGTERM (a scheduler's stop) ends the run after its current step, with a checkpoint once
    # the run has taken a step: the same command resumes there.
    with _plain_warnings(), sigterm_stops_training(interrupt_sigint=False):
        result = run(
            spec,
            out_dir=out,
            data_dir=args.data_dir,
            device=args.device,
            progress=args.progress,
            task=task,
            checkpoints=policy,
            branch_from=parent,
        )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only rank 0 reports (and writes)
    row = result.row
    where = out / "runs" / f"{spec.run_id}.parquet"
    if result.skipped:
        print(f"already finished: {where} (run_id {spec.run_id}); delete it or change the spec to re-run")
    extra = (f" delay={spec.delay}" if spec.delay else "") + (f" budget={spec.budget:g}" if spec.budget != 1.0 else "")
    print(
        f"{row['task']}/{row['dataset']} [{row['size']}] {row['optimizer']} seed={row['seed']}{extra}: "
        f"status={row['status']} val {row['metric']}={_fmt(row['val_metric'])} "
        f"test {row['metric']}={_fmt(row['test_metric'])} steps={row['steps_done']}/{row['steps']} "
        f"train {row['train_seconds']:.2f}s eval {row['eval_seconds']:.2f}s opt {row['optimizer_seconds']:.2f}s"
    )
    if row["status"] != "ok":
        print(f"  {row['status_detail']}")
    if not result.skipped:
        print(f"wrote {where}")
    return 0


@contextlib.contextmanager
def _plain_warnings():
    """A checkpoint moved aside (another run's, unreadable) is said as ``optbench run: warning: ...``."""

    def show(message, category, filename, lineno, file=None, line=None):
        say(f"optbench run: warning: {message}")

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        previous, warnings.showwarning = warnings.showwarning, show
        try:
            yield
        finally:
            warnings.showwarning = previous


def _checkpointing(args: argparse.Namespace, spec: Any):
    """The run's ``CheckpointPolicy`` (``--checkpoint-every``, ``--keep-checkpoint``) and the parent
    checkpoint it branches from (``--branch-from``, loaded), checked before anything runs."""
    from harness.run.checkpoint import CheckpointPolicy

    every = args.checkpoint_every
    if every is not None and not (math.isfinite(every) and every >= 0):
        raise UserError(f"--checkpoint-every must be a number of seconds >= 0 (0: off), got {every}")
    keep = set()
    for text in args.keep_checkpoint or []:
        for part in text.split(","):
            try:
                step = int(part)
            except ValueError:
                raise UserError(f"--keep-checkpoint takes step numbers, got {part!r}") from None
            if not 1 <= step <= int(spec.train_steps):
                raise UserError(f"--keep-checkpoint {step}: the run has steps 1..{spec.train_steps}")
            keep.add(step)
    if args.keep_budgets:
        from harness.run.lineage import budget_keep_steps

        budgets = [_fraction("--keep-budgets", part) for text in args.keep_budgets for part in text.split(",")]
        try:
            keep |= budget_keep_steps(spec, budgets)
        except UserError as exc:
            raise UserError(f"--keep-budgets: {exc}") from None
    parent = None
    if args.branch_from:
        from harness.run import checkpoint as ckpt

        branch = _branch_source(args.branch_from, spec, Path(args.out))
        try:
            parent = ckpt.load(branch)
        except ValueError as exc:
            raise UserError(
                f"--branch-from {branch}: {str(exc).replace(f'{branch}: ', '', 1)} (a checkpoint is a "
                "step-<S>.pt file under <out>/checkpoints/<run_id>/ of the parent run)"
            ) from None
    return CheckpointPolicy(every_seconds=every or None, keep_steps=frozenset(keep)), parent


def _schedule_override(args: argparse.Namespace) -> dict[str, Any]:
    """The schedule keys the run's flags set (over the task's schedule; ``{}``: the task's own)."""
    given = {
        "kind": args.schedule,
        "warmup_steps": args.warmup_steps,
        "min_lr_ratio": args.min_lr_ratio,
        "decay_fraction": args.decay_fraction,
        "decay_shape": args.decay_shape,
    }
    return {k: v for k, v in given.items() if v is not None}


def _fraction(flag: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{flag} takes fractions of the task's steps in (0, 1], e.g. 0.25,0.5; got {text!r}") from None


def _branch_source(text: str, spec: Any, out: Path) -> Path:
    """The checkpoint ``--branch-from`` names: a checkpoint file; a parent run's checkpoint folder
    (``<out>/checkpoints/<run_id>``) or its run_id (under ``--out``), at the step this run starts from;
    or a results folder, where the parent is the run this one branches from by default
    (``harness.run.lineage.parent_spec``: the full-budget run of the same spec, or for SoftX, X's run)."""
    import re

    from harness.run import checkpoint as ckpt
    from harness.run.lineage import branch_step, parent_spec

    path = Path(text)
    if path.is_file():
        return path
    forms = (
        "a checkpoint file <out>/checkpoints/<run_id>/step-<S>.pt, the folder <out>/checkpoints/<run_id>, "
        "a run_id under --out, or the parent's results folder"
    )
    if path.is_dir() and (path / "checkpoints").is_dir():
        parent = parent_spec(spec)
        folder = ckpt.run_dir(path, parent.run_id)
        step = branch_step(spec, parent)
        what = f"the {parent.optimizer} run {parent.run_id} at budget {parent.budget:g}"
    elif path.is_dir() or re.fullmatch(r"[0-9a-f]{20}", text):
        folder = path if path.is_dir() else ckpt.run_dir(out, text)
        step = branch_step(spec, parent_spec(spec))  # the step a run like this one branches at
        what = f"run {folder.name}"
        if not folder.is_dir():
            raise UserError(f"--branch-from {text}: no checkpoints of run {text} under {out} (give {forms})")
    else:
        raise UserError(f"--branch-from {text}: no such checkpoint, folder or run_id (give {forms})")
    found = folder / f"step-{step}.pt"
    if not found.is_file():
        hint = (
            f"--keep-budgets {spec.budget:g}"
            if spec.budget < 1.0 and parent_spec(spec).optimizer == spec.optimizer
            else f"--keep-checkpoint {step}"
        )
        raise UserError(
            f"--branch-from {text}: {what} kept no checkpoint at step {step}, where this run branches "
            f"({found}); run the parent with {hint}"
        )
    return found


def _count(text: str) -> int:
    """An integer option that may be written ``2000`` or ``2e3``."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not (math.isfinite(value) and value == int(value)):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list", help="list tasks and optimizers with their origin (or one task's or optimizer's details)"
    )
    p.add_argument("--task", help="show this task's datasets, sizes and options (a name or pkg.module:ATTR)")
    p.add_argument(
        "--optimizer", help="show this optimizer's defaults and search space (a name, pkg.module:ATTR or torch:NAME)"
    )
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run one task with one optimizer and write its record")
    p.add_argument("--task", required=True, help="task family (see `optbench list`), or a plugin pkg.module:ATTR")
    p.add_argument(
        "--optimizer",
        required=True,
        help="optimizer (see `optbench list`), or a plugin: pkg.module:ATTR (an OptimizerSpec or a "
        "torch.optim.Optimizer subclass), torch:NAME",
    )
    p.add_argument("--dataset", help="dataset name (default: the size's default dataset)")
    p.add_argument("--size", default="tiny", help="tiny | small | paper (default: tiny)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="optimizer hyperparameter (lr=3e-4, betas=0.9,0.95) or task option (task.width=128); repeatable",
    )
    p.add_argument("--seed", type=int, default=0, help="run seed, 0 .. 2**31 - 1 (default 0)")
    p.add_argument("--steps", type=_count, help="optimizer steps (default: the task's budget; 2000 or 2e3)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"results folder (default: {DEFAULT_OUT})")
    p.add_argument("--data-dir", help="data folder (default: $OPTBENCH_DATA_DIR or ~/.cache/optbench)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--amp", choices=["bf16"], help="bf16 autocast (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="save a resumable checkpoint this often (default 600; 0: never); re-running a killed "
        "run resumes from its newest checkpoint",
    )
    p.add_argument(
        "--keep-checkpoint",
        action="append",
        metavar="STEP[,STEP]",
        help="also save the checkpoint after these steps and keep it when the run finishes "
        "(a branch point: e.g. S = floor(0.9 K) of a Signum run, for --branch-from)",
    )
    p.add_argument(
        "--keep-budgets",
        action="append",
        metavar="B[,B]",
        help="keep the checkpoints shorter wsd runs of this spec branch from: after each budget's decay "
        "start D(T), T = round(B * steps) (e.g. 0.25,0.5; for --budget B --branch-from)",
    )
    p.add_argument(
        "--branch-from",
        metavar="CHECKPOINT|DIR|RUN_ID",
        help="start from another run's checkpoint (same task, data, seed, --steps, schedule and delay): "
        "SoftSignum from a Signum checkpoint at S, or a --budget run from the full wsd run at its "
        "decay start; a checkpoint file, a run's checkpoint folder or run_id (under --out), or the "
        "parent's results folder; only the steps after it run",
    )
    p.add_argument(
        "--delay",
        type=int,
        default=0,
        metavar="D",
        help="gradient delay: every step applies the gradient of D steps earlier (0: none, default; 1: "
        "PipeDream-2BW's one-step staleness); the first D steps apply zeros",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=1.0,
        metavar="B",
        help="train T = round(B * steps) of the steps, B in (0, 1] (default 1); the schedule covers the T "
        "steps (warmup of the full budget)",
    )
    p.add_argument(
        "--schedule",
        choices=["constant", "cosine", "linear", "wsd"],
        help="LR schedule instead of the task's (wsd: warmup, stable at the peak, decay over "
        "--decay-fraction of the steps; Hägele et al. 2024)",
    )
    p.add_argument("--warmup-steps", type=int, metavar="N", help="linear warmup steps (default: the task's)")
    p.add_argument("--min-lr-ratio", type=float, metavar="R", help="LR factor at the last step (default: the task's)")
    p.add_argument(
        "--decay-fraction",
        type=float,
        metavar="F",
        help="wsd: the fraction of the run's steps its decay takes, in (0, 1] (e.g. 0.2)",
    )
    p.add_argument(
        "--decay-shape",
        choices=["linear", "sqrt"],
        help="wsd: the decay's shape (default linear; sqrt: 1-sqrt, Hägele et al. 2024)",
    )
    p.set_defaults(func=cmd_run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `optbench run`")
