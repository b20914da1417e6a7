"""Weakly-supervised localisation from a Grad-CAM map, as the paper measures it (numpy only).

Selvaraju et al. (Sec. 4.1) turn a class's Grad-CAM map into a bounding box: keep the pixels
of the upsampled map at or above 15% of its maximum, then take the box around the largest
connected region. `gradcam_box` does exactly that; `box_to_photo` maps the box from network-input
pixels back onto the photo through the crop box that `GuidedGradCam.fit` returns.

Boxes are (left, top, right, bottom) in pixels with right and bottom exclusive, the convention
of the crop boxes and of PIL, so a box's width is right - left.

Regions are 8-connected (pixels touching at a corner belong together), the usual choice for
blobs in images; a threshold mask of a smooth, upsampled map rarely depends on it.
"""
import dataclasses

import numpy as np

PAPER_THRESHOLD = 0.15  # fraction of the map's maximum


@dataclasses.dataclass(frozen=True)
class Region:
    """One connected region of a mask: its number of pixels and its bounding box."""
    pixels: int
    box: tuple  # (left, top, right, bottom), right and bottom exclusive


def _row_runs(mask):
    """The horizontal runs of True pixels: arrays row, start, end (end exclusive), raster order."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1)  # +1 where a run starts, -1 just after it ends
    rows, starts = np.nonzero(steps == 1)
    _, ends = np.nonzero(steps == -1)  # same rows, same order: runs never overlap in a row
    return rows, starts, ends


def connected_regions(mask, connectivity=8):
    """The connected regions of a 2-D boolean mask, in raster order of their first pixel.

    connectivity: 8 (neighbours include the diagonals) or 4. Works on row runs joined by a
    union-find, so its cost grows with the number of runs, not of pixels.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError("mask must be 2-D, got shape %s" % (mask.shape,))
    if connectivity not in (4, 8):
        raise ValueError("connectivity must be 4 or 8, got %r" % (connectivity,))
    reach = 1 if connectivity == 8 else 0  # how far a run in the next row may sit diagonally
    rows, starts, ends = _row_runs(mask)
    parent = list(range(len(rows)))

    def root(run):
        while parent[run] != run:
            parent[run] = parent[parent[run]]
            run = parent[run]
        return run

    # Join each run with the overlapping runs of the row above (both lists sorted by start).
    row_begin = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    for row in range(1, mask.shape[0]):
        above = range(row_begin[row - 1], row_begin[row])
        here = range(row_begin[row], row_begin[row + 1])
        a = 0
        for run in here:
            # Skip runs above that end before this one can touch them.
            while a < len(above) and ends[above[a]] + reach <= starts[run]:
                a += 1
            b = a
            while b < len(above) and starts[above[b]] < ends[run] + reach:
                parent[root(above[b])] = root(run)
                b += 1

    regions = {}  # root → [pixels, left, top, right, bottom]; dicts keep insertion order
    for run in range(len(rows)):
        row, start, end = int(rows[run]), int(starts[run]), int(ends[run])
        region = regions.setdefault(root(run), [0, start, row, end, row + 1])
        region[0] += end - start
        region[1], region[3] = min(region[1], start), max(region[3], end)
        region[4] = row + 1  # runs come in row order
    return [Region(pixels, (left, top, right, bottom))
            for pixels, left, top, right, bottom in regions.values()]


def gradcam_box(cam, threshold=PAPER_THRESHOLD, connectivity=8):
    """The paper's localisation box for a Grad-CAM map (H, W), in the map's pixels.

    Keeps the pixels >= threshold * max(cam) and returns the bounding box
    (left, top, right, bottom), right/bottom exclusive, of the largest connected region (on a
    tie, the one whose first pixel comes first in raster order). None when the map has no
    positive finite maximum (an all-zero map). NaNs count as 0.
    """
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if cam.ndim != 2:
        raise ValueError("cam must be a 2-D map, got shape %s" % (cam.shape,))
    if not 0 < threshold <= 1:
        raise ValueError("threshold must be in (0, 1], got %r" % (threshold,))
    peak = cam.max() if cam.size else 0.0
    if peak <= 0:
        return None
    regions = connected_regions(cam >= threshold * peak, connectivity)
    return max(regions, key=lambda region: region.pixels).box  # max keeps the first of ties


def box_to_photo(box, crop_box, input_size):
    """Maps a box in network-input pixels onto the photo.

    crop_box: (left, top, right, bottom) of the photo that was resized to the network input
    (`GuidedGradCam.fit`'s second result); input_size: the network input's (height, width).
    Box edges are scaled exactly and rounded to the nearest photo pixel edge (halves up).
    """
    height, width = (int(v) for v in input_size)
    crop_left, crop_top, crop_right, crop_bottom = (int(v) for v in crop_box)
    left, top, right, bottom = (int(v) for v in box)
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError("box %s is not inside a %dx%d network input" % (tuple(box), width, height))

    def scale(edge, origin, span, size):  # origin + round(edge * span / size), integers only
        return origin + (2 * edge * span + size) // (2 * size)

    crop_width, crop_height = crop_right - crop_left, crop_bottom - crop_top
    return (scale(left, crop_left, crop_width, width), scale(top, crop_top, crop_height, height),
            scale(right, crop_left, crop_width, width),
            scale(bottom, crop_top, crop_height, height))


def mask_box(mask):
    """The bounding box (left, top, right, bottom) of a mask's True pixels; None when none."""
    rows, cols = np.nonzero(np.asarray(mask))
    if not len(rows):
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def region_hit(point_xy, mask, crop_box, input_size, tolerance):
    """The pointing game on a region: True when the point (photo coordinates, as
    `boxes.point_to_photo` gives) lies within `tolerance` photo pixels (Euclidean, 0 inside) of
    a pixel of `mask` (bool, network-input pixels), each pixel the photo rectangle it was
    resized from: the convention of `boxes.pointing_hit`, a box replaced by the region's
    pixels. False for no point (a flat map) or an empty mask."""
    rows, cols = np.nonzero(np.asarray(mask, bool))
    if point_xy is None or not len(rows):
        return False
    height, width = input_size
    crop_left, crop_top, crop_right, crop_bottom = crop_box
    step_x = (crop_right - crop_left) / float(width)
    step_y = (crop_bottom - crop_top) / float(height)
    left, top = crop_left + cols * step_x, crop_top + rows * step_y
    x, y = point_xy
    dx = np.maximum(np.maximum(left - x, 0.0), x - (left + step_x))
    dy = np.maximum(np.maximum(top - y, 0.0), y - (top + step_y))
    return bool((np.hypot(dx, dy) <= tolerance).any())


def region_truth(explanations, crop_box, input_size):
    """A segmentation photo's ground truth without VOC boxes: ({class: (the box around the
    region it was explained on, in photo pixels,)}, {}), as `boxes.ground_truth` gives: what
    the Grad-CAM box is localised against (IoU >= 0.5)."""
    truth = {}
    for explanation in explanations:
        box = mask_box(explanation.region)
        if box is not None:
            truth[explanation.label] = (box_to_photo(box, crop_box, input_size),)
    return truth, {}
