"""``optbench check``, environment section: versions, the device, the optional stacks, the data dir and
which datasets are present offline, and the Optuna storage a sweep would use.

Nothing here downloads or writes: optional packages are imported one by one (a missing or broken one is
a line of the report, never a crash), and dataset presence is asked of each task record's ``locate`` step
(``harness.task.TaskSpec``) with downloads forbidden, so a task's own file checks decide, without loading.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

# Optional stacks: (distribution name, import name, what needs it). Reported as "not installed" when
# absent; imported to catch an installed but broken package (e.g. built against another torch).
OPTIONAL_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("torchvision", "torchvision", "cifar_resnet real data"),
    ("torch_geometric", "torch_geometric", "gnn_graphland"),
    ("scikit-learn", "sklearn", "tabular_mlp, cifar_resnet digits"),
    ("datasets", "datasets", "lstm_lm / llm hub corpora"),
    ("tokenizers", "tokenizers", "llm BPE tokenizers"),
    ("optuna", "optuna", "sweeps"),
)

OFFLINE_VARS = ("OPTBENCH_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@contextlib.contextmanager
def forced_offline() -> Iterator[None]:
    """Forbid downloads for the duration (``harness.paths.offline()`` reads the environment each call):
    a check must never start fetching gigabytes, nor hang on a machine without network."""
    saved = {k: os.environ.get(k) for k in OFFLINE_VARS}
    os.environ.update({k: "1" for k in OFFLINE_VARS})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def package_status(dist: str, module: str) -> dict[str, str]:
    """{"version", "status"}: status "ok", "not installed", or "import fails: ..." for a broken install."""
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return {"version": "", "status": "not installed"}
    try:
        with warnings.catch_warnings():  # deprecation chatter of a dependency is not a finding
            warnings.simplefilter("ignore")
            importlib.import_module(module)
    except Exception as exc:  # a broken install (ABI mismatch, missing shared library) is a finding
        return {"version": version, "status": f"import fails: {first_line(exc)}"}
    return {"version": version, "status": "ok"}


def _nvidia_driver() -> str:
    """The NVIDIA driver version from nvidia-smi (torch does not expose it), or "unknown"."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "unknown (no nvidia-smi)"
    try:
        out = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({type(exc).__name__})"
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _host_memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def device_info(device: torch.device) -> dict[str, Any]:
    """Name, memory and capabilities of ``device``."""
    info: dict[str, Any] = {"device": str(device), "type": device.type}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            memory_gb=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            device_count=torch.cuda.device_count(),
            bf16_supported=torch.cuda.is_bf16_supported(),
            driver=_nvidia_driver(),
        )
    elif device.type == "mps":
        info.update(name=f"Apple MPS ({platform.machine()})", memory_gb=_host_memory_gb())
    else:
        info.update(
            name=_cpu_name(), memory_gb=_host_memory_gb(), cores=os.cpu_count(), threads=torch.get_num_threads()
        )
    if isinstance(info.get("memory_gb"), float):
        info["memory_gb"] = round(info["memory_gb"], 1)
    return info


def bf16_autocast(device: torch.device) -> tuple[bool, str]:
    """(works, why not): whether a matmul under ``torch.autocast(device, bfloat16)`` runs in bf16 here."""
    try:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            out = torch.ones(4, 4, device=device) @ torch.ones(4, 4, device=device)
    except Exception as exc:  # an unsupported device/dtype pair raises (or warns and disables)
        return False, first_line(exc)
    if out.dtype != torch.bfloat16:
        return False, f"autocast left the matmul in {out.dtype}"
    return True, ""


def dataset_presence(data_dir: Path) -> list[dict[str, Any]]:
    """One row per (task, named dataset): available offline or missing (with the task's own message,
    which names the file to fetch). Parametric families such as ``path:<file>`` are not datasets to
    probe. Only the task's ``locate`` step runs (the files are there), nothing is loaded."""
    from harness import plugins
    from harness.errors import UserError

    rows = []
    with forced_offline():
        for task_name in plugins.available("task"):
            try:
                record = plugins.task(task_name)
            except UserError as exc:  # a broken plugin: reported, the others still probed
                rows.append(
                    {"task": task_name, "dataset": "", "status": "error", "detail": first_line(exc), "seconds": 0.0}
                )
                continue
            for dataset in (d.name for d in record.datasets if d.family is None):
                t0 = time.perf_counter()
                try:
                    record.locate(record.request("tiny", dataset), Path(data_dir))
                    status, detail = "available", ""
                except UserError as exc:
                    status, detail = "missing", str(exc).splitlines()[0][:300]
                except ImportError as exc:  # the loader's optional stack is absent: nothing can be there
                    status, detail = "missing", f"needs an optional package: {first_line(exc)}"
                except Exception as exc:  # a task that breaks while looking: report it, go on
                    status, detail = "error", first_line(exc)
                rows.append(
                    {
                        "task": task_name,
                        "dataset": dataset,
                        "status": status,
                        "detail": detail,
                        "seconds": round(time.perf_counter() - t0, 3),
                    }
                )
    return rows


def optuna_storage() -> dict[str, str]:
    """The storage ``optbench sweep`` uses without ``--storage`` (``default_storage_url`` of the default
    results folder, from the sweep code), and whether Optuna can open journal files here."""
    try:
        from harness.sweep.storage import default_storage_url

        url = default_storage_url(Path("results") / "<suite>")
    except Exception as exc:
        return {"default": "", "status": f"cannot ask the sweep code: {first_line(exc)}"}
    status = package_status("optuna", "optuna")
    if status["status"] != "ok":
        return {"default": url, "status": f"optuna {status['status']}: sweeps need `pip install optbench[sweep]`"}
    return {
        "default": url,
        "status": f"embedded journal file (optuna {status['version']}); --storage postgresql://... for a cluster",
    }


def collect(device: torch.device, data_dir: Path) -> dict[str, Any]:
    """The whole environment section as one JSON-ready dict."""
    amp_ok, amp_why = bf16_autocast(device)
    return {
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none (CPU build)",
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "device": device_info(device),
        "bf16_autocast": "yes" if amp_ok else f"no ({amp_why})",
        "packages": {dist: package_status(dist, module) for dist, module, _ in OPTIONAL_PACKAGES},
        "data_dir": str(data_dir),
        "data_dir_exists": data_dir.is_dir(),
        "data_dir_free_gb": round(shutil.disk_usage(data_dir).free / 2**30, 1) if data_dir.is_dir() else None,
        "datasets": dataset_presence(data_dir),
        "optuna_storage": optuna_storage(),
    }


def print_section(env: dict[str, Any], log) -> None:
    """The environment as a few aligned lines; datasets grouped per task."""
    dev = env["device"]
    mem = f", {dev['memory_gb']} GiB" if dev.get("memory_gb") else ""
    extra = ""
    if dev["type"] == "cuda":
        extra = (
            f", capability {dev['capability']}, {dev['multiprocessors']} SMs, driver {dev['driver']}, "
            f"{dev['device_count']} visible GPU(s)"
        )
    elif dev["type"] == "cpu":
        extra = f", {dev['cores']} cores, torch threads {dev['threads']}"
    log(f"  python          {env['python']}")
    log(f"  torch           {env['torch']}  (CUDA {env['cuda']}, cuDNN {env['cudnn']})")
    log(f"  device          {dev['device']}: {dev['name']}{mem}{extra}")
    log(f"  bf16 amp        {env['bf16_autocast']}")
    for dist, st in env["packages"].items():
        shown = (
            st["version"] + ("" if st["status"] == "ok" else f"  [{st['status']}]") if st["version"] else st["status"]
        )
        log(f"  {dist:<16}{shown}")
    free = f", {env['data_dir_free_gb']} GiB free" if env["data_dir_free_gb"] is not None else ""
    log(f"  data dir        {env['data_dir']}{'' if env['data_dir_exists'] else ' (does not exist)'}{free}")
    by_task: dict[str, dict[str, list[str]]] = {}
    for row in env["datasets"]:
        by_task.setdefault(row["task"], {}).setdefault(row["status"], []).append(row["dataset"])
    for task, groups in by_task.items():
        parts = [f"available: {', '.join(groups['available'])}"] if groups.get("available") else []
        if groups.get("missing"):
            parts.append(
                f"missing: {len(groups['missing'])} ({', '.join(groups['missing'][:4])}"
                f"{', ...' if len(groups['missing']) > 4 else ''})"
            )
        if groups.get("error"):
            parts.append(f"ERROR: {', '.join(groups['error'])}")
        log(f"  {task:<16}{'; '.join(parts)}")
    storage = env["optuna_storage"]
    log(f"  optuna          {storage['default']}  [{storage['status']}]")
