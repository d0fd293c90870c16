"""Where data and results live by default, and whether we may touch the network."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = Path("~/.cache/optbench")


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path``, else ``$OPTBENCH_DATA_DIR``, else ``~/.cache/optbench``."""
    chosen = path or os.environ.get("OPTBENCH_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def offline() -> bool:
    """True when downloads must not be attempted (``OPTBENCH_OFFLINE=1`` or HF offline mode).

    Tests and CI set these; loaders then fail fast with a message naming the file to fetch.
    """
    return any(
        os.environ.get(k, "") not in ("", "0") for k in ("OPTBENCH_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
