"""The HTML page's inline style sheet and scripts (no file, font or script is loaded from anywhere:
the page works offline and from a file:// URL).

``HEAD_SCRIPT`` runs first and records every uncaught error into the DOM (``data-errors`` on
``<html>``), so a reader sees it and the browser test can read it. ``SCRIPT`` makes the tables
sortable (click or Enter on a header; numbers by their ``data-sort`` value, empty cells last) and
turns the sections into tabs with one benchmark's drill-down shown at a time, following the URL's
``#fragment``; it marks ``<body data-ready="1">`` when it ran without an exception. Without
JavaScript (or when printing) every section is shown, one after another.
"""

CSS = """
:root { --fg: #1b1b1b; --muted: #5a5a5a; --line: #d8d8d8; --head: #f3f4f6; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 0 1.2rem 3rem; max-width: 1500px; }
h1 { font-size: 1.5rem; margin: 1rem 0 .2rem; } h2 { font-size: 1.2rem; margin: 1.4rem 0 .4rem; }
h3 { font-size: 1.02rem; margin: 1.2rem 0 .3rem; }
p, li { max-width: 75rem; } .muted, figcaption, .foot { color: var(--muted); font-size: .86rem; }
nav.tabs { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: .4rem 0;
           z-index: 2; display: flex; gap: .3rem; flex-wrap: wrap; }
nav.tabs a, nav.benches a { padding: .25rem .7rem; border: 1px solid var(--line); border-radius: 4px;
           text-decoration: none; color: var(--fg); background: var(--head); }
nav.tabs a[aria-selected="true"], nav.benches a[aria-selected="true"] { background: var(--accent); color: #fff;
           border-color: var(--accent); }
nav.benches { display: flex; gap: .3rem; flex-wrap: wrap; margin: .6rem 0; font-size: .9rem; }
table { border-collapse: collapse; margin: .4rem 0 .3rem; font-size: .86rem; }
th, td { border: 1px solid var(--line); padding: .22rem .45rem; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.bench { white-space: nowrap; } td .extra { font-size: .78rem; color: var(--muted); }
th { background: var(--head); text-align: left; position: relative; }
table.sortable th { cursor: pointer; padding-right: 1.1rem; }
table.sortable th::after { content: "\\2195"; position: absolute; right: .25rem; color: #aaa; font-size: .8em; }
table.sortable th[aria-sort="ascending"]::after { content: "\\2191"; color: var(--fg); }
table.sortable th[aria-sort="descending"]::after { content: "\\2193"; color: var(--fg); }
tbody tr:nth-child(even) { background: #fafafa; } tr.best-row td { background: #f2f8ee; }
.scroll { overflow-x: auto; }
abbr.flag, abbr.term { text-decoration: none; border-bottom: 1px dotted var(--muted); cursor: help; }
.v { display: inline-block; padding: 0 .35rem; border-radius: 3px; font-weight: 600; font-size: .8rem; }
.v-better { background: #d9f2d9; color: #14521b; } .v-worse { background: #f8d7d7; color: #7a1616; }
.v-equivalent { background: #e3e8f4; color: #24407a; } .v-inconclusive { background: #f7efd2; color: #6b5200; }
.v-best { background: #1f5fa8; color: #fff; }
dl.flags { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .7rem; font-size: .84rem;
           color: var(--muted); margin: .3rem 0 1rem; } dl.flags dt { font-weight: 600; color: var(--fg); }
figure.chart { margin: .8rem 0 1.2rem; } figure.chart svg { max-width: 100%; height: auto; display: block; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: .6rem 1.2rem; }
.skip { color: var(--muted); font-style: italic; }
.alert { border-left: 4px solid #c77c00; background: #fff7e6; padding: .4rem .7rem; }
#js-errors { border-left: 4px solid #b00020; background: #fde8ec; padding: .4rem .7rem; display: none; }
html[data-errors] #js-errors { display: block; }
body.js section.tab { display: none; } body.js section.tab.active { display: block; }
body.js section.bench { display: none; } body.js section.bench.active { display: block; }
@media print { nav.tabs, nav.benches { display: none; } body.js section.tab, body.js section.bench { display: block; } }
"""

HEAD_SCRIPT = """
window.optbenchErrors = [];
window.optbenchRecord = function (text) {
  window.optbenchErrors.push(String(text));
  document.documentElement.setAttribute("data-errors", JSON.stringify(window.optbenchErrors));
  var box = document.getElementById("js-errors");
  if (box) { box.textContent = "Script errors on this page: " + window.optbenchErrors.join(" | "); }
};
window.addEventListener("error", function (e) {
  window.optbenchRecord((e.message || "error") + (e.lineno ? " (line " + e.lineno + ")" : ""));
});
window.addEventListener("unhandledrejection", function (e) { window.optbenchRecord("unhandled rejection: " + e.reason); });
"""

SCRIPT = """
(function () {
  "use strict";
  var TABS = ["leaderboard", "benchmarks", "overview", "provenance"];

  function key(td) {
    var raw = td.hasAttribute("data-sort") ? td.getAttribute("data-sort") : td.textContent.trim();
    if (raw === "" || raw === "nan") { return null; }
    var n = Number(raw);
    return isNaN(n) ? raw.toLowerCase() : n;
  }

  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    var descending = th.getAttribute("aria-sort") === "ascending";
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return { row: row, i: i, k: row.cells[index] ? key(row.cells[index]) : null };
    });
    rows.sort(function (a, b) {
      if (a.k === null || b.k === null) { return (a.k === null) - (b.k === null) || a.i - b.i; }
      var c = (typeof a.k === typeof b.k) ? (a.k < b.k ? -1 : a.k > b.k ? 1 : 0)
                                          : (typeof a.k === "number" ? -1 : 1);
      return (descending ? -c : c) || a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  function sortable(table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;
      th.title = th.title || "sort by this column";
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortBy(table, index, th); } });
    });
  }

  function select(nodes, active) {
    Array.prototype.forEach.call(nodes, function (n) {
      var on = active(n);
      n.classList.toggle("active", on);
      if (n.tagName === "A") { n.setAttribute("aria-selected", on ? "true" : "false"); }
    });
  }

  function route() {
    var target = decodeURIComponent(location.hash.replace(/^#/, ""));
    var tab = TABS.indexOf(target) >= 0 ? target : "leaderboard";
    var bench = null;
    if (target.indexOf("bench-") === 0 && document.getElementById(target)) { tab = "benchmarks"; bench = target; }
    if (tab === "benchmarks" && !bench) {
      var first = document.querySelector("section.bench");
      bench = first ? first.id : null;
    }
    select(document.querySelectorAll("section.tab"), function (s) { return s.id === tab; });
    select(document.querySelectorAll("nav.tabs a"), function (a) { return a.getAttribute("href") === "#" + tab; });
    select(document.querySelectorAll("section.bench"), function (s) { return s.id === bench; });
    select(document.querySelectorAll("nav.benches a"), function (a) { return a.getAttribute("href") === "#" + bench; });
    document.body.setAttribute("data-tab", tab);
    document.body.setAttribute("data-bench", bench || "");
    window.scrollTo(0, 0);  // a new tab starts at its top, not where the fragment's anchor was
  }

  try {
    document.body.classList.add("js");
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), sortable);
    window.addEventListener("hashchange", route);
    route();
    document.body.setAttribute("data-ready", "1");
  } catch (e) {
    window.optbenchRecord("page script: " + e);
  }
})();
"""
