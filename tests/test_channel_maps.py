"""`channel_maps`, the numpy maps of weights found outside the graph, on hand-worked cases
(their equality with the graph's own maps is in tests/methods/test_gradient_free.py)."""
import numpy as np
import pytest

from guided_gradcam import channel_maps


@pytest.mark.parametrize("left_shape,right_shape", [
    ((224, 7), (3, 7, 672)),  # 224 rows of 7 x 672: above the one-thread size, in blocks
    ((2, 300, 5), (5, 900)),
    ((4, 3), (3, 2)),  # small: one product
])
def test_products_in_blocks_equal_one_product(left_shape, right_shape):
    rng = np.random.default_rng(0)
    left = rng.normal(size=left_shape).astype(np.float32)
    right = rng.normal(size=right_shape).astype(np.float32)
    # float32 products of 3 to 7 terms against float64: over 20 seeds the worst used 7 % of
    # this tolerance (rtol = atol = 1e-5), whatever the order of the sums.
    expected = left.astype(np.float64) @ right
    np.testing.assert_allclose(channel_maps.matmul_in_blocks(left, right), expected,
                               rtol=1e-5, atol=1e-5)
    out = np.full(expected.shape, np.nan, np.float32)
    assert channel_maps.matmul_in_blocks(left, right, out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_upsampling_repeats_each_pixel_in_the_layout_of_channels():
    maps = np.array([[[0.0, 3.0], [6.0, 9.0]]])
    # 2 → 4, half-pixel centres: (0, 3) becomes (0, 0.75, 2.25, 3) along a row.
    up = channel_maps.upsample(maps, 4, 4)
    np.testing.assert_allclose(up[0, 0], [0, 0.75, 2.25, 3], atol=1e-6)
    np.testing.assert_allclose(up[0, :, 0], [0, 1.5, 4.5, 6], atol=1e-6)
    repeated = channel_maps.upsample(maps, 4, 4, repeat=3).reshape(1, 4, 4, 3)
    np.testing.assert_array_equal(repeated, np.repeat(up[..., None], 3, axis=3))


def test_weighted_maps_by_hand():
    # A: 2x2 pixels, 2 channels; w = (1, -1): Σ_k w_k A^k = A^0 - A^1, then ReLU.
    activations = np.array([[[[3.0, 1.0], [0.0, 2.0]], [[1.0, 1.0], [4.0, 0.0]]]], np.float32)
    gbp = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    lowres, cam, guided = channel_maps.weighted_maps(np.array([[1.0, -1.0]]), activations, gbp)
    np.testing.assert_allclose(lowres[0], [[2, 0], [0, 4]])
    np.testing.assert_allclose(cam[0], [[0.5, 0], [0, 1]])  # same size: divided by the peak
    np.testing.assert_allclose(guided, gbp * cam[..., None])
    # Weights that leave nothing positive: an all-zero map, never NaN.
    _, cam, guided = channel_maps.weighted_maps(np.array([[-1.0, -1.0]]), activations, gbp)
    assert (cam == 0).all() and (guided == 0).all()


def test_projection_is_signed_by_the_channel_sum():
    # Pixels on a line along (1, 1): the first component is ±(1, 1)/√2, the projection of a
    # centred pixel ±(Σ_k)/√2; the sign makes it grow with Σ_k.
    pixels = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], np.float32)
    for flip in (1.0, -1.0):
        projection = channel_maps.principal_projection(flip * pixels.reshape(1, 2, 2, 2))
        sums = flip * pixels.sum(axis=1)
        np.testing.assert_allclose(projection.ravel(), (sums - sums.mean()) / np.sqrt(2),
                                   atol=1e-6)
