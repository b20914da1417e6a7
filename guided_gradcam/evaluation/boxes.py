"""Ground-truth boxes (Pascal VOC XML) and the localisation metrics of the Grad-CAM paper.

Boxes are (left, top, right, bottom) in photo pixels with right and bottom exclusive, as in
`guided_gradcam.evaluation.localization`. VOC XML stores 1-based inclusive pixels (xmin..xmax), so
left = xmin - 1 and right = xmax; float coordinates ("273.0") are rounded, halves up.

Difficult objects follow VOC: they are never required and a hit on one never counts.
- Localisation (`localisation_correct`): an image is correct when some predicted class has a
  non-difficult box that its Grad-CAM box overlaps with IoU >= 0.5. An image without any
  non-difficult box is left out (None); so is one where no prediction is correct but some
  predicted class's Grad-CAM box hits a difficult box of that class (neither helps nor hurts).
- Pointing game (`pointing_game`): per image and class; left out (None) when the class has
  only difficult boxes, or when the peak misses every non-difficult box but hits a difficult one.
Numpy and the standard library only: no TensorFlow.
"""
import dataclasses
import functools
import math
import os
import re
import xml.etree.ElementTree as ElementTree
from importlib import resources

import numpy as np

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.labels import NUM_IMAGENET_CLASSES, imagenet_class_names

IOU_THRESHOLD = 0.5  # ILSVRC's and the Grad-CAM paper's localisation criterion
POINTING_TOLERANCE = 15  # pixels, Zhang et al. (2016)
_WNID = re.compile(r"n\d{8}")


@dataclasses.dataclass(frozen=True)
class GroundTruthObject:
    name: str  # an ImageNet wnid ('n02123159') or a class name of the label space
    box: tuple  # (left, top, right, bottom), right and bottom exclusive
    difficult: bool
    truncated: bool


@dataclasses.dataclass(frozen=True)
class Annotation:
    path: str
    filename: str  # None when the XML has no <filename>
    width: int  # width and height: None when the XML has no <size>
    height: int
    objects: tuple  # of GroundTruthObject, in file order (may be empty)
    notes: tuple = ()  # what was read other than written: a 0 coordinate taken as 1


def _fail(path, problem):
    raise GuidedGradCamError("annotation %s: %s" % (path, problem))


def _flag(path, element, tag, where):
    text = (element.findtext(tag) or "0").strip()
    if text not in ("0", "1"):
        _fail(path, "%s has <%s> %r, not 0 or 1" % (where, tag, text))
    return text == "1"


def _number(path, element, tag, where):
    text = element.findtext(tag)
    try:
        value = float(text)
        return math.floor(value + 0.5)  # OverflowError / ValueError for inf and nan
    except (TypeError, ValueError, OverflowError):
        _fail(path, "%s has no numeric <%s> (%r)" % (where, tag, text))


def voc_box(path, where, corners, width=None, height=None, notes=None):
    """(left, top, right, bottom) of VOC's 1-based inclusive (xmin, ymin, xmax, ymax) integers;
    a 0 (LabelImg, CVAT: a box on the left or top border) is read as the first pixel, with a
    line in `notes`; an inverted box, or one outside the photo (width and height when known),
    is a one-line error naming `path` and `where`."""
    xmin, ymin, xmax, ymax = corners
    if xmax < xmin or ymax < ymin:
        _fail(path, "%s has an inverted box: xmin %d ymin %d xmax %d ymax %d"
              % (where, xmin, ymin, xmax, ymax))
    if xmin < 0 or ymin < 0:
        _fail(path, "%s starts at xmin %d ymin %d, outside the photo" % (where, xmin, ymin))
    if xmin == 0 or ymin == 0:
        if notes is not None:
            notes.append("annotation %s: %s starts at xmin %d ymin %d: read as the photo's "
                         "first pixel (VOC pixels are 1-based)" % (path, where, xmin, ymin))
        xmin, ymin, xmax, ymax = max(xmin, 1), max(ymin, 1), max(xmax, 1), max(ymax, 1)
    if width and (xmax > width or ymax > height):
        _fail(path, "%s ends at xmax %d ymax %d, outside the %dx%d photo"
              % (where, xmax, ymax, width, height))
    return xmin - 1, ymin - 1, xmax, ymax


def read_voc_xml(path):
    """The Annotation of a Pascal VOC XML file; any problem is a one-line GuidedGradCamError."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            root = ElementTree.fromstring(f.read())
    except OSError as error:
        _fail(path, "cannot read it: %s" % (error.strerror or error))
    except ElementTree.ParseError as error:
        _fail(path, "not XML (%s)" % error)
    if root.tag != "annotation":
        _fail(path, "the root element is <%s>, not <annotation>" % root.tag)
    width = height = None
    size = root.find("size")
    if size is not None:
        width, height = (_number(path, size, tag, "<size>") for tag in ("width", "height"))
        if width < 1 or height < 1:
            _fail(path, "<size> is %dx%d" % (width, height))
    objects, notes = [], []
    for number, element in enumerate(root.findall("object"), 1):
        name = (element.findtext("name") or "").strip()
        where = "object %d (%r)" % (number, name)
        if not name:
            _fail(path, "object %d has no <name>" % number)
        bndbox = element.find("bndbox")
        if bndbox is None:
            _fail(path, "%s has no <bndbox>" % where)
        box = voc_box(path, where, [_number(path, bndbox, tag, where)
                                    for tag in ("xmin", "ymin", "xmax", "ymax")],
                      width, height, notes)
        objects.append(GroundTruthObject(
            name, box, _flag(path, element, "difficult", where),
            _flag(path, element, "truncated", where)))
    filename = root.findtext("filename")
    return Annotation(path, filename.strip() if filename else None, width, height,
                      tuple(objects), tuple(notes))


def find_annotation(boxes_dir, stem):
    """The Annotation of <boxes_dir>/<stem>.xml, None when there is no such file."""
    if not os.path.isdir(boxes_dir):
        raise GuidedGradCamError("boxes folder %s does not exist" % (boxes_dir,))
    path = os.path.join(boxes_dir, stem + ".xml")
    return read_voc_xml(path) if os.path.isfile(path) else None


@functools.lru_cache(maxsize=1)
def imagenet_synsets():
    """ILSVRC-2012's 1000 WordNet IDs; index i is class i (their sorted order)."""
    text = resources.files("guided_gradcam").joinpath("data/imagenet_synsets.txt").read_text()
    wnids = tuple(text.split())
    assert len(wnids) == NUM_IMAGENET_CLASSES, len(wnids)
    return wnids


@functools.lru_cache(maxsize=1)
def _wnid_indices():
    return {wnid: index for index, wnid in enumerate(imagenet_synsets())}


def class_index(name, labels):
    """An object's class index: a wnid through ImageNet's synsets, any other name (or index)
    through labels.resolve (a LabelSpace), which suggests classes for an unknown name."""
    wnid = name.strip()
    own = getattr(labels, "wnids", None)  # a labels file of synsets (LOC_synset_mapping.txt)
    if own and _WNID.fullmatch(wnid):
        if wnid not in own:
            raise GuidedGradCamError("%s is not one of the labels file's %d synsets"
                                     % (wnid, len(own)))
        return own.index(wnid)
    if _WNID.fullmatch(wnid):
        if len(labels) != NUM_IMAGENET_CLASSES or labels.names != imagenet_class_names():
            raise GuidedGradCamError("object name %s is an ImageNet wnid: a wnid needs "
                                     "ImageNet's classes, not the model's %d" % (wnid, len(labels)))
        index = _wnid_indices().get(wnid)
        if index is None:
            raise GuidedGradCamError("%s is not one of ILSVRC-2012's 1000 synsets" % wnid)
        return index
    return labels.resolve(name)


def ground_truth(annotation, labels):
    """(truth, difficult): {class index: tuple of boxes}, the non-difficult and difficult ones."""
    truth, difficult = {}, {}
    for number, item in enumerate(annotation.objects, 1):
        split = difficult if item.difficult else truth
        try:
            index = class_index(item.name, labels)
        except GuidedGradCamError as error:  # which file, which object: the user edits it
            _fail(annotation.path, "object %d: %s" % (number, error))
        split.setdefault(index, []).append(item.box)
    return ({c: tuple(b) for c, b in truth.items()}, {c: tuple(b) for c, b in difficult.items()})


def boxes_of_class(annotation, class_index, labels):
    """(boxes, difficult_boxes) of one class. `boxes` empty while `difficult_boxes` is not:
    the image is left out of that class's localisation and pointing counts."""
    truth, difficult = ground_truth(annotation, labels)
    return truth.get(class_index, ()), difficult.get(class_index, ())


def iou(a, b):
    """Intersection over union of two boxes with exclusive right/bottom edges; 0 for a
    zero-area box (or two), so never a division by zero."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    area_a = max(a[2] - a[0], 0) * max(a[3] - a[1], 0)
    area_b = max(b[2] - b[0], 0) * max(b[3] - b[1], 0)
    if area_a == 0 or area_b == 0:
        return 0.0
    inter = max(width, 0) * max(height, 0)
    return inter / float(area_a + area_b - inter)


def localised(cam_box, boxes, threshold=IOU_THRESHOLD):
    """True when cam_box overlaps one of the boxes with IoU >= threshold (None → False)."""
    return cam_box is not None and any(iou(cam_box, box) >= threshold for box in boxes)


def localisation_correct(predicted, cam_boxes, truth, difficult=None):
    """ILSVRC's localisation criterion as the Grad-CAM paper (Sec. 4.1) applies it.

    predicted: the top-k class indices; cam_boxes: {class: Grad-CAM box in photo pixels or
    None}; truth / difficult: {class: boxes} (ground_truth's two dicts). True when some
    predicted class c has a box in truth[c] that cam_boxes[c] overlaps with IoU >= 0.5; None
    when the image is left out (the module docstring's difficult-object rule), else False.
    """
    difficult = difficult or {}
    if not any(truth.values()):
        return None
    if any(localised(cam_boxes.get(c), truth.get(c, ())) for c in predicted):
        return True
    if any(localised(cam_boxes.get(c), difficult.get(c, ())) for c in predicted):
        return None
    return False


def _rate(results):
    counted = [bool(r) for r in results if r is not None]
    if not counted:
        raise GuidedGradCamError("nothing to score: every image was left out "
                                 "(no non-difficult box)")
    return sum(counted) / float(len(counted))


def localisation_error(corrects):
    """1 - the fraction of correct images, over the images not left out (None)."""
    return 1.0 - _rate(corrects)


def peak(map2d):
    """(row, col) of the map's maximum, the first in raster order; None for a map without a
    finite value or a flat one (all zero, say): it points nowhere. NaNs are ignored."""
    values = np.asarray(map2d, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError("map must be 2-D, got shape %s" % (values.shape,))
    finite = np.isfinite(values)
    if not finite.any() or values[finite].max() == values[finite].min():
        return None
    row, col = np.unravel_index(np.argmax(np.where(finite, values, -np.inf)), values.shape)
    return int(row), int(col)


def point_to_photo(point, crop_box, input_size):
    """The photo coordinates (x, y) of the centre of network-input pixel point = (row, col).

    crop_box: the photo region resized to the network input; input_size: (height, width).
    Continuous coordinates: photo pixel (c, r) spans [c, c + 1) x [r, r + 1).
    """
    row, col = point
    height, width = input_size
    left, top, right, bottom = crop_box
    return (left + (col + 0.5) * (right - left) / float(width),
            top + (row + 0.5) * (bottom - top) / float(height))


def pointing_hit(point_xy, boxes, tolerance=POINTING_TOLERANCE):
    """True when the point lies within `tolerance` pixels (Euclidean, 0 inside) of a box."""
    if point_xy is None:
        return False
    x, y = point_xy
    return any(math.hypot(max(left - x, 0, x - right), max(top - y, 0, y - bottom)) <= tolerance
               for left, top, right, bottom in boxes)


def pointing_game(point_xy, boxes, difficult_boxes=(), tolerance=POINTING_TOLERANCE):
    """One trial of Zhang et al.'s pointing game: True (hit), False (miss, also for a map that
    points nowhere) or None (left out: see the module docstring's difficult-object rule)."""
    if not boxes:
        return None
    if pointing_hit(point_xy, boxes, tolerance):
        return True
    return None if pointing_hit(point_xy, difficult_boxes, tolerance) else False


def pointing_accuracy(hits):
    """The fraction of hits over the trials not left out (None)."""
    return _rate(hits)
