"""The static page of a run's index.html: its data inline as JSON (`__ENTRIES__`), sorting,
filtering and paging in plain JavaScript, state in the URL fragment; an evaluation's settings
and summary table on top (`__RUN__`, null for other runs), its numbers as a small table on each
card that has them, with a link to the card's curve plot."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 0 1em 1em; background: #f6f6f6; color: #222 }
header { position: sticky; top: 0; background: #f6f6f6; padding: .6em 0; display: flex;
         flex-wrap: wrap; gap: .5em; align-items: center }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px }
figure { margin: 0; padding: 6px; background: #fff; border: 1px solid #ddd }
figure img { display: block; width: 100%; height: auto }
button[aria-pressed="true"], .score { font-weight: bold }
.mode { color: #a40 } .error { color: #b00 }
.metrics { font-size: 12px; border-collapse: collapse } .metrics th { text-align: left;
  font-weight: normal; color: #555; padding-right: 1em } .metrics td { padding-right: .8em }
.stem, .input { color: #666; font-size: 12px; word-break: break-all }
#run { padding: .6em 0 } #run h2 { font-size: 15px; margin: .6em 0 .3em }
#run table { border-collapse: collapse; background: #fff }
#run pre { margin: .4em 0; white-space: pre-wrap }
#run th, #run td { border: 1px solid #ddd; padding: 2px 8px; text-align: left }
#run-summary td { text-align: right }
</style></head>
<body>
<section id="run" hidden>
  <h2>Settings</h2><table id="settings"></table>
  <h2>Summary</h2><table id="run-summary"></table><pre id="run-lines"></pre>
</section>
<header>
  <button data-sort="run">run order</button>
  <button data-sort="desc">probability &#8595;</button>
  <button data-sort="asc">probability &#8593;</button>
  <input id="filter" list="classes" size="32" placeholder="filter by class, or: failed">
  <datalist id="classes"></datalist>
  <button id="prev">&#8249; prev</button>
  <label>page <input id="page" type="number" min="1" value="1" style="width: 4em"></label>
  <span>of <span id="pages"></span></span>
  <button id="next">next &#8250;</button>
  <span id="summary"></span>
</header>
<main id="grid"></main>
<script type="application/json" id="run-data">__RUN__</script>
<script type="application/json" id="entries">__ENTRIES__</script>
<script>
"use strict";
// Only the current page's cards exist, so 10,000 entries open as fast as 100. The state
// (sort, class filter, page) lives in the URL fragment: links and reloads keep it.
const PAGE_SIZE = 100;
const $ = (id) => document.getElementById(id);
const entries = JSON.parse($("entries").textContent);
entries.forEach((entry, order) => {
  entry.order = order;
  entry.label = entry.error ? "failed" : entry.class;
  entry.score = entry.p ?? entry.value;  // regression rows sort by y
});
const counts = new Map();
for (const entry of entries) counts.set(entry.label, (counts.get(entry.label) || 0) + 1);
for (const [label, count] of [...counts].sort((a, b) => b[1] - a[1])) {
  const option = document.createElement("option");
  option.value = label;
  option.label = count + (count === 1 ? " entry" : " entries");
  $("classes").append(option);
}
const state = {sort: "run", filter: "", page: 1};

function readHash() {
  const query = new URLSearchParams(location.hash.slice(1));
  state.sort = ["desc", "asc"].includes(query.get("sort")) ? query.get("sort") : "run";
  state.filter = query.get("class") || "";
  state.page = Math.max(1, parseInt(query.get("page"), 10) || 1);
}

function writeHash() {
  const query = new URLSearchParams();
  if (state.sort !== "run") query.set("sort", state.sort);
  if (state.filter) query.set("class", state.filter);
  if (state.page > 1) query.set("page", state.page);
  history.replaceState(null, "", "#" + query);
}

function selected() {
  const wanted = state.filter.trim().toLowerCase();
  const shown = entries.filter((entry) => entry.label.toLowerCase().includes(wanted));
  if (state.sort !== "run") {
    const sign = state.sort === "asc" ? 1 : -1;
    // Entries without a score (unreadable inputs) go last both ways.
    shown.sort((a, b) => (a.score === null) - (b.score === null)
               || sign * (a.score - b.score) || a.order - b.order);
  }
  return shown;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;  // names are text, never markup
  return node;
}

function table(className, header, rows) {
  // A header row, then rows whose first cell names the row.
  const node = element("table", className);
  for (const [number, cells] of [header, ...rows].entries()) {
    const row = element("tr");
    cells.forEach((cell, i) => row.append(element(number === 0 || i === 0 ? "th" : "td", "",
                                                  cell)));
    node.append(row);
  }
  return node;
}

function showRun(run) {
  // An evaluation's folder: its settings and summary table (evaluation.json) open the page.
  if (!run) return;
  for (const [name, value] of run.settings) {
    const row = element("tr");
    row.append(element("th", "", name), element("td", "", value));
    $("settings").append(row);
  }
  if (run.summary) {
    const summary = table("", run.summary.header, run.summary.rows);
    summary.id = "run-summary";
    $("run-summary").replaceWith(summary);
    $("run-lines").textContent = run.summary.lines.join("\\n");
  } else {
    $("run-lines").textContent = "no summary: the run did not finish";
  }
  $("run").hidden = false;
}

function card(entry) {
  const figure = element("figure");
  figure.dataset.stem = entry.stem;
  if (entry.thumb) {
    const link = element("a"), image = element("img");
    // each part of the path encoded, not the "/": a merged run's cards show its shards' files
    const url = entry.thumb.split("/").map(encodeURIComponent).join("/");
    link.href = url;  // relative: the folder can move
    image.loading = "lazy";  // before src: off-screen thumbnails load when scrolled to
    image.src = url;
    image.alt = entry.stem;
    link.append(image);
    figure.append(link);
  }
  const caption = element("figcaption");
  caption.append(element("span", "class", entry.class || "failed"), " ");
  if (entry.score !== null) {
    caption.append(element("span", "score", entry.p !== null
      ? "p = " + entry.p.toFixed(3) : "y = " + entry.value.toPrecision(4)));
  }
  if (entry.counterfactual) caption.append(" ", element("span", "mode", "counterfactual"));
  if (entry.error) caption.append(element("div", "error", entry.error));
  if (entry.metrics) {  // the evaluation's numbers (evaluation.csv beside index.csv)
    caption.append(table("metrics", entry.metrics.header, entry.metrics.rows));
    if (entry.metrics.localised) {
      caption.append(element("div", "localised", "localised " + entry.metrics.localised));
    }
  }
  if (entry.curves) {  // plots/<stem>_curves.png: each part of the path encoded, not the "/"
    const line = element("div"), link = element("a", "curves", "deletion / insertion curves");
    link.href = entry.curves.split("/").map(encodeURIComponent).join("/");
    line.append(link);
    caption.append(line);
  }
  caption.append(element("div", "stem", entry.stem), element("div", "input", entry.input));
  if (entry.top5) caption.title = "top-5: " + entry.top5;
  figure.append(caption);
  return figure;
}

function render() {
  const shown = selected();
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages);
  const cards = document.createDocumentFragment();
  for (const entry of shown.slice((state.page - 1) * PAGE_SIZE, state.page * PAGE_SIZE)) {
    cards.append(card(entry));
  }
  $("grid").replaceChildren(cards);
  for (const button of document.querySelectorAll("[data-sort]")) {
    button.setAttribute("aria-pressed", button.dataset.sort === state.sort);
  }
  if ($("filter").value !== state.filter) $("filter").value = state.filter;
  $("page").value = state.page;
  $("page").max = pages;
  $("pages").textContent = pages;
  $("prev").disabled = state.page === 1;
  $("next").disabled = state.page === pages;
  $("summary").textContent = state.filter
    ? shown.length + " of " + entries.length + " entries" : entries.length + " entries";
  writeHash();
}

function update(change) {
  Object.assign(state, change);
  render();
  window.scrollTo(0, 0);
}

for (const button of document.querySelectorAll("[data-sort]")) {
  button.addEventListener("click", () => update({sort: button.dataset.sort, page: 1}));
}
$("filter").addEventListener("input", () => update({filter: $("filter").value, page: 1}));
$("page").addEventListener("change",
                          () => update({page: Math.max(1, parseInt($("page").value, 10) || 1)}));
$("prev").addEventListener("click", () => update({page: state.page - 1}));
$("next").addEventListener("click", () => update({page: state.page + 1}));
window.addEventListener("hashchange", () => { readHash(); render(); });
showRun(JSON.parse($("run-data").textContent));
readHash();
render();
</script>
</body></html>
"""
