"""``optbench check``: the five sections, each under its clock.

Every section (``environment``, ``smoke``, ``optimizer_step``, ``throughput``, ``ns5``) runs its units
of work (a smoke cell, a parameter set, a throughput case, an NS5 shape) under ``time_limit`` (SIGALRM,
main thread) of at most what is left of its budget (``Plan.budgets``), records each unit's row in the
``Report`` and prints it as it goes; a unit that fails (an exception, an out-of-memory, a time-out) is
recorded as failed, and one stopped by the spent budget as skipped. ``harness.check.cli.run_check``
runs the sections in order; the measuring itself lives in ``env.py``, ``smoke.py``, ``step.py`` and
``speed.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from harness.check.plan import Plan
from harness.check.report import Report

__all__ = ["CheckTimeout", "time_limit", "environment", "smoke", "optimizer_step", "throughput", "ns5"]

Log = Callable[[str], None]


class CheckTimeout(BaseException):
    """A unit of work ran past its limit. A BaseException, so that ``except Exception`` blocks inside the
    code under test (e.g. the loop's diagnostics guard) cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CheckTimeout` in the main thread after ``seconds`` (SIGALRM). A no-op off the main
    thread, on platforms without ``setitimer`` or for ``None``. An outer timer (e.g. pytest-timeout's)
    is put back afterwards with the time it had left."""
    if seconds is None or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    if seconds <= 0:
        raise CheckTimeout("no time left in the section's budget")

    def fire(signum, frame):
        raise CheckTimeout(f"timed out after {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, fire)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    t0 = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - t0), 1e-3), outer_interval)


# --------------------------------------------------------------------------------------------------
# The sections


class _Section:
    """A section's clock: what is left of its budget, and its record in the report."""

    def __init__(self, report: Report, name: str, budget: float, log: Log):
        self.report, self.name, self.budget, self.log = report, name, budget, log
        self.t0 = time.perf_counter()
        log(f"\n== {name} (budget {budget:.0f}s)")

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def limit(self, unit_s: float | None = None) -> float:
        return min(self.left(), unit_s) if unit_s is not None else self.left()

    def status_for(self, exc: BaseException) -> str:
        """A unit stopped by ``exc``: "skipped" when the section's budget ran out (a plan too big for
        the machine, not a fault), else "failed" (an exception, or the unit's own time limit)."""
        return "skipped" if isinstance(exc, CheckTimeout) and self.left() <= 0.5 else "failed"

    def close(self) -> None:
        seconds = time.perf_counter() - self.t0
        self.report.sections[self.name] = {"seconds": round(seconds, 2), "budget_s": self.budget}
        self.log(f"   ({self.name}: {seconds:.1f}s)")


def environment(report: Report, device, plan: Plan, log: Log) -> None:
    from harness.check import env as check_env
    from harness.paths import data_dir

    sec = _Section(report, "environment", plan.budgets["environment"], log)
    try:
        with time_limit(sec.limit()):
            env = check_env.collect(device, data_dir())
        report.details["environment"] = env
        check_env.print_section(env, log)
        _env_rows(report, env)
    except (Exception, CheckTimeout) as exc:
        report.add("environment", "collect", sec.status_for(exc), detail=check_env.first_line(exc))
        log(f"  FAILED: {check_env.first_line(exc)}")
    sec.close()


def _env_rows(report: Report, env: dict[str, Any]) -> None:
    dev = env["device"]
    report.add("environment", "python", "ok", env["python"].split()[0])
    report.add("environment", "torch", "ok", env["torch"], detail=f"CUDA {env['cuda']}, cuDNN {env['cudnn']}")
    report.add("environment", "device", "ok", dev["name"], detail=json.dumps(dev, sort_keys=True))
    if dev.get("memory_gb"):
        report.add("environment", "device memory", "ok", dev["memory_gb"], "GiB")
    report.add("environment", "bf16 autocast", "ok", env["bf16_autocast"])
    for dist, st in env["packages"].items():
        report.add("environment", dist, "ok" if st["status"] == "ok" else "note", st["version"], detail=st["status"])
    report.add("environment", "data dir", "ok", env["data_dir"])
    for row in env["datasets"]:
        # A probe that crashed (not a missing file) is a bug in a task module: a failure of the check.
        status = {"available": "ok", "missing": "note"}.get(row["status"], "failed")
        report.add(
            "environment", f"dataset {row['task']}/{row['dataset']}", status, row["status"], detail=row["detail"]
        )
    report.add(
        "environment", "optuna storage", "ok", env["optuna_storage"]["default"], detail=env["optuna_storage"]["status"]
    )


def smoke(report: Report, device, plan: Plan, amp_modes, log: Log) -> None:
    from harness.check import smoke as check_smoke

    todo = check_smoke.cells(amp_modes)
    sec = _Section(report, "smoke", plan.budgets["smoke"], log)
    log(
        f"  {len(todo)} cells at tiny size, {plan.smoke_steps} steps each, precision "
        + " and ".join(a or "fp32" for a in amp_modes)
    )
    rows: list[dict[str, Any]] = []
    for i, cell in enumerate(todo):
        t0 = time.perf_counter()
        try:
            with time_limit(sec.limit(plan.smoke_cell_s)):
                row = check_smoke.run_cell(cell, device, plan.smoke_steps)
        except CheckTimeout as exc:
            row = {
                "task": cell.task,
                "optimizer": cell.optimizer,
                "amp": cell.amp or "fp32",
                "label": cell.label,
                "status": check_smoke.FAIL,
                "detail": f"not run to the end: {exc}",
                "seconds": time.perf_counter() - t0,
            }
        rows.append(row)
        if row["status"] != check_smoke.PASS:
            log(f"  {row['status']:<6}{cell.label}: {row['detail']}")
        if i + 1 == len(todo) or (todo[i + 1].task, todo[i + 1].amp) != (cell.task, cell.amp):
            group = [r for r in rows if (r["task"], r["amp"]) == (row["task"], row["amp"])]
            passed = sum(r["status"] != check_smoke.FAIL for r in group)
            log(
                f"  {cell.task:<16}{row['amp']:<6}{passed}/{len(group)} passed {sum(r['seconds'] for r in group):6.1f}s"
            )
    check_smoke.print_table(rows, log)
    for r in rows:
        report.add("smoke", r["label"], r["status"], round(r["seconds"], 3), "s", detail=r["detail"])
    report.details["smoke"] = rows
    sec.close()


def optimizer_step(report: Report, device, plan: Plan, log: Log) -> None:
    from harness.check import env as check_env
    from harness.check import step as check_step

    sec = _Section(report, "optimizer_step", plan.budgets["optimizer_step"], log)
    rows: list[dict[str, Any]] = []
    for set_name, about, kwargs in plan.step_sets:
        shapes = check_step.resnet18_shapes(**kwargs) if "width" in kwargs else check_step.llm_shapes(**kwargs)
        log(f"  {about}:")
        first = len(rows)
        try:
            with time_limit(sec.limit()):
                check_step.run_set(
                    set_name,
                    shapes,
                    device,
                    warmup=plan.step_warmup,
                    repeats=plan.step_repeats,
                    build_samples=plan.step_build_samples,
                    total_steps=plan.step_total_steps,
                    log=lambda line: log("  " + line),
                    rows=rows,
                )
        except (Exception, CheckTimeout) as exc:
            check_step.finish_rows(rows[first:], device)  # keep what was measured before the failure
            report.add(
                "optimizer_step", f"set {set_name} ({about})", sec.status_for(exc), detail=check_env.first_line(exc)
            )
            log(f"  set {set_name} stopped: {check_env.first_line(exc)}")
            _free(device)
    for r in rows:
        against = "AdamW steps (one-off build)" if r["phase"] == "build" else "torch AdamW(foreach) step"
        verdict = f"target {r['target']}: {r['ok']}" if r.get("target") else ""
        extra = f"; {r['vs_muon']:.2f}x Muon" if "vs_muon" in r else ""
        report.add(
            "optimizer_step",
            f"{r['set']} {r['optimizer']} {r['phase']}",
            "ok",
            round(r["ms"], 4),
            "ms",
            round(r["ratio"], 4),
            against,
            f"cpu-time ratio {r['cpu_ratio']:.2f}{extra}; {verdict}".strip("; "),
        )
    report.details["optimizer_step"] = rows
    sec.close()


def throughput(report: Report, device, plan: Plan, peak, peak_source: str, log: Log) -> None:
    from harness.check import env as check_env
    from harness.check import speed as check_speed

    sec = _Section(report, "throughput", plan.budgets["throughput"], log)
    rows = []
    for case in plan.cases:
        if sec.left() <= 0:
            report.add("throughput", case.label, "skipped", detail="the section's budget is spent")
            continue
        try:
            with time_limit(sec.limit(plan.case_s)):
                row = check_speed.measure(
                    case,
                    device,
                    steps=plan.tp_steps,
                    warmup=plan.tp_warmup,
                    amp=True,
                    compile=False,
                    llm_batch=plan.llm_batch,
                    data_dir=None,
                    peak=peak,
                )
        except (Exception, CheckTimeout) as exc:
            report.add("throughput", case.label, sec.status_for(exc), detail=check_env.first_line(exc))
            log(f"  {case.label:<22}FAILED: {check_env.first_line(exc)}")
            _free(device)
            continue
        rows.append(row)
        mfu = "" if math.isnan(row["mfu"]) else f", {row['tflops_per_s']:.1f} TFLOP/s, MFU {row['mfu']:.1%}"
        log(
            f"  {case.label:<22}{row['items_per_s']:>14,.0f} {row['unit']}/s  ({row['dataset']}, {row['amp']}, "
            f"{row['step_ms']:.1f} ms/step{mfu}){'  ' + row['notes'] if row['notes'] else ''}"
        )
        ratio_to = f"peak bf16 {peak:g} TFLOP/s ({peak_source})" if peak and case.task == "llm" else ""
        mfu_value = "" if math.isnan(row["mfu"]) else round(row["mfu"], 4)
        report.add(
            "throughput",
            f"{case.label} ({row['dataset']}, {row['amp']})",
            "ok",
            round(row["items_per_s"], 2),
            f"{row['unit']}/s",
            mfu_value,
            ratio_to,
            f"{row['step_ms']:.2f} ms/step, batch {row['batch_items']} {row['unit']}"
            + ("" if math.isnan(row["tflops_per_s"]) else f", {row['tflops_per_s']:.3g} TFLOP/s model flops")
            + (f"; {row['notes']}" if row["notes"] else ""),
        )
        _free(device)
    if peak is None:
        log(f"  MFU: no peak for this device ({peak_source})")
    report.details["throughput"] = rows
    sec.close()


def ns5(report: Report, device, plan: Plan, peak, peak_source: str, log: Log) -> None:
    from harness.check import env as check_env
    from harness.check import speed as check_speed

    sec = _Section(report, "ns5", plan.budgets["ns5"], log)
    rows = []
    for batch, r, c in plan.ns5_shapes:
        label = f"{batch}x{r}x{c}"
        try:
            with time_limit(sec.limit()):
                row = check_speed.time_ns5(batch, r, c, device, repeats=plan.ns5_repeats, peak=peak)
        except (Exception, CheckTimeout) as exc:
            report.add("ns5", label, sec.status_for(exc), detail=check_env.first_line(exc))
            log(f"  {label:<16}FAILED: {check_env.first_line(exc)}")
            _free(device)
            continue
        rows.append(row)
        frac = "" if math.isnan(row["frac_peak"]) else f", {row['frac_peak']:.1%} of peak"
        log(f"  {label:<16}{row['ms']:>10.3f} ms  {row['tflops_per_s']:>8.3f} TFLOP/s ({row['dtype']}{frac})")
        report.add(
            "ns5",
            f"{label} ({row['dtype']})",
            "ok",
            round(row["tflops_per_s"], 4),
            "TFLOP/s",
            "" if math.isnan(row["frac_peak"]) else round(row["frac_peak"], 4),
            f"peak bf16 {peak:g} TFLOP/s ({peak_source})" if peak else "",
            f"{row['ms']:.3f} ms per call",
        )
    report.details["ns5"] = rows
    sec.close()


def _free(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
