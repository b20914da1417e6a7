"""The PNG encoder round-trips through Pillow's decoder, pixel for pixel."""
import io

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from guided_gradcam.images import load_photo
from guided_gradcam.outputs.png import encode_png


@pytest.mark.parametrize("shape, mode", [
    ((1, 1, 3), "RGB"), ((17, 5, 3), "RGB"), ((224, 224, 3), "RGB"), ((3, 300, 4), "RGBA"),
    ((40, 30), "L"), ((40, 30, 1), "L")])
def test_pillow_decodes_exactly_what_was_encoded(shape, mode):
    pixels = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(encode_png(pixels)))
    decoded.load()
    assert decoded.mode == mode
    np.testing.assert_array_equal(np.asarray(decoded), pixels.reshape(np.asarray(decoded).shape))


def test_smooth_images_compress():
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (256, 256, 3))
    assert len(encode_png(ramp)) < ramp.nbytes / 20  # the Sub filter turns a ramp into repeats


def test_same_pixels_give_the_same_bytes():
    pixels = np.random.default_rng(6).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    assert encode_png(pixels) == encode_png(pixels.copy())


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros(4, np.uint8)])
def test_bad_arrays_are_refused(bad):
    with pytest.raises(ValueError):
        encode_png(bad)


def test_a_real_photo_is_about_as_small_as_pillows_fast_png():
    photo = load_photo(REPO / "images" / "cat.jpg")
    pillows = io.BytesIO()
    Image.fromarray(photo).save(pillows, "PNG", compress_level=1)
    assert len(encode_png(photo)) < 1.15 * len(pillows.getvalue())
    assert len(encode_png(photo)) < 0.6 * photo.nbytes  # deflate finds repeats, not only codes
