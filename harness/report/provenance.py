"""The page's provenance tab: what the runs recorded about where and with what they ran, the
benchmark variants, and what made the page."""

from __future__ import annotations

import html
import json
import math
import platform

from harness import leaderboard
from harness.report import data as rd
from harness.report.style import bench_title

E = html.escape
# record column -> what it says (in the order shown)
RECORDED = {
    "git_sha": "optbench commit of the runs",
    "optimizer_origin": "where each optimizer came from",
    "optimizer_version": "plugin optimizer package version",
    "task_origin": "where each task came from",
    "task_version": "plugin task package version",
    "torch_version": "torch",
    "python_version": "Python",
    "device": "device",
    "world_size": "DDP processes",
    "amp": "mixed precision ('' = fp32)",
    "compile": "torch.compile",
    "implementation": "optimizer implementation",
    "suite": "suite",
    "schema_version": "record schema version",
}


def _values(frame, column: str) -> str:
    if column not in frame.columns:
        return '<span class="muted">not recorded</span>'
    counts = frame[column].fillna("").astype(str).replace("", "''").value_counts()
    return "; ".join(f"{E(str(v))} ({n} runs)" for v, n in sorted(counts.items()))


def _maker() -> list[tuple[str, str]]:
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    from harness.run.assemble import git_sha

    return [
        ("optbench", f"{version('optbench')} (commit {git_sha()})"),
        ("Python", platform.python_version()),
        ("matplotlib / numpy / pandas", " / ".join(version(d) for d in ("matplotlib", "numpy", "pandas"))),
        (
            "machine",
            f"{platform.system()} {platform.release()} {platform.machine()}, "
            f"{_cpus()} CPUs, {E(platform.processor() or 'unknown processor')}",
        ),
    ]


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _table(rows: list[tuple[str, str]], head: tuple[str, str]) -> str:
    body = "".join(f"<tr><th>{E(a)}</th><td>{b}</td></tr>" for a, b in rows)
    return f"<table><thead><tr><th>{E(head[0])}</th><th>{E(head[1])}</th></tr></thead><tbody>{body}</tbody></table>"


def _variants(frame, keys) -> str:
    body = []
    for key in keys:
        rows = frame[(frame[list(leaderboard.BENCH_KEYS)] == list(key)).all(axis=1)]
        if rows.empty:
            continue
        options = sorted(set(rows["task_options"].fillna("").astype(str))) if "task_options" in rows else []
        steps = sorted({int(s) for s in map(rd.finite, rows["steps"]) if math.isfinite(s)}) if "steps" in rows else []
        metric = ", ".join(sorted(set(rows["metric"])))
        body.append(
            f"<tr><td>{E(key[0])} / {E(bench_title(key))}</td><td>{E(key[3] or '—')}</td>"
            f"<td><code>{'</code>; <code>'.join(E(_compact(o)) for o in options) or '—'}</code></td>"
            f'<td class="num">{E(", ".join(map(str, steps)))}</td><td>{E(metric)}</td>'
            f'<td class="num">{len(rows)}</td></tr>'
        )
    return (
        "<table><thead><tr><th>benchmark</th><th>variant</th><th>task options</th><th>steps</th>"
        f"<th>metric</th><th>runs</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _compact(text: str) -> str:
    try:
        return json.dumps(json.loads(text), sort_keys=True) if text else "{}"
    except json.JSONDecodeError:
        return text


def section(data: rd.ReportData, keys) -> str:
    frame = data.frame
    span = ""
    if "started_at" in frame.columns and "finished_at" in frame.columns:
        started = sorted(s for s in frame["started_at"].dropna().astype(str) if s)
        finished = sorted(s for s in frame["finished_at"].dropna().astype(str) if s)
        if started and finished:
            span = f"<p>Runs from {E(started[0])} to {E(finished[-1])} ({len(frame)} run records).</p>"
    recorded = [(f"{what} ({column})", _values(frame, column)) for column, what in RECORDED.items()]
    conditions = "".join(
        f"<p>{E(rd.CONDITIONS[c][1])}: values {E(', '.join(f'{v:g}' for v in vs))}.</p>"
        for c, vs in data.conditions.items()
    )
    return (
        "<h3>Recorded by the runs</h3>"
        + span
        + _table(recorded, ("what", "values (runs)"))
        + '<h3>Benchmarks and their variants</h3><p class="muted">A variant is the task options or step '
        "budget that tell apart settings of one (task, dataset, size); they are never ranked together.</p>"
        + _variants(frame, keys)
        + conditions
        + "<h3>This page</h3>"
        + _table(_maker(), ("what", "value"))
        + '<p class="muted">Charts are matplotlib figures inlined as SVG; the only script is the inline one '
        "that sorts tables and switches tabs. Nothing is loaded from the network.</p>"
    )
