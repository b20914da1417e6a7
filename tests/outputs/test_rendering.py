"""Tests for guided_gradcam.outputs.rendering: maps to colours, overlays, panels, atomic saving."""

import os

import numpy as np
import pytest
from PIL import Image

from guided_gradcam.outputs.rendering import (
    display_scale, gradient_to_image, jet, make_panel, normalize_map, overlay_on_photo, save_npz,
    save_png, upscale,
)


# --- normalize_map -----------------------------------------------------------


def test_normalize_map_scales_by_max():
    out = normalize_map(np.array([[0.0, 1.0], [2.0, 4.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0.25], [0.5, 1]])


@pytest.mark.parametrize("bad", [np.zeros((3, 3)), -np.ones((3, 3)),
                                 np.full((3, 3), np.nan), np.full((3, 3), np.inf)])
def test_normalize_map_degenerate_gives_zeros(bad):
    out = normalize_map(bad)
    assert np.isfinite(out).all() and (out == 0).all()


def test_normalize_map_batch_is_per_map():
    batch = np.stack([np.full((2, 2), 2.0), np.array([[0.0, 10.0], [5.0, 10.0]]), np.zeros((2, 2))])
    out = normalize_map(batch)
    np.testing.assert_allclose(out[0], 1)
    np.testing.assert_allclose(out[1], [[0, 1], [0.5, 1]])
    np.testing.assert_array_equal(out[2], 0)


# --- jet ---------------------------------------------------------------------


def test_jet_endpoints_and_middle():
    colours = jet(np.array([[0.0, 0.5, 1.0]]))
    assert colours.shape == (1, 3, 3) and colours.dtype == np.uint8
    assert tuple(colours[0, 0]) == (0, 0, 128)      # dark blue
    assert tuple(colours[0, 2]) == (128, 0, 0)      # dark red
    red, green, blue = colours[0, 1].astype(int)
    assert green == 255 and abs(red - blue) <= 1    # green-ish in the middle


def test_jet_passes_through_cyan_and_yellow():
    cyan, yellow = jet(np.array([[0.375, 0.625]]))[0].astype(int)
    assert cyan[0] == 0 and cyan[1] == 255 and cyan[2] == 255
    assert yellow[0] == 255 and yellow[1] == 255 and yellow[2] == 0


def test_jet_clips_out_of_range():
    colours = jet(np.array([[-1.0, 2.0, np.nan]]))
    assert tuple(colours[0, 0]) == (0, 0, 128) and tuple(colours[0, 1]) == (128, 0, 0)


# --- gradient_to_image -------------------------------------------------------


def test_gradient_to_image_zero_is_grey():
    out = gradient_to_image(np.zeros((4, 5, 3), np.float32))
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3) and (out == 128).all()


def test_gradient_to_image_spreads_around_grey():
    g = np.random.default_rng(0).normal(size=(16, 16, 3)) * 3.0
    out = gradient_to_image(g).astype(int)
    assert abs(out.mean() - 128) < 3 and out.min() < 110 and out.max() > 146


def test_gradient_to_image_is_a_standardised_grey_scale_by_hand():
    # mean 2, std 2: z = (-1, -1, 1, 1) → 255 (0.1 z + 0.5) = 102, 102, 153, 153.
    out = gradient_to_image(np.array([[[0.0, 0.0, 4.0, 4.0]]], np.float32))
    np.testing.assert_array_equal(out, [[[102, 102, 153, 153]]])
    # Far tails clip at 0 and 255.
    tails = gradient_to_image(np.array([[[-1e3] + [0.0] * 98 + [1e3]]], np.float32))
    assert tails[0, 0, 0] == 0 and tails[0, 0, -1] == 255


def test_gradient_to_image_treats_non_finite_values_as_zero():
    # As zeros: (0, 4, 0, 4, 0, 0, 4, 4), mean 2, std 2, z = ±1 → 102 or 153 (by hand, above).
    g = np.array([[[np.nan, 4.0, np.inf, 4.0, -np.inf, 0.0, 4.0, 4.0]]], np.float32)
    np.testing.assert_array_equal(gradient_to_image(g), [[[102, 153, 102, 153, 102, 102, 153, 153]]])


# --- overlay_on_photo --------------------------------------------------------


def test_overlay_shape_and_dimmed_outside_box():
    photo = np.full((60, 100, 3), 200, np.uint8)
    box = (20, 0, 80, 60)
    out = overlay_on_photo(photo, np.ones((7, 7)), box)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert (out[:, :20] < photo[:, :20]).all() and (out[:, 80:] < photo[:, 80:]).all()
    assert abs(int(out[0, 0, 0]) - 80) <= 1  # about 40% brightness
    # Inside: half photo, half dark red (cam == 1).
    assert tuple(out[30, 50]) == (164, 100, 100)


def test_overlay_maps_cam_onto_box():
    photo = np.zeros((40, 40, 3), np.uint8)
    cam = np.zeros((4, 4))
    cam[:, 2:] = 1  # hot on the right half of the box
    out = overlay_on_photo(photo, cam, (0, 0, 40, 40), alpha=1.0)
    assert out[20, 35, 0] > out[20, 35, 2] and out[20, 5, 2] > out[20, 5, 0]


def test_overlay_rejects_box_outside_photo():
    with pytest.raises(ValueError):
        overlay_on_photo(np.zeros((10, 10, 3), np.uint8), np.zeros((2, 2)), (0, 0, 11, 10))


# --- make_panel --------------------------------------------------------------


def test_make_panel_layout():
    red = np.zeros((224, 224, 3), np.uint8)
    red[..., 0] = 255
    tiles = [("photo", red), ("Grad-CAM", red), ("Guided Grad-CAM with a long title", red)]
    panel = make_panel(tiles, "tiger cat (282) p=0.49")
    assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[2] == 3
    assert panel.shape[1] >= 3 * 224 and panel.shape[0] > 224 + 30
    assert (panel[0, 0] == 255).all()  # white background
    assert (panel < 100).all(axis=2).any()  # some black text
    red_pixels = (panel[..., 0] == 255) & (panel[..., 1] == 0)
    assert red_pixels.sum() == 3 * 224 * 224


def test_make_panel_widens_for_long_heading():
    tile = np.zeros((10, 10, 3), np.uint8)
    panel = make_panel([("a", tile)], "a very long heading that is wider than the tile")
    assert panel.shape[1] > 100


def test_make_panel_rejects_mismatched_tiles():
    with pytest.raises(ValueError):
        make_panel([("a", np.zeros((4, 4, 3), np.uint8)), ("b", np.zeros((5, 4, 3), np.uint8))], "h")


# --- small pictures ----------------------------------------------------------


@pytest.mark.parametrize("height, width, factor", [
    (96, 96, 3),     # 224 / 96 = 2.33 → 3 (288)
    (112, 300, 2),   # the short side decides: exactly 224
    (113, 113, 2),   # 226
    (224, 224, 1), (320, 256, 1), (16, 16, 14), (1, 500, 224),
])
def test_display_scale_is_the_smallest_integer_reaching_224(height, width, factor):
    assert display_scale(height, width) == factor
    assert min(height, width) * factor >= 224 and min(height, width) * (factor - 1) < 224


def test_upscale_nearest_makes_each_value_a_block_and_leaves_size_1_alone():
    image = np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    blocks = np.repeat(np.repeat(image, 3, axis=0), 3, axis=1)  # by hand
    np.testing.assert_array_equal(upscale(image, 3), blocks)
    assert upscale(image, 1) is image
    bilinear = upscale(image, 3, Image.BILINEAR)
    assert bilinear.shape == (15, 21, 3) and not np.array_equal(bilinear, blocks)


# --- atomic saving -----------------------------------------------------------


def test_save_png_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    path = tmp_path / "out.png"
    save_png(path, image)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_npz_round_trip(tmp_path):
    path = tmp_path / "maps.npz"
    save_npz(path, cam=np.arange(6.0).reshape(2, 3), label=np.array(282))
    with np.load(path) as data:
        np.testing.assert_array_equal(data["cam"], np.arange(6.0).reshape(2, 3))
        assert int(data["label"]) == 282
    assert os.listdir(tmp_path) == ["maps.npz"]


def test_save_png_unencodable_leaves_nothing(tmp_path):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError):
        save_png(path, np.zeros((4, 4), np.float32))  # PNG cannot hold float samples
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("saver", [
    lambda path: save_png(path, np.zeros((4, 4, 3), np.uint8)),
    lambda path: save_npz(path, a=np.zeros(3)),
])
def test_failed_rename_leaves_old_file_and_no_temp(tmp_path, monkeypatch, saver):
    path = tmp_path / "result"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        saver(path)
    assert os.listdir(tmp_path) == ["result"] and path.read_bytes() == b"old"


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        save_png(tmp_path / "new.png", np.zeros((4, 4, 3), np.uint8))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("saver", [
    lambda path: save_png(path, np.zeros((4, 4, 3), np.uint8)),
    lambda path: save_npz(path, a=np.zeros(3)),
], ids=["png", "npz"])
def test_the_temporary_file_lies_beside_its_target(tmp_path, renames, saver):
    # os.replace is atomic only within one file system: a temporary file in the system's temp
    # folder would make the rename fail (EXDEV) or need a copy that readers can see half-done.
    target = tmp_path / "deep" / "result"
    target.parent.mkdir()
    saver(target)
    assert len(renames) == 1
    source, renamed = renames[0]
    assert renamed == str(target)
    assert os.path.dirname(source) == str(target.parent) and source != renamed
    assert os.listdir(target.parent) == ["result"]


# KeyboardInterrupt is no Exception: only a clean-up that catches BaseException removes the
# temporary file when Ctrl-C lands in the middle of a save.
@pytest.mark.parametrize("old", [None, b"old"])
def test_an_interrupt_inside_a_write_leaves_no_partial_target_and_no_temp(tmp_path, monkeypatch, old):
    target = tmp_path / "maps.npz"
    if old is not None:
        target.write_bytes(old)

    def interrupted_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half an npz")  # part of the file is on disk
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        save_npz(target, a=np.zeros(3))
    assert os.listdir(tmp_path) == ([] if old is None else ["maps.npz"])
    if old is not None:
        assert target.read_bytes() == old


@pytest.mark.parametrize("old", [None, b"old"])
def test_an_interrupt_before_the_rename_leaves_no_partial_target_and_no_temp(
        tmp_path, monkeypatch, old):
    target = tmp_path / "map.png"
    if old is not None:
        target.write_bytes(old)

    def interrupted_replace(src, dst):
        assert os.path.getsize(src) > 0  # the PNG is written, not yet in place
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        save_png(target, np.zeros((4, 4, 3), np.uint8))
    assert os.listdir(tmp_path) == ([] if old is None else ["map.png"])
    if old is not None:
        assert target.read_bytes() == old
