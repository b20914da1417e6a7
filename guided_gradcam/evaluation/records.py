"""evaluation.csv and sanity.csv: written photo by photo so that a killed run resumes, and read
back into results (a resumed run's summary, a merge of shards).

A photo's rows go out in one write per file, each followed by fsync: first its sanity rows,
then its evaluation rows. Its evaluation rows are the commit: a photo is done when they are
in evaluation.csv. A run killed at any moment leaves at most a partial last line (cut by a
full disk or a lost machine) and sanity rows of a photo without evaluation rows; `repair`
drops both, and the rows of photos that failed (they are tried again). No TensorFlow here.
"""
import csv
import io
import os

import numpy as np

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation.metrics import COLUMNS, REGISTRY
from guided_gradcam.evaluation.metrics.sanity import SanityRow
from guided_gradcam.evaluation.results import ClassResult, PhotoResult
from guided_gradcam.outputs.rendering import write_atomically

EVALUATION_CSV, SANITY_CSV = "evaluation.csv", "sanity.csv"
SIMILARITIES = ("spearman_abs", "spearman_signed", "ssim", "hog")
PER_MAP = tuple(column.key for column in COLUMNS)  # each metric's numbers per map
HITS = frozenset(column.key for column in COLUMNS if column.kind == "hit")
SANITY_COLUMNS = ("input", "stem", "class_index", "mode", "step", "block", "map") + SIMILARITIES


def evaluation_columns(maps):
    """evaluation.csv's header: the photo-class, each metric's per-photo columns (those on the
    ground truth first, where the first version of the file had them, then the error), then
    each metric's columns per map."""
    def photo_columns(on_boxes):
        return [name for metric in REGISTRY.values() if metric.needs_boxes == on_boxes
                for name in metric.photo_columns]
    return (["input", "stem", "class_index", "class_name", "probability", *photo_columns(True),
             "error", *photo_columns(False)]
            + ["%s_%s" % (metric, name) for metric in PER_MAP for name in maps])


def maps_of_columns(columns):
    """The maps of an evaluation.csv header, in its order."""
    prefixes = tuple(key + "_" for key in PER_MAP)
    return list(dict.fromkeys(column.split("_", 1)[1] for column in columns
                              if column.startswith(prefixes)))


def _number(value):
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return "%.6g" % value


def _lines(columns, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue().encode("utf-8")


def _read_whole_rows(path):
    """(header, rows) of a CSV file, its rows as dicts: a last line without its newline, or a
    row with too few or too many fields, is left out. (None, []) for no file."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None, []
    except (OSError, UnicodeDecodeError) as error:
        raise GuidedGradCamError("cannot read %s: %s" % (path, error)) from None
    reader = csv.DictReader(io.StringIO(text[:text.rfind("\n") + 1]))
    rows = [row for row in reader if None not in row and None not in row.values()]
    return reader.fieldnames, rows


def read_rows(output_dir):
    """(evaluation header, evaluation rows, sanity rows) of a folder, whole rows only."""
    header, rows = _read_whole_rows(os.path.join(output_dir, EVALUATION_CSV))
    return header, rows, _read_whole_rows(os.path.join(output_dir, SANITY_CSV))[1]


def _rewrite(path, columns, rows):
    write_atomically(path, lambda handle: handle.write(_lines(columns, [dict(zip(
        columns, columns))] + rows)))


def repair(output_dir, columns):
    """Keeps the whole rows of the photos done (sanity rows only of those) and drops those of
    photos that failed; returns the inputs done, {input path: number of photo-classes}. A
    file whose header is not `columns` was written with other maps: refused."""
    header, rows, sanity = read_rows(output_dir)
    if header is None:
        return {}
    if list(header) != list(columns):
        raise GuidedGradCamError("%s has other columns than this run writes (other maps or "
                                 "metrics): pass another --output_dir"
                                 % os.path.join(output_dir, EVALUATION_CSV))
    kept = [row for row in rows if not row["error"]]
    done = {}
    for row in kept:
        done[row["input"]] = done.get(row["input"], 0) + 1
    _rewrite(os.path.join(output_dir, EVALUATION_CSV), columns, kept)
    _rewrite(os.path.join(output_dir, SANITY_CSV), SANITY_COLUMNS,
             [row for row in sanity if row["input"] in done])
    return done


class Record:
    """Appends each photo's rows to the two CSV files in `output_dir`: new files, or with
    `resume`, the files `repair` left."""

    def __init__(self, output_dir, maps, resume=False):
        self.output_dir, self.maps = output_dir, tuple(maps)
        self.columns = evaluation_columns(self.maps)
        self.done = {}  # input path → photo-classes already in evaluation.csv
        paths = [os.path.join(output_dir, name) for name in (EVALUATION_CSV, SANITY_CSV)]
        try:
            os.makedirs(output_dir, exist_ok=True)
            if resume and os.path.exists(paths[0]):
                self.done = repair(output_dir, self.columns)
            else:
                _rewrite(paths[0], self.columns, [])
                _rewrite(paths[1], SANITY_COLUMNS, [])
            self._evaluation, self._sanity = (os.open(path, os.O_WRONLY | os.O_APPEND)
                                              for path in paths)
        except OSError as error:
            raise GuidedGradCamError("cannot write in %s: %s" % (output_dir, error)) from None

    def _append(self, fd, data):
        """One write, then fsync: the rows are on disk before the next photo starts."""
        try:
            if data and os.write(fd, data) != len(data):
                raise OSError("short write (disk full?)")
            os.fsync(fd)
        except OSError as error:
            raise GuidedGradCamError("cannot append to %s: %s" % (self.output_dir, error)) \
                from None

    def add(self, result):
        per_photo = {name: value for metric in REGISTRY.values()
                     for name, value in metric.photo_values(result).items()}
        rows, sanity = [], []
        if result.error:
            rows.append(dict(dict.fromkeys(self.columns, ""), input=result.path,
                             stem=result.stem, error=result.error))
        for c in result.classes:
            row = dict.fromkeys(self.columns, "")
            row.update(input=result.path, stem=result.stem, class_index=c.class_index,
                       class_name=c.class_name, probability=_number(c.probability),
                       **per_photo)
            for metric in PER_MAP:
                for name, value in getattr(c, metric).items():
                    row["%s_%s" % (metric, name)] = _number(value)
            rows.append(row)
            sanity += [dict(input=result.path, stem=result.stem, class_index=c.class_index,
                            mode=s.mode, step=s.step, block=s.block, map=s.map,
                            **{key: _number(getattr(s, key)) for key in SIMILARITIES})
                       for s in c.sanity]
        self._append(self._sanity, _lines(SANITY_COLUMNS, sanity))  # before the commit
        self._append(self._evaluation, _lines(self.columns, rows))

    def close(self):
        os.close(self._evaluation)
        os.close(self._sanity)


def _value(key, text):
    if key in HITS:
        return text == "true"
    return float(text)


def results_of_rows(rows, sanity_rows=()):
    """PhotoResults (each photo's classes, their numbers, its localisation; a failed photo
    its error) of evaluation.csv rows, in the order of their first row."""
    photos, classes = {}, {}
    maps = maps_of_columns(rows[0]) if rows else []
    for row in rows:
        photo = photos.setdefault(row["input"], PhotoResult(row["input"], row["stem"]))
        if row["error"]:
            photo.error = row["error"]
            continue
        values = {key: {name: _value(key, row["%s_%s" % (key, name)]) for name in maps
                        if row.get("%s_%s" % (key, name))} for key in PER_MAP}
        c = ClassResult(int(row["class_index"]), row["class_name"],
                        float(row["probability"]) if row["probability"] else None,
                        {key: numbers for key, numbers in values.items() if numbers})
        photo.classes.append(c)
        classes[row["input"], row["class_index"]] = c
        for k in ("top1", "top5"):
            if row.get(k + "_localised"):
                photo.localisation[k] = row[k + "_localised"] == "true"
        photo.baselines = {mode: row["baseline_" + mode] for mode in ("deletion", "insertion")
                           if row.get("baseline_" + mode)}
    for row in sanity_rows:
        c = classes.get((row["input"], row["class_index"]))
        if c is not None:
            c.sanity.append(SanityRow(row["mode"], int(row["step"]), row["block"], row["map"],
                                      **{key: float(row[key] or "nan")
                                         for key in SIMILARITIES}))
    return list(photos.values())


def read_results(output_dir):
    """(maps, PhotoResults) of a folder's evaluation.csv and sanity.csv."""
    header, rows, sanity = read_rows(output_dir)
    if header is None:
        raise GuidedGradCamError("%s has no %s" % (output_dir, EVALUATION_CSV))
    return maps_of_columns(header), results_of_rows(rows, sanity)
