"""``optbench check``: validate a machine for optbench and measure it, in one command.

    optbench check [--device cpu|cuda|mps] [--quick] [--out DIR] [--peak-tflops X]

Sections, each printed as it runs, each with a time budget (``Plan``):
  environment     Python, torch, CUDA/driver, the device, optional stacks, data dir and the datasets
                  present offline, the default Optuna storage (``harness/check/env.py``).
  smoke           every registered task x optimizer at ``tiny`` on the device, fp32 and (where autocast
                  works) bf16, pass/fail (``harness/check/smoke.py`` says what counts as a pass).
  optimizer_step  each optimizer's step time as a ratio to torch.optim.AdamW(foreach=True)
                  (``harness/check/step.py``, the logic of ``benchmarks/optimizer_step.py``).
  throughput      training items/s of every task family; on CUDA at ``paper`` size in bf16, with the
                  130M LLM's model-FLOPs utilisation (``harness/check/speed.py``).
  ns5             Muon's Newton-Schulz (``optimizers.muon.newton_schulz5``) TFLOP/s, and its fraction of
                  the peak where the peak is known.

Budgets: a unit of work (a smoke cell, a parameter set, a throughput case, an NS5 shape) runs under a
time limit (SIGALRM, main thread) of at most what is left of its section's budget; a unit that fails
(an exception, an out-of-memory, a time-out) is recorded as failed and the check goes on. Units left when
a section's budget is spent are recorded as skipped. The full CUDA plan is sized to finish within 8
minutes on one H100-class GPU; ``--quick`` on CPU within about a minute.

Output: the tables on stdout, and ``check_<device>.csv`` (one row per result: section, item, status,
value, unit, ratio) plus ``check_<device>.json`` (everything) under ``--out`` (default
``results/check/<device>-<UTC time>/``). Exit code 0 when everything passed; 1 when any smoke cell or
any measurement failed (each named on stderr); 2 for bad input (``UserError``), before anything runs.
The check never downloads: offline mode is forced while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.check.report import Report, print_summary, write_outputs
from harness.errors import UserError
from harness.outputs import writable_dir

SECTIONS = ("environment", "smoke", "optimizer_step", "throughput", "ns5")
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
# What to run where


@dataclass(frozen=True)
class Plan:
    """Sizes, step counts and time budgets (seconds) of one check."""

    budgets: dict[str, float]
    smoke_steps: int
    smoke_cell_s: float
    step_sets: tuple[tuple[str, str, dict[str, Any]], ...]  # (set, description, llm_shapes kwargs or {"width": w})
    step_repeats: int
    step_warmup: int
    step_build_samples: int
    cases: tuple[Any, ...]
    case_s: float
    tp_steps: int
    tp_warmup: int
    llm_batch: int | None
    ns5_shapes: tuple[tuple[int, int, int], ...]
    ns5_repeats: int
    step_total_steps: int = 1000


def plan_for(device_type: str, quick: bool) -> Plan:
    """The plan for a device type. CUDA (full): 30 + 100 + 45 + 120 + 15 = 310 s of section budgets, so
    about 5.5 minutes worst case with start-up: inside the 8-minute target on one H100-class GPU, and
    room in a 10-minute session for ``benchmarks/gpu_session.sh``'s paper-size runs."""
    from harness.check.speed import Case
    from harness.check.step import LLM_SIZES

    names = ("cifar_resnet", "gnn_graphland", "llm", "lstm_lm", "tabular_mlp")
    resnet = lambda w: ("a", f"ResNet-18 width {w}", {"width": w})  # noqa: E731
    llm = lambda s: ("b", f"LLM {s}", dict(LLM_SIZES[s]))  # noqa: E731
    if device_type == "cuda" and not quick:
        paper = (
            Case("cifar_resnet", "paper", fallback_dataset="synthetic", options={"model": "resnet18"}),
            Case("gnn_graphland", "paper", fallback_dataset="sbm"),
            Case("llm", "paper", dataset="pydoc"),  # 130M, ctx 256, bf16: the MFU case
            Case("lstm_lm", "paper", dataset="pydoc"),
            Case("tabular_mlp", "paper", fallback_dataset="digits"),
        )
        return Plan(
            budgets={"environment": 30, "smoke": 100, "optimizer_step": 45, "throughput": 120, "ns5": 15},
            smoke_steps=8,
            smoke_cell_s=30,
            step_sets=(resnet(64), llm("130m")),
            step_repeats=20,
            step_warmup=5,
            step_build_samples=3,
            cases=paper,
            case_s=60,
            tp_steps=10,
            tp_warmup=3,
            llm_batch=128,
            ns5_shapes=((48, 768, 768), (36, 768, 2048), (1, 8192, 8192)),
            ns5_repeats=10,
        )
    if quick:
        # Budgets far above the ~15 s a quiet 2-core CPU needs: they only stop a hung unit, and a busy
        # shared machine must not turn slowness into failures.
        return Plan(
            budgets={"environment": 60, "smoke": 120, "optimizer_step": 90, "throughput": 60, "ns5": 30},
            smoke_steps=4,
            smoke_cell_s=20,
            step_sets=(resnet(8), llm("tiny")),
            step_repeats=7,
            step_warmup=2,
            step_build_samples=1,
            cases=tuple(Case(n, "tiny") for n in names),
            case_s=10,
            tp_steps=4,
            tp_warmup=1,
            llm_batch=None,
            ns5_shapes=((4, 64, 64), (2, 64, 256)),
            ns5_repeats=3,
            step_total_steps=100,
        )
    return Plan(
        budgets={"environment": 60, "smoke": 300, "optimizer_step": 600, "throughput": 300, "ns5": 60},
        smoke_steps=8,
        smoke_cell_s=60,
        step_sets=(resnet(64), llm("small")),
        step_repeats=5,
        step_warmup=2,
        step_build_samples=2,
        cases=tuple(Case(n, "small") for n in names),
        case_s=120,
        tp_steps=10,
        tp_warmup=2,
        llm_batch=None,
        ns5_shapes=((12, 256, 256), (4, 256, 1024)),
        ns5_repeats=5,
    )


# --------------------------------------------------------------------------------------------------
# Input


def parse_device(text: str | None):
    """``cpu``, ``mps``, ``cuda`` or ``cuda:N`` that exists here (default: cuda, else mps, else cpu);
    ``UserError`` naming the valid choices, or saying what is missing, otherwise."""
    import torch

    if text is None:
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", text):
        raise UserError(f"unknown device {text!r}; known: cpu, cuda, cuda:N, mps")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise UserError(
                f"--device {text}: CUDA is not available here (torch {torch.__version__}, {build}, "
                f"0 GPUs visible); use --device cpu"
            )
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise UserError(
                f"--device {text}: only {torch.cuda.device_count()} GPU(s) visible "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
        return torch.device("cuda", index)
    if text == "mps" and not torch.backends.mps.is_available():
        raise UserError(
            "--device mps: MPS is not available here (needs Apple silicon and a torch build with MPS); use --device cpu"
        )
    return torch.device(text)


def device_tag(device) -> str:
    """``cpu``, ``mps`` or ``cuda-<gpu name>`` (lower case, dashes): names the output files."""
    if device.type != "cuda":
        return device.type
    import torch

    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


# --------------------------------------------------------------------------------------------------
# The run


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


def run_check(
    device,
    *,
    quick: bool,
    out: Path,
    peak_override: float | None = None,
    sections: tuple[str, ...] = SECTIONS,
    log: Log | None = None,
) -> tuple[int, Report]:
    """Run the check on ``device`` and write ``out/check_<tag>.{csv,json}``; returns (exit code, report).

    ``sections`` restricts what runs (tests use it to keep in-process runs short)."""
    import torch

    from harness.check import env as check_env
    from harness.check import speed as check_speed

    log = log or (lambda line: print(line, flush=True))
    t_start = time.perf_counter()
    plan = plan_for(device.type, quick)
    tag = device_tag(device)
    name = check_env.device_info(device)["name"]
    peak, peak_source = check_speed.peak_tflops(name if device.type == "cuda" else None, peak_override)
    report = Report(device=device, tag=tag, device_name=name)
    report.details.update(
        device=str(device),
        quick=quick,
        peak_tflops=peak,
        peak_source=peak_source,
        started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        plan=dataclasses.asdict(plan),
    )
    log(f"optbench check on {device} ({name}){' --quick' if quick else ''}: sections {', '.join(sections)}")
    if device.type == "cuda":  # as the loop does for every run
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp_modes: tuple[str | None, ...] = (None, "bf16") if check_env.bf16_autocast(device)[0] else (None,)
    runners: dict[str, Callable[[], None]] = {
        "environment": lambda: _environment(report, device, plan, log),
        "smoke": lambda: _smoke(report, device, plan, amp_modes, log),
        "optimizer_step": lambda: _optimizer_step(report, device, plan, log),
        "throughput": lambda: _throughput(report, device, plan, peak, peak_source, log),
        "ns5": lambda: _ns5(report, device, plan, peak, peak_source, log),
    }
    with check_env.forced_offline():
        for section in SECTIONS:
            if section in sections:
                try:
                    runners[section]()
                except (Exception, CheckTimeout) as exc:  # a bug outside the units: keep the other sections
                    report.add(section, "section", "failed", detail=check_env.first_line(exc))
                    log(f"  {section} FAILED: {check_env.first_line(exc)}")
                # Rewritten after every section: a check killed from outside (a session's time limit)
                # still leaves what it measured so far.
                report.details.update(exit_code=None, wall_seconds=round(time.perf_counter() - t_start, 1))
                write_outputs(report, out)

    failures = report.failures()
    code = 1 if failures else 0
    report.details.update(
        wall_seconds=round(time.perf_counter() - t_start, 1),
        exit_code=code,
        failures=[f"{r['section']} {r['item']}: {r['detail']}" for r in failures],
    )
    print_summary(report, log)
    csv_path, json_path = write_outputs(report, out)
    log(f"\nwrote {csv_path} and {json_path}")
    verdict = (
        "all passed"
        if not failures
        else f"FAILED ({len(failures)}): " + "; ".join(f"{r['section']} {r['item']}" for r in failures)
    )
    log(f"check {verdict} in {report.details['wall_seconds']:.0f}s")
    if failures:
        print(f"optbench check: {len(failures)} failure(s):", file=sys.stderr)
        for line in report.details["failures"]:
            print(f"  {line}", file=sys.stderr)
    return code, report


def _environment(report: Report, device, plan: Plan, log: Log) -> None:
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


def _smoke(report: Report, device, plan: Plan, amp_modes, log: Log) -> None:
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


def _optimizer_step(report: Report, device, plan: Plan, log: Log) -> None:
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


def _throughput(report: Report, device, plan: Plan, peak, peak_source: str, log: Log) -> None:
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


def _ns5(report: Report, device, plan: Plan, peak, peak_source: str, log: Log) -> None:
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


# --------------------------------------------------------------------------------------------------
# CLI


def cmd_check(args: argparse.Namespace) -> int:
    device = parse_device(args.device)
    if args.peak_tflops is not None and not (math.isfinite(args.peak_tflops) and args.peak_tflops > 0):
        raise UserError(f"invalid --peak-tflops {args.peak_tflops!r} (must be a number > 0, in TFLOP/s)")
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a folder")
    else:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        out = Path("results") / "check" / f"{device_tag(device)}-{stamp}"
    writable_dir(out, "check output folder (--out)")  # before minutes of measuring, not after
    code, _ = run_check(device, quick=args.quick, out=out, peak_override=args.peak_tflops)
    return code


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="validate this machine (every task x optimizer) and measure it",
        description="Validate this machine for optbench (environment, every task x optimizer "
        "at tiny size) and measure it (optimizer-step ratios, throughput, MFU, "
        "NS5). Exit 1 if anything failed, 2 for bad input.",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda when present, else mps, else cpu)")
    p.add_argument(
        "--quick", action="store_true", help="fewer steps and smaller benchmark shapes (about a minute on a CPU)"
    )
    p.add_argument(
        "--out", metavar="DIR", help="folder for check_<device>.csv/.json (default: results/check/<device>-<UTC time>)"
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        metavar="X",
        help="peak dense bf16 TFLOP/s of the device for MFU (default: from a table of known GPUs)",
    )
    p.set_defaults(func=cmd_check)
