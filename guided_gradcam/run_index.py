"""The record of folder runs: `index.csv` and `index.html` in the output folder.

index.csv gets one row per explanation once its files are written, and one per failed input,
each appended in one write of a whole line: a killed run leaves whole rows for exactly what it
finished, and a resumed run appends. index.html is rebuilt from the whole CSV at the end of
each run, or by `python -m guided_gradcam.run_index OUTPUT_DIR`: a static page with the data
inline, sortable by probability, filterable by class, 100 entries a page.
"""
import csv
import io
import json
import os
import secrets
import sys
import threading
from html import escape

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.rendering import _write_atomically

CSV_NAME, HTML_NAME = "index.csv", "index.html"
# A regression model has no classes: its rows leave class_index, class_name, probability and
# top5 empty and give y in `value`. `files` are names in the output folder, joined by ';'.
COLUMNS = ("input", "stem", "task", "class_index", "class_name", "probability", "value", "top5",
           "counterfactual", "files", "error")


def explanation_row(input_path, stem, explanation, labels):
    """The row of one explanation written to `<stem>_*`, without its files."""
    row = dict.fromkeys(COLUMNS, "")
    row.update(input=input_path, stem=stem, task=explanation.task,
               counterfactual="true" if explanation.counterfactual else "false")
    if explanation.probabilities is None:
        row["value"] = "%.7g" % explanation.value
    else:
        row.update(class_index=explanation.label, class_name=labels.name(explanation.label),
                   probability="%.7g" % explanation.probabilities[explanation.label],
                   top5="; ".join("%s %.3f" % (labels.describe(index), probability)
                                  for index, probability in explanation.top_k(5)))
    return row


def _csv_line(values):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


class RunIndex:
    """Appends rows to `<output_dir>/index.csv`; closing it (also as a context manager) writes
    index.html. Rows come from the writer threads as their files are done, hence the lock."""

    def __init__(self, output_dir):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, CSV_NAME)
        self.problem = None  # the first failed append, reported by close(): a run goes on
        self._lock = threading.Lock()
        try:
            os.makedirs(output_dir, exist_ok=True)
            self._create_with_header()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as error:
            raise GuidedGradCamError("cannot write %s: %s" % (self.path, error)) from None

    def _create_with_header(self):
        """A new index.csv appears with its header already in it (a hard link of a finished
        temporary file): shards writing into one folder never both write it, nor append a row
        before it."""
        if os.path.exists(self.path):
            return
        temp = os.path.join(self.output_dir, ".%s.%s.tmp" % (CSV_NAME, secrets.token_hex(6)))
        try:
            with open(temp, "w", encoding="utf-8") as handle:
                handle.write(_csv_line(COLUMNS))
            os.link(temp, self.path)
        except FileExistsError:
            pass
        finally:
            if os.path.exists(temp):
                os.remove(temp)

    def append(self, row):
        """One whole line in one write: concurrent appends (O_APPEND) never interleave."""
        line = _csv_line([row[column] for column in COLUMNS]).encode("utf-8")
        with self._lock:
            try:
                if os.write(self._fd, line) != len(line):
                    raise OSError("short write (disk full?)")
            except OSError as error:
                self.problem = self.problem or error

    def failed(self, input_path, stem, error):
        """An input that could not be read: one row, its error filled in."""
        self.append(dict(dict.fromkeys(COLUMNS, ""), input=input_path, stem=stem, error=str(error)))

    def record_when_written(self, future, input_path, stem, explanation, labels):
        """Appends the explanation's row once `future` (save_outputs: the files it wrote) is
        done: with its files, or with the error that stopped them."""
        row = explanation_row(input_path, stem, explanation, labels)  # drops the maps

        def record(done):
            if done.cancelled():
                return
            problem = done.exception()
            if problem is None:
                self.append(dict(row, files=";".join(os.path.basename(p) for p in done.result())))
            else:
                self.append(dict(row, error="cannot write outputs: %s" % problem))
        future.add_done_callback(record)

    def close(self, report_problems=True):
        os.close(self._fd)
        try:
            write_html(self.output_dir)
            if self.problem:
                raise GuidedGradCamError("cannot append to %s: %s" % (self.path, self.problem))
        except GuidedGradCamError:
            if report_problems:
                raise

    def __enter__(self):
        return self

    def __exit__(self, error_type, *_):
        self.close(report_problems=error_type is None)  # never hide the error in flight


def read_entries(csv_path):
    """The page's entries: the latest row of each stem (a re-run rewrote its files)."""
    latest = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if None in row or None in row.values():
                continue  # not a whole row: only a full disk cuts one
            latest.pop(row["stem"], None)
            latest[row["stem"]] = row
    return [_entry(row) for row in latest.values()]


def _number(text):
    return float(text) if text else None


def _entry(row):
    stem, files = row["stem"], row["files"].split(";")
    # The panel, else the photo-sized Grad-CAM overlay, else no picture.
    thumb = next((name for name in (stem + "_panel.png", stem + "_gradcam.png")
                  if name in files), None)
    if row["class_index"]:
        label = "%s (%s)" % (row["class_name"], row["class_index"])
    else:
        label = "y" if row["value"] else ""
    return {"stem": stem, "input": row["input"], "class": label, "class_index": row["class_index"],
            "p": _number(row["probability"]), "value": _number(row["value"]),
            "counterfactual": row["counterfactual"] == "true", "top5": row["top5"],
            "thumb": thumb, "error": row["error"] or None}


# The evaluation's numbers shown on a card (evaluation.csv beside index.csv), in this order.
METRIC_COLUMNS = (("faithfulness_gradcam", "ρ Grad-CAM"), ("faithfulness_gbp", "ρ GBP"),
                  ("faithfulness_guided_gradcam", "ρ Guided"),
                  ("deletion_gradcam", "deletion Grad-CAM"),
                  ("insertion_gradcam", "insertion Grad-CAM"),
                  ("pointing_gradcam", "pointing Grad-CAM"), ("top1_localised", "localised top-1"))


def read_metrics(output_dir):
    """{(input, class index): [[label, value]]} from the evaluation's evaluation.csv beside
    index.csv; {} without one. Keyed by the input path, never by stems: a photo named
    `cat_282.jpg` and the `cat_282` card of `cat.jpg` are two different things."""
    path = os.path.join(output_dir, "evaluation.csv")
    if not os.path.exists(path):
        return {}
    metrics = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row.get("class_index") or None in row.values():
                continue
            metrics[row["input"], row["class_index"]] = [
                [label, row[column]] for column, label in METRIC_COLUMNS if row.get(column)]
    return metrics


def write_html(output_dir):
    """index.html from the whole index.csv (and the evaluation's metrics, when the folder has
    them), written atomically; returns (path, entries)."""
    entries = read_entries(os.path.join(output_dir, CSV_NAME))
    metrics = read_metrics(output_dir)
    for entry in entries:
        if not entry["counterfactual"]:
            entry["metrics"] = metrics.get((entry["input"], entry["class_index"]))
    # "<" escaped in the JSON: no "</script>" or "<!--" can end the data block early.
    data = json.dumps(entries, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    title = "Guided Grad-CAM: %s" % os.path.basename(os.path.abspath(output_dir))
    page = PAGE.replace("__TITLE__", escape(title)).replace("__ENTRIES__", data)
    path = os.path.join(output_dir, HTML_NAME)
    try:
        _write_atomically(path, lambda handle: handle.write(page.encode("utf-8")))
    except OSError as error:
        raise GuidedGradCamError("cannot write %s: %s" % (path, error)) from None
    return path, len(entries)


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
  font-weight: normal; color: #555; padding-right: 1em }
.stem, .input { color: #666; font-size: 12px; word-break: break-all }
</style></head>
<body>
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

function card(entry) {
  const figure = element("figure");
  figure.dataset.stem = entry.stem;
  if (entry.thumb) {
    const link = element("a"), image = element("img"), url = encodeURIComponent(entry.thumb);
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
    const table = element("table", "metrics");
    for (const [label, value] of entry.metrics) {
      const row = element("tr");
      row.append(element("th", "", label), element("td", "", value));
      table.append(row);
    }
    caption.append(table);
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
readHash();
render();
</script>
</body></html>
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m guided_gradcam.run_index OUTPUT_DIR  (rebuilds its index.html "
              "from index.csv)", file=sys.stderr)
        return 2
    try:
        path, count = write_html(argv[0])
    except (OSError, GuidedGradCamError) as error:  # OSError: no index.csv to read
        print("error: %s" % error, file=sys.stderr)
        return 1
    print("%s: %d entries" % (path, count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
