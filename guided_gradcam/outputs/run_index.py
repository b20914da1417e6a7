"""The record of folder runs: `index.csv` and `index.html` in the output folder.

index.csv gets one row per explanation once its files are written, and one per failed input,
each appended in one write of a whole line: a killed run leaves whole rows for exactly what it
finished, and a resumed run appends. index.html is rebuilt from the whole CSV at the end of
each run, or by `python -m guided_gradcam.outputs.run_index OUTPUT_DIR`: a static page with the data
inline, sortable by probability, filterable by class, 100 entries a page. In an evaluation's
folder it opens with the run's settings and summary table (evaluation.json), and each card
shows its class's numbers (evaluation.csv) and links to its curve plot.
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
from guided_gradcam.outputs.rendering import write_atomically
from guided_gradcam.outputs.run_index_page import PAGE

CSV_NAME, HTML_NAME = "index.csv", "index.html"
# A regression model has no classes: its rows leave class_index, class_name, probability and
# top5 empty and give y in `value`. `files` are names in the output folder, joined by ';'.
# A segmentation model's row is one (image, class): instead of a top-5, the share of the output
# its region covers (`region_area`, 0..1), and `probability` is the class's mean over it.
COLUMNS = ("input", "stem", "task", "class_index", "class_name", "probability", "value", "top5",
           "counterfactual", "files", "error", "region_area")


def explanation_row(input_path, stem, explanation, labels):
    """The row of one explanation written to `<stem>_*`, without its files."""
    row = dict.fromkeys(COLUMNS, "")
    row.update(input=input_path, stem=stem, task=explanation.task,
               counterfactual="true" if explanation.counterfactual else "false")
    if explanation.probabilities is None:
        row["value"] = "%.7g" % explanation.value
    elif explanation.region_area is not None:
        row.update(class_index=explanation.label, class_name=labels.name(explanation.label),
                   probability="%.7g" % explanation.probabilities[explanation.label],
                   region_area="%.7g" % explanation.region_area)
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
    # By name, or in another folder: a merged evaluation's files lie in its shards' folders
    # (../shard_0/<name>).
    thumb = next((path for name in (stem + "_panel.png", stem + "_gradcam.png")
                  for path in files if path == name or path.endswith("/" + name)), None)
    curves = next((name for name in files if name.endswith("_curves.png")), None)
    if row["class_index"]:
        label = "%s (%s)" % (row["class_name"], row["class_index"])
    else:
        label = "y" if row["value"] else ""
    return {"stem": stem, "input": row["input"], "class": label, "class_index": row["class_index"],
            "p": _number(row["probability"]), "value": _number(row["value"]),
            "counterfactual": row["counterfactual"] == "true", "top5": row["top5"],
            "thumb": thumb, "curves": curves, "error": row["error"] or None}


# The evaluation's numbers on a card (evaluation.csv beside index.csv): a row per map with a
# column per metric column (`evaluation.metrics.COLUMNS`), and the localisation.

def _shown(kind, text):
    """A number as the console prints it (3 decimals; '-' for NaN, as in the summary), a
    hit (the pointing game) as hit / miss."""
    if not text:
        return ""
    if kind == "hit":
        return {"true": "hit", "false": "miss"}.get(text, text)
    value = float(text)
    return "-" if value != value else "%.3f" % value


def _card_metrics(row, maps, columns):
    """{header, rows, localised} of one evaluation.csv row: the maps and metrics it has."""
    rows = [[name] + [_shown(kind, row.get("%s_%s" % (key, name), ""))
                      for key, _, kind in columns] for name in maps]
    rows = [cells for cells in rows if any(cells[1:])]
    kept = [column for column in range(1, len(columns) + 1)
            if any(cells[column] for cells in rows)]
    localised = ", ".join("%s %s" % (k, {"true": "yes", "false": "no"}[row[k + "_localised"]])
                          for k in ("top1", "top5") if row.get(k + "_localised"))
    return {"header": ["map"] + [columns[column - 1][1] for column in kept],
            "rows": [[cells[0]] + [cells[column] for column in kept] for cells in rows],
            "localised": localised}


def read_metrics(output_dir):
    """{(input, class index): card metrics} from the evaluation's evaluation.csv beside
    index.csv; {} without one. Keyed by the input path, never by stems: a photo named
    `cat_282.jpg` and the `cat_282` card of `cat.jpg` are two different things."""
    from guided_gradcam.evaluation.metrics import COLUMNS  # the evaluation's file: its columns

    path = os.path.join(output_dir, "evaluation.csv")
    if not os.path.exists(path):
        return {}
    columns = [(column.key, column.card, column.kind) for column in COLUMNS]
    metrics = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        prefixes = tuple(key + "_" for key, _, _ in columns)
        maps = list(dict.fromkeys(column.split("_", 1)[1] for column in reader.fieldnames or ()
                                  if column.startswith(prefixes)))
        for row in reader:
            if not row.get("class_index") or None in row.values():
                continue
            metrics[row["input"], row["class_index"]] = _card_metrics(row, maps, columns)
    return metrics


def read_run(output_dir):
    """The evaluation's settings and summary (evaluation.json, `evaluation.report.
    write_page_data`) that its page opens with; None without one."""
    path = os.path.join(output_dir, "evaluation.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise GuidedGradCamError("cannot read %s: %s" % (path, error)) from None


def _script_json(data):
    """JSON for a <script> block: "<" escaped, so no "</script>" or "<!--" ends it early."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def write_html(output_dir):
    """index.html from the whole index.csv (and, when the folder has them, the evaluation's
    numbers on the cards and its settings and summary on top), written atomically; returns
    (path, entries)."""
    entries = read_entries(os.path.join(output_dir, CSV_NAME))
    metrics = read_metrics(output_dir)
    for entry in entries:
        if not entry["counterfactual"]:
            entry["metrics"] = metrics.get((entry["input"], entry["class_index"]))
    title = "Guided Grad-CAM: %s" % os.path.basename(os.path.abspath(output_dir))
    page = PAGE.replace("__TITLE__", escape(title)).replace(
        "__RUN__", _script_json(read_run(output_dir))).replace("__ENTRIES__", _script_json(entries))
    path = os.path.join(output_dir, HTML_NAME)
    try:
        write_atomically(path, lambda handle: handle.write(page.encode("utf-8")))
    except OSError as error:
        raise GuidedGradCamError("cannot write %s: %s" % (path, error)) from None
    return path, len(entries)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m guided_gradcam.outputs.run_index OUTPUT_DIR  (rebuilds its index.html "
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
