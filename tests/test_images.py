"""Tests for guided_gradcam.images: loading every image mode, failures, cropping, path specs."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guided_gradcam import images
from guided_gradcam.errors import ImageError
from guided_gradcam.images import collect_image_paths, crop_box, fit_to_network, load_photo

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_PHOTO = REPO_ROOT / ".." / "shared" / "images" / "cat_dog.jpg"


def save(tmp_path, image, name, **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


def load_rgb(path):
    photo = load_photo(path)
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    return photo


# --- every supported mode loads as uint8 (H, W, 3) with sensible values ------


@pytest.mark.parametrize("mode, name", [
    ("1", "a.png"), ("L", "a.png"), ("LA", "a.png"), ("P", "a.png"), ("RGB", "a.png"),
    ("RGBA", "a.png"), ("PA", "a.tif"), ("I;16", "a.png"), ("I;16B", "a.tif"),
    ("I", "a.tif"), ("F", "a.tif"), ("CMYK", "a.tif"), ("CMYK", "a.jpg"),
    ("YCbCr", "a.tif"), ("RGB", "a.bmp"), ("RGB", "a.gif"), ("RGB", "a.webp"),
])
def test_every_mode_loads_as_rgb(tmp_path, mode, name):
    path = save(tmp_path, Image.new(mode, (7, 5)), name)
    assert load_rgb(path).shape == (5, 7, 3)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    values = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    photo = load_rgb(save(tmp_path, Image.fromarray(values), "g.png"))
    for channel in range(3):
        np.testing.assert_array_equal(photo[:, :, channel], values)


def test_bilevel_is_black_and_white(tmp_path):
    image = Image.new("1", (4, 2), 0)
    image.putpixel((1, 0), 1)
    photo = load_rgb(save(tmp_path, image, "b.png"))
    assert tuple(photo[0, 1]) == (255, 255, 255) and tuple(photo[0, 0]) == (0, 0, 0)


@pytest.mark.parametrize("mode, name", [("I;16", "w.png"), ("I;16B", "w.tif"), ("I", "w.tif")])
def test_sixteen_bit_scales_full_range(tmp_path, mode, name):
    image = Image.new(mode, (3, 1))
    for x, value in enumerate((0, 32896, 65535)):
        image.putpixel((x, 0), value)
    photo = load_rgb(save(tmp_path, image, name))
    # 32896 / 257 = 128; PIL's convert would clip both non-zero values to 255.
    np.testing.assert_array_equal(photo[0, :, 0], [0, 128, 255])


def test_float_is_clipped_to_byte_range(tmp_path):
    values = np.array([[-5.0, 100.4, 300.0]], dtype=np.float32)
    photo = load_rgb(save(tmp_path, Image.fromarray(values), "f.tif"))
    np.testing.assert_array_equal(photo[0, :, 1], [0, 100, 255])


def test_fully_transparent_rgba_becomes_white(tmp_path):
    path = save(tmp_path, Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "t.png")
    assert (load_rgb(path) == 255).all()


def test_half_transparent_rgba_blends_with_white(tmp_path):
    path = save(tmp_path, Image.new("RGBA", (2, 2), (0, 0, 0, 128)), "h.png")
    assert np.all(np.abs(load_rgb(path).astype(int) - 127) <= 1)


def test_palette_transparency_becomes_white(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.putpixel((0, 0), 0)
    path = save(tmp_path, image, "p.png", transparency=0)
    photo = load_rgb(path)
    assert tuple(photo[0, 0]) == (255, 255, 255) and tuple(photo[1, 1]) == (200, 10, 10)


def test_grey_with_alpha_transparent_becomes_white(tmp_path):
    path = save(tmp_path, Image.new("LA", (3, 3), (0, 0)), "la.png")
    assert (load_rgb(path) == 255).all()


@pytest.mark.parametrize("name", ["c.tif", "c.jpg"])
def test_cmyk_cyan_becomes_cyan(tmp_path, name):
    path = save(tmp_path, Image.new("CMYK", (8, 8), (255, 0, 0, 0)), name)
    red, green, blue = load_rgb(path)[4, 4].astype(int)
    assert red < 30 and green > 225 and blue > 225


def test_ycbcr_is_converted(tmp_path):
    grey = Image.new("YCbCr", (4, 4), (200, 128, 128))
    assert np.all(np.abs(load_rgb(save(tmp_path, grey, "y.tif")).astype(int) - 200) <= 1)


def test_exif_orientation_is_honoured(tmp_path):
    # 40 wide, 20 high, red block in the top-left corner.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display after rotating 90 degrees clockwise
    path = save(tmp_path, Image.fromarray(pixels), "r.jpg", exif=exif, quality=95)
    photo = load_rgb(path)
    assert photo.shape == (40, 20, 3)
    # Rotating clockwise moves the top-left corner to the top-right.
    assert photo[3, 16, 0] > 200 and photo[3, 16, 1] < 60
    assert photo[3, 3, 0] < 60 and photo[36, 3, 0] < 60 and photo[36, 16, 0] < 60


def test_shared_photo_loads():
    assert SHARED_PHOTO.is_file(), f"shared test photo missing: {SHARED_PHOTO}"
    assert load_rgb(SHARED_PHOTO).shape == (480, 640, 3)


# --- unreadable inputs raise ImageError with a one-line message naming the path


def assert_image_error(path):
    with pytest.raises(ImageError) as info:
        load_photo(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "not found" in assert_image_error(tmp_path / "nope.jpg")


def test_directory(tmp_path):
    assert "folder" in assert_image_error(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty" in assert_image_error(path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    assert_image_error(path)


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_truncated_file(tmp_path, name):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = save(tmp_path, Image.fromarray(noise), "whole" + Path(name).suffix)
    data = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    assert_image_error(path)


def test_decompression_bomb(tmp_path, monkeypatch):
    path = save(tmp_path, Image.new("RGB", (100, 100)), "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert "too large" in assert_image_error(path)


def test_a_huge_jpeg_decodes_reduced_without_a_warning(tmp_path):
    """12000x9000 (Pillow warns above 89 Mpx): decoded at 1/8 for a 224x224 network, whose
    crop keeps DRAFT_MARGIN times its size; small photos and other formats are untouched."""
    photo = Image.new("RGB", (12000, 9000), (200, 40, 40))
    photo.paste((20, 40, 220), (6000, 0, 12000, 9000))  # right half blue
    path = save(tmp_path, photo, "huge.jpg", quality=70)
    del photo
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the test
        reduced = load_photo(path, network_size=(224, 224))
    assert reduced.shape == (1125, 1500, 3)
    assert min(reduced.shape[:2]) >= images.DRAFT_MARGIN * 224
    assert reduced[500, 200, 0] > 150 and reduced[500, 1300, 2] > 150  # red left, blue right
    small = save(tmp_path, Image.new("RGB", (900, 600), (10, 200, 30)), "small.jpg")
    np.testing.assert_array_equal(load_photo(small, network_size=(224, 224)), load_photo(small))


def test_a_bomb_sized_jpeg_header_is_one_error_line(tmp_path):
    """A JPEG whose header claims 20000x20000 pixels (over twice Pillow's limit) is refused
    before anything is decoded."""
    buffer = tmp_path / "small.jpg"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buffer)
    data = bytearray(buffer.read_bytes())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5:sof + 9] = (20000).to_bytes(2, "big") + (20000).to_bytes(2, "big")
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    message = assert_image_error(path)
    assert "too large to decode safely" in message and "400000000 pixels" in message, message


# --- cropping and resizing ---------------------------------------------------


def test_crop_box_landscape_square_target():
    assert crop_box(640, 480, 224, 224) == (80, 0, 560, 480)


def test_crop_box_portrait_square_target():
    assert crop_box(480, 640, 224, 224) == (0, 80, 480, 560)


def test_crop_box_square_photo():
    assert crop_box(300, 300, 224, 224) == (0, 0, 300, 300)


def test_crop_box_wide_target():
    left, top, right, bottom = crop_box(400, 400, 100, 200)
    assert (left, right) == (0, 400) and bottom - top == 200 and top == 100


@pytest.mark.parametrize("width, height", [(1, 1), (3, 1000), (1000, 3), (451, 300), (7, 5)])
def test_crop_box_stays_inside_photo(width, height):
    left, top, right, bottom = crop_box(width, height, 224, 224)
    assert all(isinstance(v, int) for v in (left, top, right, bottom))
    assert 0 <= left < right <= width and 0 <= top < bottom <= height


def test_crop_box_rejects_non_positive():
    with pytest.raises(ValueError):
        crop_box(0, 10, 224, 224)


def test_fit_to_network_shape_and_box():
    photo = np.zeros((480, 640, 3), np.uint8)
    photo[:, 80:560] = 200  # exactly the centre square
    network_input, box = fit_to_network(photo, 224, 224)
    assert network_input.shape == (224, 224, 3) and network_input.dtype == np.uint8
    assert box == (80, 0, 560, 480)
    assert (network_input == 200).all()


def test_fit_to_network_uses_module_filter(monkeypatch):
    photo = np.random.default_rng(1).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    bilinear, _ = fit_to_network(photo, 10, 10)
    monkeypatch.setattr(images, "RESAMPLE", Image.NEAREST)
    nearest, _ = fit_to_network(photo, 10, 10)
    assert not np.array_equal(bilinear, nearest)


# --- expanding path specs ----------------------------------------------------


def make_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ["b.JPG", "a.png", "c.txt", ".hidden.jpg"]:
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    (folder / "sub" / "d.jpg").write_bytes(b"x")
    return folder


def test_collect_folder_is_sorted_and_filtered(tmp_path):
    folder = make_folder(tmp_path)
    paths, errors = collect_image_paths([folder])
    assert errors == []
    assert [os.path.basename(p) for p in paths] == ["a.png", "b.JPG"]


def test_collect_glob_and_file_keep_order_without_duplicates(tmp_path):
    folder = make_folder(tmp_path)
    explicit = str(folder / "b.JPG")
    paths, errors = collect_image_paths([explicit, str(folder / "*"), str(folder)])
    assert errors == []
    assert [os.path.basename(p) for p in paths] == ["b.JPG", "a.png"]


def test_collect_reports_what_matched_nothing(tmp_path):
    folder = make_folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    specs = [str(tmp_path / "missing.jpg"), str(folder / "*.gif"), str(empty), str(folder)]
    paths, errors = collect_image_paths(specs)
    assert len(paths) == 2 and len(errors) == 3
    for spec, error in zip(specs, errors):
        assert spec in error and "\n" not in error
