"""The report page of the committed fixture results (``tests/data/leaderboard``), built once per test
session: the HTML tests and the browser test read the same file."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "leaderboard"
_BUILT: dict[str, tuple] = {}


def fixture_data():
    """The fixture's ``ReportData`` (read once)."""
    if "data" not in _BUILT:
        from harness.report import data as rd

        _BUILT["data"] = rd.load(FIXTURE)
    return _BUILT["data"]


def fixture_page(base: Path):
    """(path of report.html, its ReportData, number of charts), written under ``base`` once."""
    if "page" not in _BUILT:
        from harness.report import html

        data = fixture_data()
        path, charts = html.write_page(data, Path(base) / "fixture_page" / "report.html")
        _BUILT["page"] = (path, data, charts)
    return _BUILT["page"]


def expected_rows(data) -> set[tuple[str, str]]:
    """(benchmark slug, optimizer) of every leaderboard row the page must show."""
    from harness import leaderboard
    from harness.report.html import slug

    return {(slug(tuple(r[k] for k in leaderboard.BENCH_KEYS)), r["optimizer"]) for r in data.board.rows}
