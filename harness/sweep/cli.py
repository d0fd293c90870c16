"""``optbench sweep``, ``optbench worker`` and ``optbench suite``: run a sweep file (see
``harness.sweep``) with local worker processes, join one from any machine, or tune + evaluate +
write the leaderboard in one command.

Progress: one live line per worker (trials done / total over the sweep and the current best) on a
terminal; one plain line per finished run otherwise (CI logs), so logs stay readable. Warnings of the
sweep (a repaired journal, a lost record queued again) print as ``optbench sweep: warning: ...``.

The final line counts the planned runs that have a readable record, read from the records::

    optbench sweep: suite demo: 175/175 runs recorded (100 tune, 75 eval; 3 diverged, 1 failed) in 308s; 1 given up (failed on every attempt): demo/llm/pydoc/muon tune slot 2 (4 attempts raised; RuntimeError: ...)

followed, when some planned run has no readable record, by a line naming them and "re-run the same
command to resume". The exit code is 0 exactly when every planned run has a readable record (a
given-up run has its ``failed`` record), else 1; bad input is 2, Ctrl-C 130.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from harness.outputs import say, silence

DEFAULT_RESULTS = Path("results")
PROGRESS_MODES = ("auto", "bar", "plain", "json", "none")


# ---------------------------------------------------------------------------------------------
# Progress rendering
# ---------------------------------------------------------------------------------------------


def _short(study: str) -> str:
    """``demo/tabular_mlp/digits/adamw`` -> ``tabular_mlp/digits/adamw`` (the suite is known)."""
    return study.split("/", 1)[1] if "/" in study else study


def _terminal_width(stream: TextIO) -> int:
    """Columns of the terminal behind ``stream``; 0 when it is not one (or reports no size)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else 0
    except (OSError, ValueError, AttributeError):
        return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


class Progress:
    """Renders ``harness.sweep.Event`` objects: ``bar`` (one tqdm line per worker), ``plain`` (one
    line per finished run), ``json`` (one JSON event per line, read by ``optbench sweep``) or ``none``."""

    def __init__(self, mode: str, workers: int, stream: TextIO | None = None, tally: Any = None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if _terminal_width(self.stream) > 0 else "plain"
        self.mode = mode
        self.bars: dict[int, Any] = {}
        self.order: list[int] = []
        self.workers = workers
        self.started = time.monotonic()
        self.tally = tally  # harness.sweep.eta.Tally: the time left, from the measured runs
        self.eta = ""
        self.reporting: set[int] = set()  # workers that finished a run: those the work left is shared by

    def __call__(self, event) -> None:
        if self.tally is not None:
            self.tally.update(event)
            if event.kind == "run":
                self.reporting.add(event.worker)
            busy = min(self.workers, max(1, len(self.reporting)))
            estimate = self.tally.estimate(busy) if event.kind == "run" and event.done < event.total else None
            self.eta = f" {estimate.text(short=True)}" if estimate is not None else ""
        try:
            if self.mode == "json":
                print(event.to_json(), file=sys.stdout, flush=True)
            elif self.mode == "plain":
                self._plain(event)
            elif self.mode == "bar":
                self._bar(event)
        except BrokenPipeError:
            # Whoever read the progress went away (`| head -1`): stop showing it, never stop the sweep.
            silence(sys.stdout if self.mode == "json" else self.stream)
            self.mode = "none"

    def _describe(self, event) -> str:
        if event.kind == "done":
            return f"finished ({event.done}/{event.total} runs in the sweep)"
        what = f"{_short(event.study)} {event.phase} {event.slots_done}/{event.slots_total}"
        status = event.status if event.status not in ("", "ok") else ""
        status = " skipped (already done)" if event.skipped else (f" {status}" if status else "")
        if event.detail:
            status += f" ({event.detail})"
        best = f" best {event.metric} {_num(event.best)}" if event.phase == "tune" else ""
        return f"{what}: {event.metric} {_num(event.value)}{status}{best} ({event.seconds:.1f}s)"

    def _plain(self, event) -> None:
        elapsed = time.monotonic() - self.started
        print(
            f"[w{event.worker} {event.done}/{event.total} {elapsed:6.0f}s{self.eta}] {self._describe(event)}",
            file=self.stream,
            flush=True,
        )

    def _bar(self, event) -> None:
        from tqdm import tqdm

        bar = self.bars.get(event.worker)
        if bar is None:
            self.order.append(event.worker)
            bar = tqdm(
                total=event.total,
                position=len(self.order) - 1,
                desc=f"w{event.worker}",
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
                bar_format="{desc} {n_fmt}/{total_fmt} [{elapsed}]{postfix}",
            )
            self.bars[event.worker] = bar
        bar.total = event.total
        bar.n = event.done
        bar.set_postfix_str(f"{self.eta.strip()} {self._describe(event)}".strip(), refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            try:
                bar.close()
            except BrokenPipeError:
                silence(self.stream)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _out(args: argparse.Namespace, suite: str) -> Path:
    return Path(args.out) if args.out else DEFAULT_RESULTS / suite


def _worker_count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers must be an integer >= 1, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--workers must be an integer >= 1, got {n}")
    return n


def _sigterm_as_interrupt():
    """A cluster scheduler stops a job with SIGTERM: release the current trial as Ctrl-C does, after
    the running step and a checkpoint of it (``harness.run.preempt``), so the re-run resumes there.

    SIGINT gets Python's KeyboardInterrupt handler explicitly: a process started in the background by
    a non-interactive shell (``optbench sweep ... &``, nohup, some CI runners) inherits SIGINT as
    ignored, and its workers would then never release their trials when told to stop."""
    from harness.run.preempt import sigterm_stops_training

    return sigterm_stops_training(interrupt_sigint=True)


@contextlib.contextmanager
def _plain_warnings(command: str):
    """Print a sweep's warnings (``harness.sweep.storage.SweepWarning``: a repaired journal, a lost
    record queued again, ...) as ``optbench <command>: warning: ...``, each one, not Python's
    file:line form."""
    from harness.sweep.storage import SweepWarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SweepWarning):
            say(f"optbench {command}: warning: {message}")
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", SweepWarning)
        previous = warnings.showwarning
        warnings.showwarning = show
        yield


def final_line(command: str, suite: str, counts, seconds: float) -> list[str]:
    """The closing lines of ``optbench sweep`` / ``suite``: planned runs with a readable record
    (from the records themselves), then what was given up and what is missing."""
    lines = [
        f"optbench {command}: suite {suite}: {counts.recorded}/{counts.planned} runs recorded "
        f"({counts.tune} tune, {counts.eval} eval; {counts.diverged} diverged, {counts.failed} failed) "
        f"in {seconds:.0f}s"
    ]
    if counts.given_up:
        lines[0] += (
            f"; {len(counts.given_up)} given up (failed on every attempt): "
            + "; ".join(counts.given_up[:5])
            + (" ..." if len(counts.given_up) > 5 else "")
        )
    if counts.unrecorded:  # a re-run cannot help these: say what they are, not "re-run"
        shown = "; ".join(counts.unrecorded[:5]) + (" ..." if len(counts.unrecorded) > 5 else "")
        lines.append(
            f"optbench {command}: {len(counts.unrecorded)} given-up run(s) have no record and none can be "
            f"written: {shown}"
        )
    if counts.missing:
        shown = ", ".join(counts.missing[:5]) + (" ..." if len(counts.missing) > 5 else "")
        lines.append(
            f"optbench {command}: {len(counts.missing)} planned run(s) have no readable record ({shown}); "
            "re-run the same command to resume"
        )
    return lines


def _tally(sweep, url: str, info):
    """The measured runs and finished slots the storage already holds (a resumed sweep's estimate
    of the time left starts from them), or an empty tally when the storage cannot tell."""
    from harness.sweep import eta
    from harness.sweep.ledger import Ledger

    try:
        return eta.Tally.from_ledger(Ledger(sweep, url, info=info))
    except Exception:  # noqa: BLE001 -- an estimate only; the workers will report the real trouble
        return eta.Tally.empty(sweep)


def run_sweep(args: argparse.Namespace) -> tuple[int, Any, Path]:
    """Validate, prepare and run the sweep with ``args.workers`` workers: local processes, or
    SLURM array tasks (``--launcher slurm``: ``harness.sweep.slurm_follow``). The exit code is 0
    exactly when every planned run has a readable record afterwards (a worker process that died on
    the way does not matter if the others made up for it), else 1; 130 when interrupted."""
    from harness.sweep import local as sweep_local
    from harness.sweep import schema as sweep_schema
    from harness.sweep import slurm_follow
    from harness.sweep import status as sweep_status
    from harness.sweep import storage as sweep_storage

    resources = slurm_follow.resources_from_args(args)  # bad flags exit 2 before anything is read
    sweep = sweep_schema.load(args.sweep)
    out = _out(args, sweep.suite)
    if resources is not None:
        slurm_follow.check_ready(resources)  # submitit, sbatch, the partition: before anything is written
    with _plain_warnings(args.command):
        url, info = sweep_local.prepare(sweep, out, args.storage)
        for note in sweep.notes:
            say(f"optbench {args.command}: note: {note}")
        started = time.monotonic()
        where = "SLURM array task(s)" if resources is not None else "worker(s)"
        say(
            f"optbench {args.command}: suite {sweep.suite}: {len(sweep.studies)} studies, {sweep.planned_runs} runs "
            f"planned, {args.workers} {where}; results in {out}, storage {sweep_storage.redact_url(url)}"
        )
        if resources is not None:
            with _sigterm_as_interrupt():
                code, counts = slurm_follow.launch_and_follow(
                    sweep,
                    url,
                    out,
                    args.workers,
                    resources,
                    info=info,
                    command=args.command,
                    poll_s=args.slurm_poll,
                    folder=args.slurm_folder,
                )
            if counts is None:  # interrupted: the jobs keep running
                return 130, sweep, out
        else:
            sweep_status.record_launch(out, "local", url, args.workers)
            progress = Progress(args.progress, args.workers, tally=_tally(sweep, url, info))
            try:
                with _sigterm_as_interrupt():
                    code = sweep_local.run_local_workers(
                        sweep,
                        url,
                        out,
                        args.workers,
                        progress,
                        info=info,
                        on_line=lambda i, line: say(f"[w{i}] {line}"),
                    )
            finally:
                progress.close()
            counts = sweep_local.census(sweep, url, out, info=info)
    for line in final_line(args.command, sweep.suite, counts, time.monotonic() - started):
        say(line)
    if code != 0 and resources is None:
        what = "the others finished its runs" if counts.complete else "see above"
        say(f"optbench {args.command}: a worker process exited with code {code}; {what}")
    return (0 if counts.complete else 1), sweep, out


def cmd_sweep(args: argparse.Namespace) -> int:
    code, _, _ = run_sweep(args)
    return code


def cmd_worker(args: argparse.Namespace) -> int:
    """Join a sweep: claim and run planned runs until every study is tuned and evaluated."""
    from harness.sweep import local as sweep_local
    from harness.sweep import schema as sweep_schema
    from harness.sweep import storage as sweep_storage
    from harness.sweep import worker as sweep_worker
    from harness.sweep.resolve import preflight

    sweep = sweep_schema.load(args.sweep)
    out = _out(args, sweep.suite)
    with _plain_warnings(args.command):
        info = None
        if not args.no_preflight:
            info = preflight(sweep)
            sweep_local.check_outputs(sweep, out, args.storage)
        url = args.storage or sweep_storage.default_storage_url(out)
        out.mkdir(parents=True, exist_ok=True)
        worker_id = os.getpid() if args.worker_id is None else args.worker_id
        progress = Progress(args.progress, 1)
        try:
            with _sigterm_as_interrupt():
                sweep_worker.Worker(sweep, url, out, worker_id=worker_id, on_event=progress, info=info).run()
        finally:
            progress.close()
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    """Tune, evaluate, then write the leaderboard (CSV + Markdown) into the results folder."""
    code, sweep, out = run_sweep(args)
    if code != 0:
        return code
    from harness import leaderboard

    paths = leaderboard.write(out, out, formats=("csv", "md"), metric_split="test")
    for path in paths:
        say(f"optbench suite: wrote {path}")
    md = next((p for p in paths if str(p).endswith(".md")), None)
    if md is not None:
        say(Path(md).read_text(), sys.stdout)  # a closed pipe drops it; the suite's work is done either way
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep``, ``worker`` and ``suite`` to the ``optbench`` command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file (see sweeps/demo.yaml)")
    common.add_argument("--out", metavar="DIR", help="results folder (default: results/<suite>)")
    common.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default="auto",
        help="auto: live lines on a terminal, one line per run otherwise; json: machine events",
    )

    storage_help = (
        "Optuna storage: postgresql://user:pass@host/db for a cluster, or a journal file path "
        "(default: <out>/optuna.journal)"
    )
    for name, func, about in (
        (
            "sweep",
            cmd_sweep,
            "tune every (task, dataset, optimizer) of a sweep file, then evaluate the best "
            "configurations on fresh seeds; re-run to resume",
        ),
        ("suite", cmd_suite, "sweep, then write the leaderboard (CSV + Markdown) into the results folder"),
    ):
        p = subparsers.add_parser(name, parents=[common], help=about, description=about)
        p.add_argument(
            "--workers",
            type=_worker_count,
            default=1,
            metavar="N",
            help="worker processes: local ones, or SLURM array tasks with --launcher slurm (default 1)",
        )
        p.add_argument("--storage", metavar="URL", help=storage_help)
        from harness.sweep.slurm_follow import add_arguments

        add_arguments(p)
        p.set_defaults(func=func)

    p = subparsers.add_parser(
        "worker",
        parents=[common],
        help="join a running sweep from any machine",
        description="Join a sweep: claim and run its planned runs until it is complete. "
        "Start any number of these, on any machines, against one --storage.",
    )
    p.add_argument("--storage", metavar="URL", help=storage_help)
    p.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-preflight", action="store_true", help=argparse.SUPPRESS)  # set by `optbench sweep`
    p.set_defaults(func=cmd_worker)


__all__ = ["register", "Progress"]
