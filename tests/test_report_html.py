"""``optbench report --html``: one self-contained page. Read as HTML (no browser: that is
``test_report_browser.py``): nothing loaded from anywhere, one leaderboard row per (benchmark,
optimizer) with the leaderboard's own numbers and marks, every flag explained where it appears, a
drill-down per benchmark with its charts, provenance, budget and delay sections exactly when the
records hold such runs, the CLI path and its refusals."""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections import Counter
from html.parser import HTMLParser

import pandas as pd
import pytest
from report_page import FIXTURE, expected_rows, fixture_page

from harness import leaderboard
from harness.leaderboard import render_md as md
from harness.report import data as rd
from harness.report import html
from harness.results import store as records

KINDS = ["curves", "lr_sensitivity", "best_after_k", "temperature"]
VOID = {"br", "meta", "img", "input", "link", "hr", "wbr", "col", "area", "base", "source", "track", "embed", "param"}


class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children, self.text, self.tail = [], [], []  # text: before the first child; tail: after this node

    def all(self):
        yield self
        for child in self.children:
            yield from child.all()

    def find(self, tag=None, **attrs):
        return [
            n
            for n in self.all()
            if (tag is None or n.tag == tag) and all(n.attrs.get(k) == v for k, v in attrs.items())
        ]


class _Tree(HTMLParser):
    """A small DOM: every element with its attributes and text (enough to check the page)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.at = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_startendtag(self, tag, attrs):
        self.at.children.append(Node(tag, attrs, self.at))

    def handle_endtag(self, tag):
        node = self.at
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.at = node.parent

    def handle_data(self, data):
        if self.at.children:
            self.at.children[-1].tail.append(data)
        else:
            self.at.text.append(data)


def parse(text: str) -> Node:
    tree = _Tree()
    tree.feed(text)
    return tree.root


def text_of(node: Node) -> str:
    out = list(node.text)
    for child in node.children:
        out.append(text_of(child))
        out += child.tail
    return "".join(out)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path, data, charts = fixture_page(tmp_path_factory.getbasetemp())
    text = path.read_text(encoding="utf-8")
    return text, parse(text), data, charts


def test_page_is_one_offline_file(page):
    text, dom, _, _ = page
    for node in dom.all():
        for attr in ("src", "href", "xlink:href", "action", "data"):
            value = node.attrs.get(attr)
            assert value is None or value.startswith("#"), (node.tag, attr, value)
        assert node.tag not in ("link", "iframe", "img", "object", "embed"), node.tag
    scripts = dom.find("script")
    assert len(scripts) == 2 and all("src" not in s.attrs for s in scripts)
    outside = re.sub(r'xmlns(:xlink)?="http://www\.w3\.org/[^"]*"', "", text)
    assert "http://" not in outside and "https://" not in outside and not re.search(r"url\((?!#)", outside)
    ids = [n.attrs["id"] for n in dom.all() if "id" in n.attrs]
    assert len(ids) == len(set(ids)), [k for k, v in Counter(ids).items() if v > 1]


def test_leaderboard_rows_and_numbers_are_the_leaderboards(page):
    _, dom, data, _ = page
    (table,) = dom.find("table", id="board")
    rows = [n for n in table.find("tr") if "data-bench" in n.attrs]
    pairs = [(r.attrs["data-bench"], r.attrs["data-optimizer"]) for r in rows]
    assert len(pairs) == len(set(pairs)) == len(data.board.rows)
    assert set(pairs) == expected_rows(data)
    by_pair = dict(zip(pairs, rows))
    for key, bench_rows in rd.by_benchmark(pd.DataFrame(data.board.rows)).items():
        d = md._decimals(bench_rows.to_dict("records"))
        for row in bench_rows.to_dict("records"):
            cells = by_pair[(html.slug(key), row["optimizer"])].find("td")
            assert text_of(cells[3]).strip() == md._main_cell(row, d).replace("**", ""), row["optimizer"]
    best = [n for n in table.find("strong") if text_of(n) == "0.9708 ± 0.0051"]
    assert len(best) == 1  # the best breast_cancer entry, bold as in the Markdown leaderboard
    (aggregate,) = dom.find("table", id="aggregate")
    assert len(aggregate.find("tr")) == 1 + 5


def _flag_name(text: str) -> str:
    text = text.strip()
    return "MDE" if text.startswith("MDE") else "R≥k" if re.fullmatch(r"R≥\d+", text) else text


def test_every_flag_is_explained_where_it_appears(page):
    text, dom, _, _ = page
    flags = dom.find("abbr")
    assert flags and all(f.attrs.get("title", "").strip() for f in flags)
    segment = text[text.index('<table id="board"') :]
    segment = segment[: segment.index("</dl>")]
    part = parse(segment)
    shown = {_flag_name(text_of(a)) for a in part.find("abbr")}
    listed = {text_of(dt) for dt in part.find("dt")}
    assert {"?", "†", "=", "MDE", "R≥k: n/a"} <= shown
    assert shown <= listed and "bold" in listed
    for badge in dom.find("span"):
        if "v" in badge.attrs.get("class", "").split():
            assert badge.attrs["title"].startswith(text_of(badge).replace("best", "best mean").split()[0])


def test_drill_down_per_benchmark(page):
    _, dom, data, charts = page
    keys = sorted(rd.by_benchmark(data.evals))
    links = [a.attrs["href"] for nav in dom.find("nav") if nav.attrs.get("class") == "benches" for a in nav.find("a")]
    assert links == [f"#{html.slug(k)}" for k in keys]
    for key in keys:
        (section,) = dom.find("section", id=html.slug(key))
        kinds = [f.attrs["data-kind"] for f in section.find("figure")]
        assert kinds == KINDS, key
        bench_rows = [r for r in section.find("tr") if "data-bench" in r.attrs]
        assert {r.attrs["data-bench"] for r in bench_rows} == {html.slug(key)}
        assert len(bench_rows) == sum(tuple(r[k] for k in leaderboard.BENCH_KEYS) == key for r in data.board.rows)
    (overview,) = dom.find("section", id="overview")
    assert [f.attrs["data-kind"] for f in overview.find("figure")] == ["profile"]
    figures = dom.find("figure")
    assert len(figures) == charts == 3 * len(KINDS) + 1
    for figure in figures:
        (svg,) = figure.find("svg")
        assert svg.attrs.get("viewbox") and svg.attrs.get("aria-label")
        assert len(svg.find("path")) + len(svg.find("use")) >= 15 and figure.find("figcaption")
        data_marks = [n for n in svg.all() if re.search(r"-(line2d|PathCollection|FillBetween)", n.attrs.get("id", ""))]
        assert data_marks, figure.attrs["id"]  # lines, scatters or bands: the data, not only the axes
    assert not [n for n in dom.all() if "data-condition" in n.attrs]  # no budget or delay runs here


def test_provenance(page):
    _, dom, data, _ = page
    (section,) = dom.find("section", id="provenance")
    text = text_of(section)
    n = len(data.frame)
    for value in (f"fixture ({n} runs)", f"cpu ({n} runs)", "2.14.1", "record schema version"):
        assert value in text, value
    variants = [t for t in section.find("table") if "variant" in text_of(t)]
    assert len(variants[0].find("tr")) == 1 + 3


def test_replicated_leaderboard_shows_spreads_and_unstable_ranks():
    """With two tuning replicates the table has the replicates column, and an optimizer whose rank
    changes between replicates carries ‡, explained under the table."""
    frame = records.read_runs(FIXTURE)
    frame = frame[frame["dataset"] == "sbm"]
    evals = frame[frame["phase"] == "eval"]
    again = evals.assign(
        replicate=1,
        run_id=evals["run_id"] + "-r1",
        test_metric=[v + (0.1 if o == "adamw" else 0.0) for v, o in zip(evals["test_metric"], evals["optimizer"])],
    )
    board = leaderboard.compute(pd.concat([frame, again], ignore_index=True))
    key = ("gnn_graphland", "sbm", "small", "")
    part = parse(html.leaderboard_table(board, [key]))
    assert "replicates: spread" in [text_of(th) for th in part.find("th")]
    unstable = {r["optimizer"] for r in board.rows if r["rank_stable"] is False}
    assert "adamw" in unstable
    for tr in part.find("tr")[1:]:
        flags = [text_of(a) for a in tr.find("abbr")]
        assert ("‡" in flags) == (tr.attrs["data-optimizer"] in unstable)
    assert "‡" in [text_of(dt) for dt in part.find("dt")]


def _with_conditions():
    """The fixture's sbm benchmark plus its eval runs again at delay 1 (adamw loses 0.05, muon
    0.001, the others 0.02 on every seed) and at budget 0.5 (adamw best there)."""
    frame = records.read_runs(FIXTURE)
    frame = frame[frame["dataset"] == "sbm"].assign(delay=0, budget=1.0)
    evals = frame[frame["phase"] == "eval"]
    loss = {"adamw": 0.05, "muon": 0.001}
    delayed = evals.assign(
        delay=1,
        run_id=evals["run_id"] + "-d1",
        test_metric=[v - loss.get(o, 0.02) for v, o in zip(evals["test_metric"], evals["optimizer"])],
    )
    short = evals.assign(
        budget=0.5,
        run_id=evals["run_id"] + "-b",
        test_metric=[v + (0.05 if o == "adamw" else -0.02) for v, o in zip(evals["test_metric"], evals["optimizer"])],
    )
    curves = records.read_curves(FIXTURE, set(frame["run_id"]))
    return pd.concat([frame, delayed, short], ignore_index=True), curves


def test_budget_and_delay_sections_appear_with_their_runs(tmp_path):
    frame, curves = _with_conditions()
    data = rd.from_frame(frame, curves, FIXTURE)
    assert data.conditions == {"budget": [0.5, 1.0], "delay": [0.0, 1.0]}
    assert data.board.n_eval == 15  # the full budget, no delay: sbm's 16 eval records less the superseded one
    text, charts = html.build_page(data)
    dom = parse(text)
    (section,) = dom.find("section", id=html.slug(("gnn_graphland", "sbm", "small", "")))
    kinds = [f.attrs["data-kind"] for f in section.find("figure")]
    assert kinds == KINDS + ["budget", "delay"] and charts == len(kinds)  # one benchmark: no profile
    (budget,) = [n for n in section.all() if n.attrs.get("data-condition") == "budget"]
    assert "The best optimizer changes with the budget: 0.5: adamw; 1: softmuon" in text_of(budget)
    (delay,) = [n for n in section.all() if n.attrs.get("data-condition") == "delay"]
    table = delay.find("table")[-1]
    ranked = [[text_of(td).strip() for td in tr.find("td")] for tr in table.find("tr")[1:]]
    assert [r[0] for r in ranked][0] == "muon" and [r[0] for r in ranked][-1] == "adamw"
    verdicts = {r[0]: r[4] for r in ranked}
    assert verdicts["adamw"] == "worse" and verdicts["muon"] == "equivalent"
    assert "records hold other conditions" in text_of(dom.find("section", id="leaderboard")[0])

    from harness.report import plots

    made = plots.Report(out_dir=tmp_path)
    plots.write_pngs(data, tmp_path, made)  # the PNGs get the same two figures
    names = sorted(p.name for p, _, _ in made.figures)
    assert names == [
        "best_after_k_gnn_graphland.png",
        "budget_gnn_graphland.png",
        "curves_gnn_graphland.png",
        "delay_gnn_graphland.png",
        "lr_sensitivity_gnn_graphland.png",
        "temperature.png",
    ]
    assert all((tmp_path / name).stat().st_size > 10_000 for name in names)

    plain = rd.from_frame(frame[(frame["delay"] == 0) & (frame["budget"] == 1.0)], curves, FIXTURE)
    assert plain.conditions == {}  # the columns at their defaults only: no sections
    assert "data-condition" not in html.build_page(plain)[0]


def test_page_without_a_leaderboard_still_has_the_tune_charts():
    frame = records.read_runs(FIXTURE)
    frame = frame[(frame["phase"] == "tune") & (frame["dataset"] == "sbm")]
    text, charts = html.build_page(rd.from_frame(frame, records.read_curves(FIXTURE, set(frame["run_id"])), FIXTURE))
    dom = parse(text)
    assert "No leaderboard: no eval runs under" in text_of(dom.find("section", id="leaderboard")[0])
    kinds = [f.attrs["data-kind"] for f in dom.find("figure")]
    assert kinds == ["lr_sensitivity", "best_after_k", "temperature"] and charts == 3  # Soft* tune runs log tau too
    assert "softmuon (3 runs)" in text
    assert "performance profile skipped: no leaderboard" in text_of(dom.find("section", id="overview")[0])


def _results(tmp_path, keep):
    src = tmp_path / "results"
    frame = records.read_runs(FIXTURE)
    for run_id in frame.loc[keep(frame), "run_id"]:
        for sub in ("runs", "curves"):
            (src / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURE / sub / f"{run_id}.parquet", src / sub)
    return src


def test_cli_writes_the_page_beside_the_pngs_readable_by_others(tmp_path, capsys):
    from harness.cli import main

    src = _results(tmp_path, lambda f: f["dataset"] == "sbm")
    assert main(["report", str(src), "--html"]) == 0
    out = src / "report"
    err = capsys.readouterr().err
    assert f"wrote {out / 'report.html'} (4 charts" in err and "works offline" in err
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("report.html", "index.md", "curves_gnn_graphland.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name
    assert "[report.html](report.html)" in (out / "index.md").read_text(encoding="utf-8")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_refuses_an_out_that_is_a_file_before_any_work(tmp_path, capsys):
    from harness.cli import main

    src = _results(tmp_path, lambda f: (f["dataset"] == "sbm") & (f["optimizer"] == "adamw"))
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main(["report", str(src), "--html", "--out", str(target)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me" and not (src / "report").exists()
