"""The framework-free metrics against answers worked out by hand or by brute force (no TF)."""
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from skimage.feature import hog
from skimage.metrics import structural_similarity

from guided_gradcam.evaluation import deletion_insertion as di
from guided_gradcam.evaluation import faithfulness as ff
from guided_gradcam.evaluation import similarity as sim

from conftest import REPO


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_the_metric_modules_do_not_import_tensorflow():
    code = ("import sys; import guided_gradcam.evaluation.faithfulness, "
            "guided_gradcam.evaluation.deletion_insertion, guided_gradcam.evaluation.similarity; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --- faithfulness -----------------------------------------------------------------------------

def test_occlusion_positions_by_hand():
    axis = [0, 3, 6]  # 10 - 4 = 6 is reached by the stride itself: no extra position
    assert ff.occlusion_positions(10, 10, 4, 3).tolist() == [[t, l] for t in axis for l in axis]
    # 12 wide: 0, 3, 6 leave columns 10 and 11 uncovered, so 8 (flush right) is added.
    assert ff.occlusion_positions(4, 12, 4, 3).tolist() == [[0, 0], [0, 3], [0, 6], [0, 8]]
    assert ff.occlusion_positions(7, 4, 4, 4).tolist() == [[0, 0], [3, 0]]
    assert ff.occlusion_positions(4, 4, 4, 1).tolist() == [[0, 0]]
    assert ff.occlusion_positions(224, 224).shape == (25 * 25, 2)  # 0, 8, ..., 192
    assert ff.occlusion_positions(10, 10, 4, 3).dtype.kind == "i"


@pytest.mark.parametrize("height, width, patch, stride",
                         [(10, 10, 4, 3), (11, 13, 5, 4), (9, 30, 7, 7), (224, 224, 32, 8),
                          (50, 37, 32, 32), (5, 40, 1, 1)])
def test_occlusion_positions_cover_every_pixel_and_stay_inside(height, width, patch, stride):
    positions = ff.occlusion_positions(height, width, patch, stride)
    covered = np.zeros((height, width), int)
    for top, left in positions:
        assert 0 <= top <= height - patch and 0 <= left <= width - patch
        covered[top:top + patch, left:left + patch] += 1
    assert covered.min() >= 1
    assert len(np.unique(positions, axis=0)) == len(positions)


def test_a_patch_larger_than_the_image_or_than_the_stride_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        ff.occlusion_positions(20, 31, 32, 8)
    with pytest.raises(ValueError, match="unoccluded"):
        ff.occlusion_positions(30, 30, 2, 7)  # gaps between the patches


def test_occluded_zeros_exactly_the_patch_in_every_channel():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.5, 1.0, (6, 7, 2)).astype(np.float32)
    before = image.copy()
    positions = np.array([[1, 2], [3, 4], [0, 0]])
    copies = ff.occluded(image, positions, 3)
    assert copies.shape == (3, 6, 7, 2) and copies.dtype == np.float32
    for copy, (top, left) in zip(copies, positions):
        inside = np.zeros((6, 7), bool)
        inside[top:top + 3, left:left + 3] = True
        assert np.all(copy[inside] == 0)
        np.testing.assert_array_equal(copy[~inside], image[~inside])
    np.testing.assert_array_equal(image, before)  # the input itself is untouched
    np.testing.assert_array_equal(ff.occluded(image, positions[1:], 3), copies[1:])  # chunks


def test_occlusion_map_of_overlapping_patches_by_hand():
    # 3x3 image, 2x2 patches at (0,0), (0,1), (1,0), (1,1) with deltas 1, 2, 3, 4.
    positions = ff.occlusion_positions(3, 3, 2, 1)
    got = ff.occlusion_map([1.0, 2.0, 3.0, 4.0], positions, 2, (3, 3, 3))
    expected = [[1.0, 1.5, 2.0],
                [2.0, 2.5, 3.0],
                [3.0, 3.5, 4.0]]
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float64


def test_occlusion_map_matches_a_brute_force_loop_over_patches():
    rng = np.random.default_rng(1)
    height, width, patch = 9, 11, 4
    positions = ff.occlusion_positions(height, width, patch, 3)
    deltas = rng.normal(size=len(positions))
    expected = np.zeros((height, width))
    for row in range(height):
        for col in range(width):
            hits = [d for (top, left), d in zip(positions, deltas)
                    if top <= row < top + patch and left <= col < left + patch]
            expected[row, col] = sum(hits) / len(hits)
    np.testing.assert_allclose(ff.occlusion_map(deltas, positions, patch, (height, width)),
                               expected, rtol=1e-12, atol=1e-15)


def test_occlusion_map_gives_bit_identical_values_to_pixels_under_the_same_patches():
    rng = np.random.default_rng(2)
    positions = ff.occlusion_positions(224, 224)
    got = ff.occlusion_map(rng.normal(size=len(positions)), positions, 32, (224, 224))
    # Stride 8: each 8x8 cell is covered by the same patches, so it is one exact value.
    cells = got.reshape(28, 8, 28, 8)
    assert np.all(cells == cells[:, :1, :, :1])


def test_occlusion_map_is_exactly_zero_where_only_zero_deltas_cover():
    rng = np.random.default_rng(12)
    positions = ff.occlusion_positions(224, 224)
    deltas = 10 * rng.normal(size=len(positions))
    deltas[(positions[:, 0] >= 96) & (positions[:, 1] >= 96)] = 0.0
    got = ff.occlusion_map(deltas, positions, 32, (224, 224))
    # Pixels from row/column 128 on lie only in patches starting at 97 or later (104, ...).
    assert np.all(got[128:, 128:] == 0.0)  # a cumulative sum leaves a residue of ~1e-14


def test_spearman_of_a_map_with_itself_its_negative_and_a_monotone_transform(no_warnings):
    rng = np.random.default_rng(3)
    positions = ff.occlusion_positions(20, 20, 6, 2)
    occlusion = ff.occlusion_map(rng.normal(size=len(positions)), positions, 6, (20, 20))
    assert ff.spearman(occlusion, occlusion) == pytest.approx(1.0)
    assert ff.spearman(occlusion, -occlusion) == pytest.approx(-1.0)
    assert ff.spearman(occlusion, np.exp(3 * occlusion)) == pytest.approx(1.0)  # ranks only


def test_spearman_by_hand_with_and_without_ties():
    # Ranks 1 2 3 4 vs 1 3 2 4: d² sums to 2, rho = 1 - 6·2 / (4·15) = 0.8.
    assert ff.spearman([[1, 2], [3, 4]], [[1, 3], [2, 4]]) == pytest.approx(0.8)
    # Tied ranks 1.5 1.5 3 4 vs 1 2 3 4: Pearson of the ranks = 4.5 / sqrt(4.5 · 5).
    assert ff.spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(22.5))


def test_spearman_is_nan_for_a_constant_map_without_a_warning(no_warnings):
    varying = np.arange(12.0).reshape(3, 4)
    assert np.isnan(ff.spearman(np.full((3, 4), 2.5), varying))
    assert np.isnan(ff.spearman(varying, np.zeros((3, 4))))
    with pytest.raises(ValueError):
        ff.spearman(varying, varying.T)


# --- deletion and insertion ---------------------------------------------------------------------

def test_pixel_order_is_descending_with_ties_in_raster_order_and_nan_last():
    saliency = np.array([[3.0, 1.0, 3.0],
                         [np.nan, 5.0, 1.0]])
    order = di.pixel_order(saliency)
    assert order.tolist() == [4, 0, 2, 1, 5, 3]
    assert order.dtype == np.int64
    # NaN counts as -inf: it ties with -inf and keeps raster order against it.
    assert di.pixel_order(np.array([[np.nan, -np.inf, 0.0]])).tolist() == [2, 0, 1]
    with pytest.raises(ValueError):
        di.pixel_order(np.zeros((2, 2, 3)))


def test_pixel_order_keeps_raster_order_within_large_ties():
    saliency = np.random.default_rng(4).integers(0, 3, (64, 64)).astype(np.float32)
    flat = saliency.reshape(-1)
    expected = np.concatenate([np.flatnonzero(flat == value) for value in (2, 1, 0)])
    np.testing.assert_array_equal(di.pixel_order(saliency), expected)


def test_step_fractions_with_a_partial_last_step():
    np.testing.assert_allclose(di.step_fractions(10, 3), [0, 0.3, 0.6, 0.9, 1.0])
    np.testing.assert_allclose(di.step_fractions(9, 3), [0, 1 / 3, 2 / 3, 1.0])
    fractions = di.step_fractions(224 * 224)
    assert len(fractions) == 225 and fractions[1] == 1 / 224 and fractions[-1] == 1.0
    assert fractions.dtype == np.float64


def _hand_blur(image):
    """An 11-tap normalised Gaussian of sigma 5, rows then columns, reflect-101 borders."""
    taps = np.exp(-np.arange(-5, 6) ** 2 / (2 * 5.0 ** 2))
    taps /= taps.sum()
    out = np.empty_like(image, dtype=np.float64)
    for channel in range(image.shape[2]):
        # numpy's 'reflect' mirrors without repeating the edge: OpenCV's BORDER_REFLECT_101.
        padded = np.pad(image[:, :, channel].astype(np.float64), 5, mode="reflect")
        rows = sum(w * padded[:, k:k + image.shape[1]] for k, w in enumerate(taps))
        out[:, :, channel] = sum(w * rows[k:k + image.shape[0], :] for k, w in enumerate(taps))
    return out


def test_blurred_is_an_11_tap_gaussian_with_mirror_borders_per_channel():
    image = np.random.default_rng(5).normal(size=(13, 17, 3)).astype(np.float32)
    got = di.blurred(image)
    assert got.shape == image.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, _hand_blur(image), atol=1e-5)


def test_blurred_keeps_a_constant_image_constant():
    np.testing.assert_allclose(di.blurred(np.full((12, 9, 3), -1.25, np.float32)), -1.25,
                               rtol=1e-6)


def _curve_case(step=7):
    rng = np.random.default_rng(6)
    image = rng.uniform(0.5, 1.5, (5, 6, 3)).astype(np.float32)  # no pixel is 0 by chance
    order = di.pixel_order(rng.normal(size=(5, 6)))
    return image, order, step, len(di.step_fractions(30, step))


def test_deletion_inputs_zero_the_top_ranked_pixels():
    image, order, step, points = _curve_case()
    assert points == 6  # counts 0, 7, 14, 21, 28, 30
    inputs = di.curve_inputs(image, order, step, "deletion", 0, points)
    assert inputs.shape == (points, 5, 6, 3) and inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs[0], image)
    assert np.all(inputs[-1] == 0)
    for k, point in enumerate(inputs):
        zeroed = np.all(point == 0, axis=2).reshape(-1)
        assert zeroed.sum() == min(k * step, 30)
        assert set(np.flatnonzero(zeroed)) == set(order[:min(k * step, 30)].tolist())
        np.testing.assert_array_equal(point[~zeroed.reshape(5, 6)], image[~zeroed.reshape(5, 6)])
    np.testing.assert_array_equal(di.curve_inputs(image, order, step, "deletion", 2, 5),
                                  inputs[2:5])


def test_insertion_inputs_restore_the_top_ranked_pixels_onto_the_blur():
    image, order, step, points = _curve_case()
    baseline = di.blurred(image)
    inputs = di.curve_inputs(image, order, step, "insertion", 0, points, baseline)
    np.testing.assert_array_equal(inputs[0], baseline)
    np.testing.assert_array_equal(inputs[-1], image)
    for k, point in enumerate(inputs):
        restored = np.zeros(30, bool)
        restored[order[:min(k * step, 30)]] = True
        restored = restored.reshape(5, 6)
        np.testing.assert_array_equal(point[restored], image[restored])
        np.testing.assert_array_equal(point[~restored], baseline[~restored])
    np.testing.assert_array_equal(di.curve_inputs(image, order, step, "insertion", 1, 4),
                                  inputs[1:4])  # the default baseline is the blur


def test_deletion_inputs_take_the_baselines_values():
    image, order, step, points = _curve_case()
    baseline = np.random.default_rng(8).uniform(-3, -2, image.shape).astype(np.float32)
    inputs = di.curve_inputs(image, order, step, "deletion", 0, points, baseline)
    np.testing.assert_array_equal(inputs[0], image)
    np.testing.assert_array_equal(inputs[-1], baseline)  # every pixel deleted: the baseline
    for k, point in enumerate(inputs):
        deleted = np.zeros(30, bool)
        deleted[order[:min(k * step, 30)]] = True
        deleted = deleted.reshape(5, 6)
        np.testing.assert_array_equal(point[deleted], baseline[deleted])
        np.testing.assert_array_equal(point[~deleted], image[~deleted])


# Each preprocessing as written out here, from the pixels 0..255 (float64, then float32).
PREPROCESSED = {
    "raw": lambda x: x, "unit": lambda x: x / 255, "inception": lambda x: x / 127.5 - 1,
    "vgg": lambda x: x - np.array([123.68, 116.78, 103.94]),
    "torch": lambda x: (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224,
                                                                               0.225])}


@pytest.mark.parametrize("preprocess", sorted(PREPROCESSED))
def test_baselines_built_by_hand_are_the_same_pixels_whatever_the_preprocessing(preprocess):
    """black, grey, mean and blur are images of pixels, preprocessed as the photo is: the same
    baseline photo for every preprocessing. zero is 0 of the network input: a different photo
    for each (black for raw and unit pixels, grey for inception's, the mean pixel for vgg)."""
    from guided_gradcam.preprocessing import get_preprocessing

    pixels = np.random.default_rng(9).integers(0, 256, (12, 10, 3)).astype(np.float64)
    to_input = PREPROCESSED[preprocess]
    net_input = to_input(pixels).astype(np.float32)
    mean_pixel = pixels.mean(axis=(0, 1))  # the photo's mean colour, in pixels
    expected = {  # each built from pixels, then preprocessed
        "black": to_input(np.zeros_like(pixels)), "grey": to_input(np.full_like(pixels, 127.5)),
        "mean": to_input(np.broadcast_to(mean_pixel, pixels.shape)),
        "blur": to_input(_hand_blur(pixels)), "zero": np.zeros_like(pixels)}
    for name in di.BASELINES:
        got = di.baseline(name, net_input, get_preprocessing(preprocess))
        assert got.shape == net_input.shape and got.dtype == np.float32, name
        # float32 rounding of values up to 255 (half an ulp: 7.6e-6); measured 7.5e-6 (raw's
        # blur), 2.5e-6 (vgg), below 1.1e-6 for the others: 4x margin.
        np.testing.assert_allclose(got, expected[name], rtol=0, atol=3e-5, err_msg=name)
    if preprocess == "inception":  # grey is exactly inception's 0: MobileNet's numbers stay
        assert not di.baseline("grey", net_input, get_preprocessing(preprocess)).any()
    assert di.DEFAULT_BASELINES == {"deletion": "grey", "insertion": "blur"}


def test_an_unknown_baseline_and_one_without_its_preprocessing_are_refused():
    image = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="zero, black, grey, mean, blur"):
        di.baseline("white", image)
    with pytest.raises(ValueError, match="preprocessing"):
        di.baseline("grey", image)


def test_curve_inputs_refuse_bad_arguments():
    image, order, step, points = _curve_case()
    with pytest.raises(ValueError, match="mode"):
        di.curve_inputs(image, order, step, "erasure", 0, 1)
    with pytest.raises(ValueError):
        di.curve_inputs(image, order, step, "deletion", 0, points + 1)
    with pytest.raises(ValueError, match="permutation"):
        di.curve_inputs(image, np.zeros(30, np.int64), step, "deletion", 0, 1)


def test_a_chunk_of_32_points_of_a_224_input_takes_milliseconds():
    rng = np.random.default_rng(7)
    image = rng.normal(size=(224, 224, 3)).astype(np.float32)
    order = di.pixel_order(rng.normal(size=(224, 224)))
    baseline = di.blurred(image)
    begin = time.perf_counter()
    di.curve_inputs(image, order, 224, "deletion", 100, 132)
    di.curve_inputs(image, order, 224, "insertion", 100, 132, baseline)
    assert time.perf_counter() - begin < 1.0  # about 0.1 s on a busy CPU; a loop takes seconds


def test_auc_of_constant_ramp_and_uneven_curves():
    fractions = di.step_fractions(10, 3)  # 0, .3, .6, .9, 1
    assert di.auc(np.full(5, 0.7), fractions) == pytest.approx(0.7)
    assert di.auc(fractions, fractions) == pytest.approx(0.5)
    # .3·(1+.5)/2 + .3·(.5+.5)/2 + .3·(.5+0)/2 + .1·0 = .225 + .15 + .075
    assert di.auc([1.0, 0.5, 0.5, 0.0, 0.0], fractions) == pytest.approx(0.45)
    with pytest.raises(ValueError):
        di.auc([1.0, 0.5], fractions)


# --- similarity ---------------------------------------------------------------------------------

def test_single_channel_takes_max_abs_and_sum_over_channels():
    saliency = np.zeros((2, 2, 3))
    saliency[0, 0] = [1.0, -3.0, 2.0]
    saliency[1, 1] = [1.0, 2.0, 3.0]
    absolute, signed = sim.single_channel(saliency)
    np.testing.assert_array_equal(absolute, [[3.0, 0.0], [0.0, 3.0]])
    np.testing.assert_array_equal(signed, [[0.0, 0.0], [0.0, 6.0]])
    flat = np.array([[-2.0, 1.0], [0.5, 0.0]])
    absolute, signed = sim.single_channel(flat)
    np.testing.assert_array_equal(absolute, np.abs(flat))
    np.testing.assert_array_equal(signed, flat)
    assert absolute.dtype == np.float64
    for shape in [(4,), (1, 4, 4, 3)]:
        with pytest.raises(ValueError):
            sim.single_channel(np.zeros(shape))


def test_compare_identical_maps_is_one_everywhere(no_warnings):
    saliency = np.random.default_rng(8).normal(size=(32, 32, 3))
    for maps in (saliency, saliency[:, :, 0]):
        result = sim.compare(maps, maps.copy())
        assert set(result) == {"spearman_abs", "spearman_signed", "ssim", "hog"}
        for value in result.values():
            assert value == pytest.approx(1.0)


def test_compare_a_map_with_its_scaled_negative():
    saliency = np.random.default_rng(9).normal(size=(40, 48, 3))
    result = sim.compare(saliency, -7.0 * saliency)
    assert result["spearman_signed"] == pytest.approx(-1.0)
    # Same absolute map up to scale: each is divided by its own maximum.
    for key in ("spearman_abs", "ssim", "hog"):
        assert result[key] == pytest.approx(1.0)


def test_compare_different_maps_against_skimage_and_numpy_directly():
    rng = np.random.default_rng(10)
    a = rng.normal(size=(32, 40, 3))
    b = a + rng.normal(scale=2.0, size=a.shape)
    result = sim.compare(a, b)
    unit_a = np.abs(a).max(axis=2) / np.abs(a).max()
    unit_b = np.abs(b).max(axis=2) / np.abs(b).max()
    assert result["ssim"] == pytest.approx(structural_similarity(unit_a, unit_b, data_range=1.0))
    assert result["hog"] == pytest.approx(np.corrcoef(hog(unit_a), hog(unit_b))[0, 1])
    assert 0.0 < result["spearman_signed"] < 1.0 and result["ssim"] < 0.99


def test_compare_with_an_all_zero_map_gives_nan_correlations(no_warnings):
    saliency = np.random.default_rng(11).normal(size=(24, 24))
    result = sim.compare(np.zeros((24, 24)), saliency)
    assert np.isnan(result["spearman_abs"]) and np.isnan(result["spearman_signed"])
    assert np.isnan(result["hog"]) and np.isfinite(result["ssim"])
    with pytest.raises(ValueError):
        sim.compare(saliency, saliency[:, :20])
