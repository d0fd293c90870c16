"""The run record: one frozen dataclass whose fields *are* the columns of a run's parquet row, and the
one builder of it (``from_spec``, with its failure variant ``failure``).

``harness.results.schema`` reads the Arrow schema of every record file off these fields, and
``harness.results.store.COLUMNS`` (column -> meaning) too, so the documentation, the row the training
loop writes and the failure record the sweep writes cannot drift apart. Hyperparameters are stored
once, as the JSON column ``hparams``; readers see them as ``hp_<name>`` columns too (``hp_columns``,
added on read). Torch-free; imports neither ``store`` nor ``schema``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Version of the results schema (the columns and their types). 2: one fixed Arrow schema with typed
# nulls, no hp_<name> columns in the files, optbench_version, budget and delay. 1: columns as the row
# happened to be (hp_<name> per optimizer, null-typed columns where a value was None).
SCHEMA_VERSION = 2
STATUSES = ("ok", "diverged", "pruned", "failed")


def _column(doc: str) -> Any:
    return field(metadata={"doc": doc})


@dataclass(frozen=True)
class RunRecord:
    """One run's record (``schema_version`` 2). Build it with ``from_spec`` or ``failure``; ``row()``
    is what readers see (the stored columns plus ``hp_<name>``)."""

    run_id: str = _column("hash of the run's canonical spec (RunSpec.identity)")
    schema_version: int = _column(
        "results-schema version the row was written with (this schema: 2; upgraded rows keep the version of their file)"
    )
    optbench_version: str = _column(
        "optbench's version that wrote the row (harness.results.versions; null in rows "
        "written before versions were recorded, which count as 'unknown')"
    )
    suite: str = _column("suite name ('adhoc' for optbench run)")
    study: str = _column("Optuna study name for tune/eval runs, '' otherwise")
    task: str = _column("task family")
    dataset: str = _column(
        "dataset name; a user's file (path:<file>) as path@<content hash>, the same wherever the file sits"
    )
    dataset_source: str = _column("the dataset as the run was given it (for path@...: the file's path then)")
    size: str = _column("tiny | small | paper")
    optimizer: str = _column("registered optimizer name")
    phase: str = _column("run | tune | eval")
    trial: int | None = _column(
        "tune: the trial's slot k (0-based: the k-th planned trial of its study, stable across crashes and re-runs); eval: the slot whose configuration it evaluates; null otherwise"
    )
    replicate: int = _column("tuning replicate (independent study) the run belongs to, 0..R-1 (0 without replicates)")
    seed: int = _column("run seed (model init, data order, dropout)")
    steps: int | None = _column(
        "the full step budget K (a budget run trains round(budget K) of them); null only in a "
        "failure record whose spec left the budget to the task"
    )
    steps_done: int = _column("optimizer steps actually taken (fewer than planned when diverged or pruned)")
    budget: float = _column("fraction of the full budget `steps` the run trained (a WSD budget branch; 1.0: all)")
    delay: int = _column("steps by which gradients reached the optimizer late (0: no delay)")
    cell: str = _column(
        'the sweep cell\'s axis values, JSON (e.g. {"alpha_sign": 0.5, "delay": 1}); \'\' outside '
        "a sweep's axes (harness.sweep.axes)"
    )
    hparams: str = _column("resolved optimizer hyperparameters, JSON")
    task_options: str = _column("resolved task options, JSON")
    spec: str = _column("the full RunSpec, JSON")
    amp: str = _column("'' (fp32) or 'bf16'")
    compile: bool = _column("torch.compile used")
    status: str = _column(
        "ok | diverged | pruned (stopped early by the tuner) | failed (the run raised an exception, or its worker died every time; written by the sweep, see status_detail)"
    )
    status_detail: str = _column("why a run diverged or failed, '' if ok")
    metric: str = _column("the task's metric name")
    direction: str = _column("max | min")
    val_metric: float = _column("validation metric at the end of the budget (NaN if diverged)")
    test_metric: float = _column("test metric at the end of the budget (NaN if diverged)")
    best_val_metric: float = _column("best validation metric over the eval schedule")
    best_val_step: int = _column("step of best_val_metric")
    objective: float = _column("value told to the tuner: val_metric, or the task's penalty when diverged")
    penalty: float = _column("the task's penalty value for diverged runs")
    target: float = _column("the task's steps-to-target threshold (NaN if none)")
    steps_to_target: int | None = _column("first eval step whose val metric reached target (null if never)")
    final_train_loss: float = _column("mean train loss over the last 10% of steps")
    metrics: str = _column("all final val/test metrics, JSON {split: {name: value}}")
    train_seconds: float = _column("wall seconds in training steps (forward, backward, optimizer)")
    eval_seconds: float = _column("wall seconds in evaluation")
    optimizer_seconds: float = _column("seconds inside optimizer.step() (CUDA: device time from events)")
    wall_seconds: float = _column("total wall seconds incl. setup")
    peak_memory_bytes: int = _column("CUDA: max allocated; CPU: process max RSS")
    optimizer_state_bytes: int = _column("bytes of tensors in optimizer.state")
    param_count: int = _column("trainable parameters")
    implementation: str = _column("optimizer implementation path (e.g. foreach, fused)")
    optimizer_origin: str = _column(
        "where the optimizer came from: 'built-in', 'entry point <distribution>', "
        "'import path <module>' or 'torch.optim'"
    )
    optimizer_version: str = _column("version of the package that provides a plugin optimizer ('' for built-ins)")
    task_origin: str = _column(
        "where the task came from: 'built-in', 'entry point <distribution>' or 'import path <module>'"
    )
    task_version: str = _column("version of the package that provides a plugin task ('' for built-ins)")
    git_sha: str = _column("optbench commit (or 'unknown')")
    torch_version: str = _column("torch.__version__")
    python_version: str = _column("platform.python_version()")
    device: str = _column("e.g. cpu, cuda:0 (NVIDIA H100)")
    world_size: int = _column("number of DDP processes")
    started_at: str = _column("UTC ISO timestamp")
    finished_at: str = _column("UTC ISO timestamp")
    resumed_at_step: int = _column("step of the checkpoint this run's last process resumed from (0: ran from scratch)")
    branched_from: str = _column("run_id of the parent run whose checkpoint this run started from ('' if none)")
    branch_step: int = _column(
        "step of that checkpoint (S = floor(alpha_sign K)); the curves before it are the parent's"
    )

    def row(self) -> dict[str, Any]:
        """The row as readers see it: every column, plus the ``hp_<name>`` columns of the
        hyperparameters (``hp_columns``; the files hold only the ``hparams`` JSON)."""
        out = asdict(self)
        out.update(hp_columns(json.loads(self.hparams)))
        return out


def columns() -> dict[str, str]:
    """Column -> meaning, in record order."""
    return {f.name: f.metadata["doc"] for f in fields(RunRecord)}


# Fields the outcome of a run fills in (what ``from_spec`` takes from its caller); every other field is
# read off the spec, the code's versions, the plugin registry and the environment.
OUTCOME = (
    "steps",
    "steps_done",
    "status",
    "status_detail",
    "metric",
    "direction",
    "val_metric",
    "test_metric",
    "best_val_metric",
    "best_val_step",
    "objective",
    "penalty",
    "target",
    "steps_to_target",
    "final_train_loss",
    "metrics",
    "train_seconds",
    "eval_seconds",
    "optimizer_seconds",
    "wall_seconds",
    "peak_memory_bytes",
    "optimizer_state_bytes",
    "param_count",
    "implementation",
    "started_at",
    "finished_at",
    "resumed_at_step",
)
ENVIRONMENT = ("git_sha", "torch_version", "python_version", "device")


def from_spec(spec: Any, *, environment: Mapping[str, Any], **outcome: Any) -> RunRecord:
    """The run record of ``spec`` (a ``harness.spec.RunSpec``): the identity, configuration and
    provenance columns from the spec, optbench's version, the plugin registry (where the optimizer and
    task came from) and ``environment`` (``git_sha``, ``torch_version``, ``python_version``,
    ``device``; ``world_size`` optional, default 1), plus ``outcome``: exactly the ``OUTCOME`` fields.

    ``ValueError`` names an outcome field that is missing or unknown, an environment key that is
    missing, or a status outside ``STATUSES``."""
    from harness import plugins
    from harness.results.versions import package_version

    missing, unknown = [k for k in OUTCOME if k not in outcome], sorted(set(outcome) - set(OUTCOME))
    if missing or unknown:
        raise ValueError(f"run record outcome: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
    absent = [k for k in ENVIRONMENT if k not in environment]
    if absent:
        raise ValueError(f"run record environment: missing {', '.join(absent)}")
    if outcome["status"] not in STATUSES:
        raise ValueError(f"unknown run status {outcome['status']!r}; known: {', '.join(STATUSES)}")
    opt_origin, task_origin = plugins.origin("optimizer", spec.optimizer), plugins.origin("task", spec.task)
    return RunRecord(
        run_id=spec.run_id,
        schema_version=SCHEMA_VERSION,
        optbench_version=package_version(),
        suite=spec.suite,
        study=spec.study,
        task=spec.task,
        dataset=spec.dataset_key,
        dataset_source=spec.dataset,
        size=spec.size,
        optimizer=spec.optimizer,
        phase=spec.phase,
        trial=spec.trial,
        replicate=spec.replicate,
        seed=spec.seed,
        budget=float(spec.budget),
        delay=int(spec.delay),
        cell=json.dumps(json_ready(spec.cell), sort_keys=True) if spec.cell else "",
        hparams=json.dumps(json_ready(spec.hparams), sort_keys=True),
        task_options=json.dumps(json_ready(spec.task_options), sort_keys=True),
        spec=spec.to_json(),
        amp=spec.amp or "",
        compile=bool(spec.compile),
        optimizer_origin=opt_origin.label(),
        optimizer_version=opt_origin.version,
        task_origin=task_origin.label(),
        task_version=task_origin.version,
        git_sha=str(environment["git_sha"]),
        torch_version=str(environment["torch_version"]),
        python_version=str(environment["python_version"]),
        device=str(environment["device"]),
        world_size=int(environment.get("world_size", 1)),
        branched_from=spec.branched_from,
        branch_step=spec.branch_step,
        **outcome,
    )


def failure(
    spec: Any,
    *,
    metric: str,
    direction: str,
    penalty: float,
    detail: str,
    started_at: str,
    finished_at: str,
    wall_seconds: float,
    environment: Mapping[str, Any],
) -> RunRecord:
    """The record of a run that never produced a result (``status = "failed"``): it raised an
    exception, or its worker died every time. Metrics are NaN, no step was taken and the objective is
    the penalty, so a leaderboard counts it in ``n_failed`` / ``tune_failure_rate``."""
    return from_spec(
        spec,
        environment=environment,
        steps=spec.steps,
        steps_done=0,
        status="failed",
        status_detail=detail,
        metric=metric,
        direction=direction,
        val_metric=math.nan,
        test_metric=math.nan,
        best_val_metric=math.nan,
        best_val_step=0,
        objective=float(penalty),
        penalty=float(penalty),
        target=math.nan,
        steps_to_target=None,
        final_train_loss=math.nan,
        metrics=json.dumps({"val": {}, "test": {}}),
        train_seconds=0.0,
        eval_seconds=0.0,
        optimizer_seconds=0.0,
        wall_seconds=float(wall_seconds),
        peak_memory_bytes=0,
        optimizer_state_bytes=0,
        param_count=0,
        implementation="",
        started_at=started_at,
        finished_at=finished_at,
        resumed_at_step=0,
    )


def hp_columns(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as ``hp_<name>`` columns, as readers see them: numbers as float (so a column
    has one type across rows), booleans and strings as they are (``hp_schedule_source = gradient``),
    tuples/lists as JSON strings, None as null."""
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if isinstance(value, (str, bool)) or value is None:
            out[f"hp_{key}"] = value
        elif isinstance(value, (int, float)):
            out[f"hp_{key}"] = float(value)
        else:
            out[f"hp_{key}"] = json.dumps(value)
    return out


def json_ready(value: Any) -> Any:
    """Tuples to lists and non-finite floats to strings, so ``json.dumps`` output is valid JSON."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def finite_or_nan(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan
