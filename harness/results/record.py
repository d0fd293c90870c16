"""The run record: one frozen dataclass whose fields *are* the columns of a run's parquet row.

``harness.results.store.COLUMNS`` (column -> meaning) is read off these fields, so the documentation, the
row the training loop writes and the failure record the sweep writes cannot drift apart. Besides
these columns a row carries one ``hp_<name>`` column per optimizer hyperparameter
(``harness.results.store.hp_columns``). Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _column(doc: str) -> Any:
    return field(metadata={"doc": doc})


@dataclass(frozen=True)
class RunRecord:
    """One run's record (``schema_version`` 1). Build it with every field given; ``row()`` is what
    goes to parquet."""

    run_id: str = _column("hash of the run's canonical spec (RunSpec.identity)")
    schema_version: int = _column("version of this schema")
    suite: str = _column("suite name ('adhoc' for optbench run)")
    study: str = _column("Optuna study name for tune/eval runs, '' otherwise")
    task: str = _column("task family")
    dataset: str = _column("dataset name; a user's file (path:<file>) as path@<content hash>, the same wherever the file sits")
    dataset_source: str = _column("the dataset as the run was given it (for path@...: the file's path then)")
    size: str = _column("tiny | small | paper")
    optimizer: str = _column("registered optimizer name")
    phase: str = _column("run | tune | eval")
    trial: int | None = _column("tune: the trial's slot k (0-based: the k-th planned trial of its study, stable across crashes and re-runs); eval: the slot whose configuration it evaluates; null otherwise")
    replicate: int = _column("tuning replicate (independent study) the run belongs to, 0..R-1 (0 without replicates)")
    seed: int = _column("run seed (model init, data order, dropout)")
    steps: int = _column("planned optimizer steps (K)")
    steps_done: int = _column("optimizer steps actually taken (< steps when diverged)")
    hparams: str = _column("resolved optimizer hyperparameters, JSON")
    task_options: str = _column("resolved task options, JSON")
    spec: str = _column("the full RunSpec, JSON")
    amp: str = _column("'' (fp32) or 'bf16'")
    compile: bool = _column("torch.compile used")
    status: str = _column("ok | diverged | pruned (stopped early by the tuner) | failed (the run raised an exception, or its worker died every time; written by the sweep, see status_detail)")
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
    optimizer_origin: str = _column("where the optimizer came from: 'built-in', 'entry point <distribution>', "
                                    "'import path <module>' or 'torch.optim'")
    optimizer_version: str = _column("version of the package that provides a plugin optimizer ('' for built-ins)")
    task_origin: str = _column("where the task came from: 'built-in', 'entry point <distribution>' or "
                               "'import path <module>'")
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
    branch_step: int = _column("step of that checkpoint (S = floor(alpha_sign K)); the curves before it are the parent's")

    def row(self) -> dict[str, Any]:
        """The parquet row: every column, plus the ``hp_<name>`` columns of the hyperparameters."""
        import json

        from harness.results.store import hp_columns

        out = asdict(self)
        out.update(hp_columns(json.loads(self.hparams)))
        return out


def columns() -> dict[str, str]:
    """Column -> meaning, in record order."""
    return {f.name: f.metadata["doc"] for f in fields(RunRecord)}
