"""Task registry: name -> ``harness.task.TaskSpec``. One module per task family, each exporting its
record as ``TASK``, listed here explicitly. The loaders live in ``tasks.data`` (one module per data
kind, shared between tasks). Heavy dependencies (torchvision, torch_geometric, datasets) are imported
inside the functions that need them, so listing tasks stays cheap."""

from __future__ import annotations

from harness.errors import unknown
from harness.task import Task, TaskSpec
from tasks import cifar_resnet, gnn_graphland, llm, lstm_lm, tabular_mlp

REGISTRY: dict[str, TaskSpec] = {
    "cifar_resnet": cifar_resnet.TASK,
    "gnn_graphland": gnn_graphland.TASK,
    "llm": llm.TASK,
    "lstm_lm": lstm_lm.TASK,
    "tabular_mlp": tabular_mlp.TASK,
}


def get(name: str) -> TaskSpec:
    """The registered record, or ``UserError`` naming the known tasks."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise unknown("task", name, REGISTRY) from None


def make(name: str, size: str = "tiny", dataset: str | None = None, data_dir: str | None = None, **options) -> Task:
    """Build task ``name`` at ``size`` on ``dataset`` (the size's default when None): check the request,
    locate and load the data (cached per process), build the ``Task``.

    Raises ``harness.errors.UserError`` for unknown names/options or missing data files.
    """
    return get(name).make(size, dataset=dataset, data_dir=data_dir, **options)
