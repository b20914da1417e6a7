"""One evaluation from the folders of its shards (`guided-gradcam-evaluate --summarize DIR …`):
their CSV files alone, no model, no TensorFlow.

The folders must hold the same settings on record (`provenance`; the shard's index apart).
Rows come out in the order of the input list, so that the shards of a run merge into the rows
of the unsharded run; the summary table, the sanity plots, evaluation.json and one index.html
(whose cards show the shards' panels and curves where they lie) are built from them. What does
not add up is said below the summary: a photo-class in more than one folder (the first kept),
photos of the input list without rows, photos that failed, shards not given. The input list
is the photos given (`inputs`), else each shard's own list (inputs.txt).
"""
import csv
import os

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation import provenance, records, report
from guided_gradcam.outputs import run_index
from guided_gradcam.outputs.rendering import write_atomically


def _settings_of(folders):
    """The folders' common settings on record; refused, in one line, where they differ."""
    found = []
    for folder in folders:
        settings = provenance.read_settings(folder)
        if settings is None or not os.path.exists(os.path.join(folder, records.EVALUATION_CSV)):
            raise GuidedGradCamError("%s is not an evaluation folder (it lacks "
                                     "evaluation.json or evaluation.csv)" % folder)
        found.append(settings)
    for folder, settings in zip(folders[1:], found[1:]):
        different = provenance.differences(found[0], settings, "in " + folders[0],
                                           "in " + folder, ignore=[provenance.SHARD])
        if different:
            raise GuidedGradCamError("cannot merge folders with other settings: %s"
                                     % "; ".join(different))
    return found


def _ordered_inputs(folders, settings, inputs):
    """{input path: place in the input list} and the lines on shards not given."""
    if inputs is not None:
        return {path: place for place, path in enumerate(inputs)}, []
    places, given, counts = {}, set(), set()
    for folder, found in zip(folders, settings):
        index, count = provenance.parse_shard(found.get(provenance.SHARD))
        given.add(index)
        counts.add(count)
        for k, path in enumerate(provenance.read_inputs(folder) or []):
            places.setdefault(path, index + k * count)
    # Shards not given: said when the folders are shards of one split.
    absent = sorted(set(range(count)) - given) if len(counts) == 1 else []
    lines = ["note: shard%s %s of %d not given: %s photos are not counted as missing"
             % ("s" if len(absent) > 1 else "", ", ".join(map(str, absent)), count,
                "their" if len(absent) > 1 else "its")] if absent else []
    return places, lines


def _sample(items, limit=3):
    return ", ".join(items[:limit]) + (", …" if len(items) > limit else "")


def merged_rows(folders, inputs=None):
    """(header, evaluation rows, sanity rows, notes) of the folders, duplicates dropped."""
    settings = _settings_of(folders)
    places, notes = _ordered_inputs(folders, settings, inputs)
    header, rows, sanity, seen, duplicates = None, [], [], {}, []
    for folder in folders:
        columns, evaluation_rows, sanity_rows = records.read_rows(folder)
        if header is not None and list(columns) != list(header):
            raise GuidedGradCamError("cannot merge %s: its evaluation.csv has other columns "
                                     "than %s's" % (folder, folders[0]))
        header = columns
        mine = set()
        for row in evaluation_rows:
            key = (row["input"], row["class_index"] or "error")
            if key in seen and seen[key] != folder:
                duplicates.append("%s %s (%s, %s)" % (row["input"], row["class_index"],
                                                      seen[key], folder))
                continue
            seen[key] = folder
            mine.add((row["input"], row["class_index"]))
            rows.append(row)
        sanity += [row for row in sanity_rows if (row["input"], row["class_index"]) in mine]
    last = len(places)

    def order(row):  # stable: a photo's rows keep their order
        return places.get(row["input"], last)
    rows.sort(key=order)
    sanity.sort(key=order)
    if duplicates:
        notes.append("note: %d photo-class%s in more than one folder, the first kept: %s"
                     % (len(duplicates), "es are" if len(duplicates) > 1 else " is",
                        _sample(duplicates)))
    measured = {row["input"] for row in rows if not row["error"]}
    failed = sorted({row["input"] for row in rows if row["error"]} - measured, key=order)
    missing = sorted(set(places) - measured - set(failed), key=places.get)
    if missing:
        notes.append("note: %d of %d photos of the input list have no rows: %s"
                     % (len(missing), len(places), _sample(missing)))
    if failed:
        notes.append("note: %d photo%s failed (the error in evaluation.csv): %s"
                     % (len(failed), "s" if len(failed) > 1 else "", _sample(failed)))
    return header, rows, sanity, notes


def _merged_index(folders, output_dir):
    """The folders' index.csv rows, their files named from `output_dir`."""
    rows = []
    for folder in folders:
        path = os.path.join(folder, run_index.CSV_NAME)
        if not os.path.exists(path):
            continue
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if None in row or None in row.values():
                    continue  # not a whole row
                row["files"] = ";".join(os.path.relpath(os.path.join(folder, name), output_dir)
                                        for name in row["files"].split(";") if name)
                rows.append(row)
    return rows


def _write_csv(path, columns, rows):
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, lambda handle: handle.write(buffer.getvalue().encode("utf-8")))


def summarize(folders, output_dir, inputs=None, plots=True):
    """Merges the shard folders into `output_dir` (in place for one folder given as its own
    output: only the summary, plots and page are rewritten); returns (maps, results, notes):
    the summary's input and what does not add up."""
    folders = [os.path.normpath(folder) for folder in folders]
    output_dir = os.path.normpath(output_dir)
    if len(set(folders)) != len(folders):
        raise GuidedGradCamError("a folder is given twice")
    in_place = folders == [output_dir]
    if output_dir in folders and not in_place:
        raise GuidedGradCamError("--output_dir %s is one of the folders merged: pass another"
                                 % output_dir)
    header, rows, sanity, notes = merged_rows(folders, inputs)
    settings = provenance.read_settings(folders[0])
    if not in_place:  # in place, the folder keeps its own settings: it can still be resumed
        settings.pop(provenance.SHARD, None)
        settings["merged"] = "%d folders: %s" % (len(folders), ", ".join(folders))
    try:
        os.makedirs(output_dir, exist_ok=True)
        if not in_place:
            _write_csv(os.path.join(output_dir, records.EVALUATION_CSV), header, rows)
            _write_csv(os.path.join(output_dir, records.SANITY_CSV), records.SANITY_COLUMNS,
                       sanity)
            _write_csv(os.path.join(output_dir, run_index.CSV_NAME), run_index.COLUMNS,
                       _merged_index(folders, output_dir))
    except OSError as error:
        raise GuidedGradCamError("cannot write in %s: %s" % (output_dir, error)) from None
    maps = records.maps_of_columns(header)
    results = records.results_of_rows(rows, sanity)
    report.write_page_data(output_dir, list(settings.items()), results, maps, notes)
    if plots:
        report.write_summary_plots(results, output_dir)
    if os.path.exists(os.path.join(output_dir, run_index.CSV_NAME)):
        run_index.write_html(output_dir)
    return maps, results, notes
