"""Task registry: name -> task module. Each module exposes ``make(size, dataset=None, data_dir=None,
**options) -> harness.task.Task`` and the constants ``DESCRIPTION``, ``SIZES``, ``DATASETS``,
``DEFAULT_DATASET``, ``OPTIONS``. Heavy dependencies (torchvision, torch_geometric, datasets) are
imported inside the functions that need them, so listing tasks stays cheap."""

from __future__ import annotations

from types import ModuleType

from harness.errors import unknown
from harness.task import Task
from tasks import cifar_resnet, gnn_graphland, llm, lstm_lm, tabular_mlp

REGISTRY: dict[str, ModuleType] = {
    "cifar_resnet": cifar_resnet,
    "gnn_graphland": gnn_graphland,
    "llm": llm,
    "lstm_lm": lstm_lm,
    "tabular_mlp": tabular_mlp,
}


def get(name: str) -> ModuleType:
    try:
        return REGISTRY[name]
    except KeyError:
        raise unknown("task", name, REGISTRY) from None


def make(name: str, size: str = "tiny", dataset: str | None = None, data_dir: str | None = None,
         **options) -> Task:
    """Build task ``name`` at ``size`` on ``dataset`` (the size's default when None).

    Raises ``harness.errors.UserError`` for unknown names/options or missing data files.
    """
    return get(name).make(size, dataset=dataset, data_dir=data_dir, **options)
