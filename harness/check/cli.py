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

Where: ``plan.py`` what runs where; ``sections.py`` each section under its clock; this module the input
(``--device``), the run in section order with the outputs rewritten after each, and the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.check import sections as check_sections
from harness.check.plan import plan_for
from harness.check.report import Report, print_summary, write_outputs
from harness.check.sections import CheckTimeout, Log
from harness.errors import UserError
from harness.outputs import writable_dir

SECTIONS = ("environment", "smoke", "optimizer_step", "throughput", "ns5")


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
        "environment": lambda: check_sections.environment(report, device, plan, log),
        "smoke": lambda: check_sections.smoke(report, device, plan, amp_modes, log),
        "optimizer_step": lambda: check_sections.optimizer_step(report, device, plan, log),
        "throughput": lambda: check_sections.throughput(report, device, plan, peak, peak_source, log),
        "ns5": lambda: check_sections.ns5(report, device, plan, peak, peak_source, log),
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
