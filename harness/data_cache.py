"""The loaded-data cache: one per process, shared by every task.

A task's ``load(key)`` step (``harness.task.TaskSpec``) reads and preprocesses its data; ``TaskSpec.make``
calls it through ``load_data``, so a sweep worker that runs many trials on one dataset loads it once.
Plugin authors import ``load_data`` and ``clear_data_cache`` from ``harness.task``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["DATA_CACHE_ENTRIES", "load_data", "clear_data_cache"]

DATA_CACHE_ENTRIES = 4  # loaded datasets kept (a CIFAR split set is ~150 MB; a sweep reuses one)
_DATA_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_DATA_LOCK = threading.Lock()


def load_data(load: Callable[[Any], Any], key: Hashable) -> Any:
    """``load(key)``, computed once per process while among the last ``DATA_CACHE_ENTRIES`` loads.

    Keyed by the loader and its key, not by the task: two tasks on the same data (a ResNet and a ViT
    on CIFAR-10) share one entry. Loaded data is shared between runs, so it must never be mutated.
    """
    full = (load, key)
    with _DATA_LOCK:
        if full in _DATA_CACHE:
            _DATA_CACHE.move_to_end(full)
            return _DATA_CACHE[full]
    value = load(key)  # outside the lock: loading can take minutes
    with _DATA_LOCK:
        _DATA_CACHE[full] = value
        while len(_DATA_CACHE) > DATA_CACHE_ENTRIES:
            _DATA_CACHE.popitem(last=False)
    return value


def clear_data_cache() -> None:
    """Forget every loaded dataset (tests; a long-lived process that wants its memory back)."""
    with _DATA_LOCK:
        _DATA_CACHE.clear()
