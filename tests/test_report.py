"""Report: every figure written as a valid PNG from the fixture records, index.md embedding them and
the leaderboard, figures without data skipped with a note, the CLI's exit-2 path."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.report import plots as report
from harness.results import store as records

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "leaderboard"
FIGURES = (
    "curves_gnn_graphland.png",
    "curves_tabular_mlp.png",
    "lr_sensitivity_gnn_graphland.png",
    "lr_sensitivity_tabular_mlp.png",
    "best_after_k_gnn_graphland.png",
    "best_after_k_tabular_mlp.png",
    "performance_profile.png",
    "temperature.png",
)


def _assert_png(path: Path) -> None:
    """A complete PNG: signature, an IHDR with a sane size, and a final IEND chunk; Pillow decodes it."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 200 <= width <= 5000 and 200 <= height <= 5000, (path, width, height)
    assert data[-8:-4] == b"IEND"
    from PIL import Image

    with Image.open(path) as image:
        image.verify()


def test_report_writes_every_figure_and_index(tmp_path):
    out = tmp_path / "report"
    result = report.make_report(FIXTURE, out)
    assert sorted(p.name for p, _, _ in result.figures) == sorted(FIGURES)
    assert result.skipped == [] and result.warnings == []
    for name in FIGURES:
        _assert_png(out / name)
    index = (out / "index.md").read_text(encoding="utf-8")
    for name in FIGURES:
        assert f"]({name})" in index, name
    # the leaderboard is embedded, its headings one level down
    assert "## Leaderboard: fixture" in index and "### Aggregate" in index
    assert "**0.9708 ± 0.0051**" in index  # the best breast_cancer entry, bold as in expected.md
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".*.png"))  # no temp files left


def test_figures_without_data_are_skipped_with_a_note(tmp_path):
    """Only adamw's tune trials on one dataset: no eval runs, no Soft* runs, one benchmark."""
    src = tmp_path / "results"
    frame = records.read_runs(FIXTURE)
    keep = frame[(frame["optimizer"] == "adamw") & (frame["phase"] == "tune") & (frame["dataset"] == "sbm")]
    for run_id in keep["run_id"]:
        for sub in ("runs", "curves"):
            (src / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURE / sub / f"{run_id}.parquet", src / sub)
    result = report.make_report(src)  # default out: RESULTS/report
    out = src / "report"
    assert sorted(p.name for p, _, _ in result.figures) == [
        "best_after_k_gnn_graphland.png",
        "lr_sensitivity_gnn_graphland.png",
    ]
    for p, _, _ in result.figures:
        _assert_png(p)
    index = (out / "index.md").read_text(encoding="utf-8")
    assert "Not available: no eval runs under" in index
    for note in ("validation curves skipped: no eval runs", "performance profile skipped", "temperature trace skipped"):
        assert note in index, note
    assert not (out / "temperature.png").exists()


def test_report_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        report.make_report(tmp_path / "missing")
    (tmp_path / "runs").mkdir()
    with pytest.raises(UserError, match="no run records"):
        report.make_report(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(tmp_path / "missing")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "optbench report: error:" in proc.stderr


def test_the_report_uses_the_margins_the_sweep_file_declared(tmp_path):
    """The report's verdicts are the leaderboard's: both read the margins of ``plan.json`` (a sweep
    file's ``margin:``), not the defaults, when the sweep declared one."""
    import json

    from harness import leaderboard
    from harness.report import data as rd

    src = tmp_path / "results"
    shutil.copytree(FIXTURE, src)
    default = rd.load(src).board
    assert default is not None and {r["margin_rule"] for r in default.rows} != {"the sweep file"}
    runs = records.read_runs(src)
    studies = [
        {
            "study": name,
            "trials": 0,  # every eval row is in the budget whatever slot it evaluates (tune rows are left out)
            "eval_seeds": sorted(int(s) for s in rows.loc[rows["phase"] == "eval", "seed"].unique()),
            "transfer_from": None,
            "branch_from": None,
            "direction": str(rows["direction"].iloc[0]),
        }
        for name, rows in runs.groupby("study")
    ]
    margins = {"everywhere": {"kind": "absolute", "value": 0.25}}
    (src / "plan.json").write_text(
        json.dumps({"format": 1, "sweep_sha256": "", "studies": studies, "margins": margins})
    )
    declared = rd.load(src).board
    board, _ = leaderboard.build(src)
    assert declared is not None
    assert {r["margin"] for r in declared.rows if r["margin"] is not None} == {0.25}
    key = ("task", "dataset", "optimizer", "margin", "vs_best_verdict", "vs_adamw_verdict")
    assert [tuple(r[k] for k in key) for r in declared.rows] == [tuple(r[k] for k in key) for r in board.rows]
    # a margin of 0.25 makes comparisons equivalent that the default margin left otherwise
    changed = [(a["vs_best_verdict"], b["vs_best_verdict"]) for a, b in zip(default.rows, declared.rows)]
    assert any(before != after and after == "equivalent" for before, after in changed), changed
