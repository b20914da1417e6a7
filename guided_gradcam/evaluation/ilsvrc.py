"""Where the ground-truth boxes come from (`--boxes`): a folder of Pascal VOC XML files, one
`<stem>.xml` per photo (ILSVRC-2012's per-image validation XML, `ILSVRC2012_bbox_val_v3.tgz`,
unpacks to such a folder), or ILSVRC-2012's one-file form `LOC_val_solution.csv` (Kaggle's
distribution: a header `ImageId,PredictionString`, then per image its id, the photo's stem,
and 'wnid xmin ymin xmax ymax' for each box, space-separated).

The file's coordinates are read as the XML's are (`boxes.voc_box`: 1-based, inclusive, a 0 as
the first pixel): the two forms come from the same annotations. A malformed row costs its photo
alone (one error line naming the file, the line and the image), as a broken XML file does.
No TensorFlow.
"""
import csv
import math
import os

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation.boxes import (Annotation, GroundTruthObject, find_annotation,
                                             voc_box)

SOLUTION_HEADER = ["ImageId", "PredictionString"]


class XmlFolder:
    """--boxes DIR: `<stem>.xml` per photo."""
    format = "VOC XML per photo"

    def __init__(self, path):
        self.path = path

    def annotation(self, stem):
        return find_annotation(self.path, stem)


class SolutionFile:
    """--boxes LOC_val_solution.csv: every image's boxes in one file, read once."""
    format = "LOC_val_solution.csv"

    def __init__(self, path):
        self.path = path
        self._rows = {}  # image id → (line number, prediction string)
        try:
            with open(path, encoding="utf-8", newline="") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if [cell.strip() for cell in header or []] != SOLUTION_HEADER:
                    raise GuidedGradCamError(
                        "--boxes %s: a box file's first line is %s (LOC_val_solution.csv); "
                        "got %r" % (path, ",".join(SOLUTION_HEADER), ",".join(header or [])))
                for row in reader:
                    if row and row[0].strip():
                        self._rows[row[0].strip()] = (reader.line_num, ",".join(row[1:]))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise GuidedGradCamError("cannot read --boxes %s: %s" % (path, error)) from None

    def __len__(self):
        return len(self._rows)

    def annotation(self, stem):
        """The Annotation of image `stem`; None when the file has no row for it."""
        if stem not in self._rows:
            return None
        line, text = self._rows[stem]
        where = "%s line %d (%s)" % (self.path, line, stem)
        values = text.split()
        if not values or len(values) % 5:
            raise GuidedGradCamError("annotation %s: %d values, not 'wnid xmin ymin xmax ymax' "
                                     "per box" % (where, len(values)))
        objects, notes = [], []
        for number, start in enumerate(range(0, len(values), 5), 1):
            name, *corners = values[start:start + 5]
            try:
                corners = [math.floor(float(value) + 0.5) for value in corners]
            except (ValueError, OverflowError):
                raise GuidedGradCamError("annotation %s: box %d (%s) has a coordinate that is "
                                         "no number: %s" % (where, number, name,
                                                            " ".join(values[start + 1:
                                                                            start + 5])))
            box = voc_box(where, "box %d (%r)" % (number, name), corners, notes=notes)
            objects.append(GroundTruthObject(name, box, difficult=False, truncated=False))
        return Annotation(where, stem, None, None, tuple(objects), tuple(notes))


def open_boxes(path):
    """The box source of --boxes: a folder of XML files, or a LOC_val_solution.csv file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return XmlFolder(path)
    if os.path.isfile(path):
        return SolutionFile(path)
    raise GuidedGradCamError("--boxes %s is neither a folder of XML files nor a "
                             "LOC_val_solution.csv file" % path)
