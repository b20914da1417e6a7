"""The paper's localisation box on synthetic maps, and boxes mapped back onto the photo."""
from types import SimpleNamespace

import numpy as np
import pytest

from guided_gradcam.images import crop_box
from guided_gradcam.evaluation.localization import (
    PAPER_THRESHOLD, box_to_photo, connected_regions, gradcam_box, mask_box, region_hit,
    region_truth)


def _blob(shape, centre, sigma, peak=1.0):
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    squared = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2
    return peak * np.exp(-squared / (2.0 * sigma ** 2))


def test_a_single_plateau_gives_its_box():
    cam = np.zeros((20, 30), np.float32)
    cam[5:10, 3:12] = 0.7
    assert gradcam_box(cam) == (3, 5, 12, 10)  # right and bottom exclusive


def test_a_gaussian_blob_gives_the_15_percent_circle_around_its_centre():
    sigma = 10.0
    cam = _blob((224, 224), (80, 140), sigma)
    left, top, right, bottom = gradcam_box(cam)
    # exp(-r²/2σ²) ≥ 0.15 ⇔ r ≤ σ·sqrt(2·ln(1/0.15)) ≈ 1.95σ
    radius = sigma * np.sqrt(2 * np.log(1 / PAPER_THRESHOLD))
    assert (left, top) == (140 - int(radius), 80 - int(radius))
    assert (right, bottom) == (140 + int(radius) + 1, 80 + int(radius) + 1)


def test_two_blobs_give_the_larger_ones_box_even_if_the_other_is_hotter():
    cam = np.zeros((40, 40))
    cam[2:6, 2:6] = 1.0  # the peak, 16 pixels
    cam[20:35, 10:30] = 0.5  # 300 pixels, above 15 %
    assert gradcam_box(cam) == (10, 20, 30, 35)


def test_two_smooth_blobs_give_the_larger_ones_box():
    cam = _blob((200, 200), (50, 50), 6.0, peak=1.0) + _blob((200, 200), (140, 120), 20.0, peak=0.8)
    left, top, right, bottom = gradcam_box(cam)
    assert left < 120 < right and top < 140 < bottom
    assert right - left > 60  # the wide blob, not the narrow hot one


def test_the_threshold_is_inclusive_at_exactly_15_percent():
    cam = np.zeros((10, 10))
    cam[1, 1] = 20.0
    cam[1, 2] = 3.0  # exactly 15 % of 20: kept
    cam[1, 3] = 2.999  # just below: dropped
    assert 0.15 * 20.0 == 3.0
    assert gradcam_box(cam) == (1, 1, 3, 2)
    assert gradcam_box(cam, threshold=0.1) == (1, 1, 4, 2)


def test_an_all_zero_or_negative_map_has_no_box():
    assert gradcam_box(np.zeros((7, 7))) is None
    assert gradcam_box(-np.ones((7, 7))) is None
    assert gradcam_box(np.full((7, 7), np.nan)) is None


def test_nan_counts_as_zero():
    cam = np.zeros((8, 8))
    cam[2:4, 2:5] = 1.0
    cam[6, 6] = np.nan
    assert gradcam_box(cam) == (2, 2, 5, 4)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        gradcam_box(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError):
        gradcam_box(np.ones((3, 3)), threshold=0)
    with pytest.raises(ValueError):
        connected_regions(np.ones((3, 3), bool), connectivity=6)


def test_diagonal_neighbours_join_under_8_connectivity_only():
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:2] = True
    mask[2:5, 2:4] = True  # touches the first square at a corner only
    eight = connected_regions(mask, connectivity=8)
    four = connected_regions(mask, connectivity=4)
    assert [(r.pixels, r.box) for r in eight] == [(10, (0, 0, 4, 5))]
    assert [(r.pixels, r.box) for r in four] == [(4, (0, 0, 2, 2)), (6, (2, 2, 4, 5))]


def test_a_tie_goes_to_the_first_region_in_raster_order():
    cam = np.zeros((10, 10))
    cam[6:8, 0:2] = 1.0
    cam[1:3, 7:9] = 1.0
    assert gradcam_box(cam) == (7, 1, 9, 3)


def _flood_fill_regions(mask, connectivity):
    """Reference labelling: a breadth-first flood fill from each unvisited pixel."""
    if connectivity == 8:
        steps = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
    else:
        steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    seen = np.zeros(mask.shape, bool)
    regions = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, pixels = [start], []
        while queue:
            row, col = queue.pop()
            pixels.append((row, col))
            for dr, dc in steps:
                r, c = row + dr, col + dc
                if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and mask[r, c] \
                        and not seen[r, c]:
                    seen[r, c] = True
                    queue.append((r, c))
        rows, cols = zip(*pixels)
        regions.append((len(pixels), (min(cols), min(rows), max(cols) + 1, max(rows) + 1)))
    return regions


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("density", [0.3, 0.45, 0.6])
def test_regions_equal_a_flood_fill_on_random_masks(connectivity, density):
    rng = np.random.default_rng(int(density * 100) + connectivity)
    for _ in range(20):
        mask = rng.random((rng.integers(1, 30), rng.integers(1, 30))) < density
        found = [(r.pixels, r.box) for r in connected_regions(mask, connectivity)]
        assert found == _flood_fill_regions(mask, connectivity)


def test_box_maps_back_through_the_crop():
    crop = crop_box(640, 480, 224, 224)  # cat_dog.jpg: the central 480x480 square
    assert crop == (80, 0, 560, 480)
    assert box_to_photo((0, 0, 224, 224), crop, (224, 224)) == crop
    assert box_to_photo((0, 0, 112, 112), crop, (224, 224)) == (80, 0, 320, 240)
    # 480/224 = 15/7 per pixel: 7 → 15, 10 → 21.4 → 21, 100 → 214.3 → 214, 201 → 430.7 → 431
    assert box_to_photo((7, 10, 100, 201), crop, (224, 224)) == (95, 21, 294, 431)


def test_box_maps_back_for_a_non_square_input():
    crop = crop_box(1000, 1000, 240, 320)  # a 4:3 input from a square photo
    assert crop == (0, 125, 1000, 875)
    scale_x, scale_y = 1000 / 320, 750 / 240
    box = (32, 24, 288, 216)
    expected = (round(32 * scale_x), 125 + round(24 * scale_y),
                round(288 * scale_x), 125 + round(216 * scale_y))
    assert box_to_photo(box, crop, (240, 320)) == expected == (100, 200, 900, 800)


def test_box_outside_the_input_is_refused():
    with pytest.raises(ValueError):
        box_to_photo((0, 0, 225, 10), (0, 0, 480, 480), (224, 224))


# -- a segmentation region as the ground truth ------------------------------------------------

def _l_shaped_region():
    """4x4 network-input pixels, the photo's crop (0, 0, 8, 8): each pixel is 2x2 photo
    pixels. An L: column 0 and row 3, so its bounding box covers the empty top right."""
    mask = np.zeros((4, 4), bool)
    mask[:, 0] = True
    mask[3, :] = True
    return mask


@pytest.mark.parametrize("point, tolerance, hit", [
    ((1.0, 1.0), 0, True),     # inside pixel (0, 0): photo [0, 2) x [0, 2)
    ((2.0, 1.0), 0, True),     # on the right edge of pixel (0, 0): distance 0, as for boxes
    ((5.0, 3.0), 0, False),    # pixel (1, 2): in the region's box, not in the region
    ((5.0, 3.0), 3.0, True),   # 3 photo pixels right of column 0 ([0, 2)): within 3
    ((5.0, 3.0), 2.9, False),  # 3 from column 0 and 3 from row 3 (y in [6, 8)): neither
    ((7.0, 3.0), 3.0, True),   # pixel (1, 3): 3 above row 3 ([6, 8))
    ((7.0, 2.0), 3.9, False),  # 4 above row 3, 5 right of column 0
    ((11.0, 11.0), 5.0, True),   # outside the crop: corner (8, 8) at 3√2 = 4.24
    ((11.0, 11.0), 4.2, False),
])
def test_the_pointing_game_on_a_region_measures_photo_pixels_to_its_nearest_pixel(
        point, tolerance, hit):
    assert region_hit(point, _l_shaped_region(), (0, 0, 8, 8), (4, 4), tolerance) is hit


def test_the_pointing_game_on_a_region_follows_the_crop_and_misses_without_a_peak():
    mask = np.zeros((2, 4), bool)
    mask[1, 3] = True  # the crop (10, 20, 18, 24) of the photo: pixel (1, 3) is [16, 18) x [22, 24)
    crop = (10, 20, 18, 24)
    assert region_hit((17.0, 23.0), mask, crop, (2, 4), 0)
    assert not region_hit((15.0, 23.0), mask, crop, (2, 4), 0.9)  # 1 photo pixel left
    assert region_hit((15.0, 23.0), mask, crop, (2, 4), 1.0)
    assert not region_hit(None, mask, crop, (2, 4), 100)  # a flat map points nowhere
    assert not region_hit((17.0, 23.0), np.zeros((2, 4), bool), crop, (2, 4), 100)


def test_a_peak_on_the_region_hits_with_no_tolerance_and_the_box_would_not_tell():
    """The map's maximum on a region pixel hits at tolerance 0; in the empty corner of the
    L's bounding box it misses, where the box around the region hits."""
    from guided_gradcam.evaluation.boxes import peak, point_to_photo, pointing_hit

    region = _l_shaped_region()
    crop, size = (0, 0, 8, 8), (4, 4)
    for where, inside in (((3, 2), True), ((1, 2), False)):
        cam = np.zeros((4, 4))
        cam[where] = 1.0
        point = point_to_photo(peak(cam), crop, size)
        assert region_hit(point, region, crop, size, 0) is inside
        region_box = box_to_photo(mask_box(region), crop, size)
        assert pointing_hit(point, [region_box], 0)  # the box covers both


def test_localisation_against_a_region_is_the_iou_of_the_boxes():
    """The paper's box of the map (15 % of its maximum, largest connected part) against the
    region's bounding box: a 4x4 square region in a 10x10 input, maps of known boxes."""
    from guided_gradcam.evaluation.boxes import iou, localisation_correct

    region = np.zeros((10, 10), bool)
    region[2:6, 2:6] = True
    crop, size = (0, 0, 20, 20), (10, 10)
    truth = region_truth([SimpleNamespace(label=3, region=region)], crop, size)
    assert truth == ({3: ((4, 4, 12, 12),)}, {})
    for cam_box, correct in (((2, 2, 6, 6), True),    # the same box: IoU 1
                             ((2, 2, 6, 5), True),    # 12 of 16 pixels: IoU 0.75
                             ((2, 2, 4, 6), True),    # 8 of 16: IoU 0.5, counted
                             ((2, 2, 6, 3), False),   # 4 of 16: IoU 0.25
                             ((6, 6, 9, 9), False)):  # apart
        cam = np.zeros(size)
        cam[cam_box[1]:cam_box[3], cam_box[0]:cam_box[2]] = 1.0
        box = box_to_photo(gradcam_box(cam), crop, size)
        assert localisation_correct([3], {3: box}, *truth) is correct
        assert (iou(box, truth[0][3][0]) >= 0.5) is correct

