"""``optbench report RESULTS [--out DIR] [--html]``: the figures behind a leaderboard as PNGs, an
``index.md`` that embeds them with the leaderboard, and with ``--html`` one self-contained page
(``report.html``, ``harness.report.html``).

Figures (matplotlib's Agg canvas, no display needed; one panel per benchmark; every figure says on
itself what its lines, bands and marks are, its legend sits right of the panels, and each optimizer
has one style everywhere, twins told apart by line style and marker: ``harness.report.style``):

* ``curves_<task>.png``: validation metric vs step of the eval runs, mean over seeds with a
  min..max band (diverged seeds left out).
* ``lr_sensitivity_<task>.png``: every tune trial's objective vs its ``hp_lr`` (log x), a scatter
  with a marker per tuning replicate, never joined (other hyperparameters vary between trials);
  diverged trials drawn as x on the panel's worst edge (their penalty would squash the axis).
* ``best_after_k_<task>.png``: expected best objective after k trials over random orderings of
  each optimizer's trials (closed form by order statistics, ``harness.stats.intervals.expected_best_after_k``,
  diverged trials counted at their penalty), ± one std, and the observed best-so-far in each
  replicate's trial order; the y range follows the curves (nothing forces 0 into it).
* ``performance_profile.png``: Dolan-More profiles over all benchmarks from each optimizer's mean
  eval metric (direction-aware ratios, ``harness.stats.intervals.performance_ratios``); every
  optimizer drawn, each with the number of benchmarks it ran; needs two benchmarks.
* ``budget_<task>.png``, ``delay_<task>.png``: only when the records hold runs at other step budgets
  or gradient delays: the leaderboard's mean and 95% interval per optimizer at each value.
* ``time_to_target_profile.png``: with budgets, delays or axes in the records, AlgoPerf's profile of
  the time-to-target medians (steps), one panel per condition with two or more full-budget
  benchmarks; ``axis_<name>.png``: the metric against each sweep axis (the delay axis aside: it has
  ``delay_<task>.png``), each cell's mean and 95% interval.
* ``temperature.png``: SoftSignum/SoftMuon temperature tau (curves split "opt", name "tau") of the
  eval runs from the first logged point after the switch at step floor(alpha_sign * K).

A figure whose data is absent is skipped, and ``index.md`` says why. Files are written atomically,
mode 0666 less the umask (``harness.outputs``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from harness import leaderboard
from harness.errors import UserError
from harness.outputs import atomic_write_bytes, atomic_write_text
from harness.report import conditions, figures
from harness.report import data as rd
from harness.report.style import png_bytes

if TYPE_CHECKING:
    from harness.leaderboard.conditions import Extras


@dataclass
class Report:
    """What a report run produced: figures written (path, title, caption), skipped notes, and the
    HTML page (None without ``html``) with the number of charts in it."""

    out_dir: Path
    figures: list[tuple[Path, str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    page: Path | None = None
    charts: int = 0


def _save(fig, path: Path) -> None:
    """PNG rendered in memory, then written atomically, so a reader never sees half a figure."""
    atomic_write_bytes(path, png_bytes(fig))


def write_pngs(data: rd.ReportData, out: Path, report: Report) -> None:
    for kind in ("curves", "lr_sensitivity", "best_after_k"):
        rows = data.evals if kind == "curves" else data.tunes
        if rows.empty:
            continue
        made = figures.task_figures(kind, data)
        for task, fig in made.items():
            path = out / f"{kind}_{task}.png"
            _save(fig, path)
            report.figures.append(
                (path, f"{_TITLES[kind]}: {task}", figures.CAPTIONS[kind].format(split=data.metric_split))
            )
        if not made:
            report.skipped.append(_EMPTY[kind])
    if data.evals.empty:
        report.skipped.append("validation curves skipped: no eval runs (phase eval)")
    if data.tunes.empty:
        report.skipped.append("LR sensitivity and best-after-k skipped: no tune runs (phase tune)")
    if data.board is None:
        report.skipped.append("performance profile skipped: no leaderboard (see above)")
    else:
        fig, skipped = figures.profile_figure(data.board)
        if fig is None:
            report.skipped.append(skipped)
        else:
            _save(fig, out / "performance_profile.png")
            report.figures.append((out / "performance_profile.png", "Performance profile", figures.CAPTIONS["profile"]))
    for column in data.conditions:  # budgets, delays: only when the records hold such runs
        for task, fig in figures.condition_figures(conditions.compute(data, column)).items():
            path = out / f"{column}_{task}.png"
            _save(fig, path)
            report.figures.append((path, f"{_TITLES[column]}: {task}", figures.CAPTIONS[column]))
    _condition_pngs(data, out, report)
    fig = figures.temperature_figure(data)
    if fig is None:
        report.skipped.append(
            "temperature trace skipped: no SoftSignum/SoftMuon runs with a 'tau' curve (curves split 'opt', name 'tau')"
        )
    else:
        _save(fig, out / "temperature.png")
        report.figures.append((out / "temperature.png", "Temperature trace", figures.CAPTIONS["temperature"]))


def _condition_pngs(data: rd.ReportData, out: Path, report: Report) -> None:
    """The time-to-target profile and the metric-vs-axis figures: only when the records hold
    conditions or axes (``ReportData.full``)."""
    # cast: Leaderboard.extras is annotated object (harness.leaderboard.compute), and compute(), which
    # made data.full, always sets an Extras there.
    if data.full is None or not cast("Extras", data.full.extras).active:
        return
    fig = figures.time_profile_figure(data)
    if fig is not None:
        _save(fig, out / "time_to_target_profile.png")
        report.figures.append(
            (
                out / "time_to_target_profile.png",
                "Time to target: performance profile",
                figures.CAPTIONS["time_profile"],
            )
        )
    elif conditions.time_rows(data):
        report.skipped.append(
            "time-to-target profile skipped: it needs at least 2 full-budget benchmarks with a "
            "target under one condition"
        )
    for axis, fig in figures.axis_figures(data).items():
        path = out / f"axis_{axis}.png"
        _save(fig, path)
        report.figures.append((path, f"Metric vs {axis}", figures.CAPTIONS["axis"]))


_TITLES = {
    "curves": "Validation curves",
    "lr_sensitivity": "LR sensitivity",
    "best_after_k": "Best after k trials",
    "budget": "Metric vs step budget",
    "delay": "Metric vs gradient delay",
}
_EMPTY = {
    "curves": "validation curves skipped: the eval runs have no validation curves",
    "lr_sensitivity": "LR sensitivity skipped: the tune runs have no hp_lr column",
    "best_after_k": "best-after-k skipped: no tune run has a finite objective",
}


def make_report(
    results,
    out_dir=None,
    *,
    metric_split: str = "test",
    allow_mixed: bool = False,
    html: bool = False,
    mixed_versions: bool = False,
) -> Report:
    """Write every figure whose data exists and ``index.md`` into ``out_dir`` (default
    ``RESULTS/report``), and with ``html`` the page ``report.html``. Raises ``UserError`` when
    there are no run records at all, before writing anything."""
    from harness.outputs import writable_dir
    from harness.results import store as records

    if metric_split not in leaderboard.METRIC_SPLITS:
        raise UserError(f"unknown metric split {metric_split!r}; known: {', '.join(leaderboard.METRIC_SPLITS)}")
    root = records.results_root(results)
    out = Path(out_dir) if out_dir is not None else root / "report"
    if root.exists():  # a missing results folder is load_runs' error to name
        writable_dir(out, "report folder (--out)")
    data = rd.load(results, metric_split=metric_split, allow_mixed=allow_mixed, mixed_versions=mixed_versions)
    report = Report(out_dir=out)
    write_pngs(data, out, report)
    report.warnings = list(data.warnings)
    if html:
        from harness.report import html as page

        report.page, report.charts = page.write_page(data, out / "report.html")
    _write_index(report, data.board, data.board_note, data.full)
    return report


def _shift_headings(markdown: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _write_index(report: Report, board, board_note: str, full=None) -> None:
    suites = ", ".join(board.suites) if board else ""
    lines = [f"# optbench report{': ' + suites if suites else ''}", ""]
    if report.page is not None:
        lines += [
            f"The same, sortable and with a drill-down per benchmark: [report.html]"
            f"({os.path.relpath(report.page, report.out_dir)}) (one file, works offline).",
            "",
        ]
    if board is not None:
        lines += [_shift_headings(leaderboard.render_markdown(board)), ""]
        if full is not None:  # budgets, delays, axes, time to target: the leaderboard's own sections
            from harness.leaderboard.render_conditions import sections

            lines += [_shift_headings("\n".join(sections(full))), ""]
    else:
        lines += ["## Leaderboard", "", f"Not available: {board_note}", ""]
    lines += ["## Figures", ""]
    for path, title, caption in report.figures:
        rel = os.path.relpath(path, report.out_dir)
        lines += [f"### {title}", "", f"![{title}]({rel})", "", caption, ""]
    if report.skipped or report.warnings:
        lines += ["## Skipped", ""]
        lines += [f"- {note}" for note in report.skipped + report.warnings]
        lines.append("")
    atomic_write_text(report.out_dir / "index.md", "\n".join(lines))
