"""save_outputs writes every file through the atomic writer: each appears by one rename; the
pictures show the methods as asked, and small inputs upscaled."""
import os

import numpy as np
import pytest
from PIL import Image

from guided_gradcam.explanation import Explanation
from guided_gradcam.outputs.files import OUTPUT_KINDS, output_paths, render_outputs, save_outputs
from guided_gradcam.outputs.rendering import gradient_to_image, jet, overlay_on_photo


def _explanation():
    rng = np.random.default_rng(11)
    cam = rng.uniform(size=(16, 16)).astype(np.float32)
    gbp = rng.normal(size=(16, 16, 3)).astype(np.float32)
    probabilities = np.full(1000, 1e-3, np.float32)
    return Explanation(
        label=282, logits=np.zeros(1000, np.float32), probabilities=probabilities,
        cam_lowres=cam[::4, ::4], cam=cam, gbp=gbp, guided_gradcam=gbp * cam[..., None],
        image=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))


@pytest.mark.parametrize("kinds", [OUTPUT_KINDS, ("png",), ("panel",), ("npz",)])
def test_every_file_is_written_beside_and_renamed_into_place(tmp_path, renames, kinds):
    # A file written in place (e.g. Image.save(path)) is visible half-written to a reader and
    # stays half-written after a crash: every output must appear by a rename from beside it.
    output_dir = tmp_path / "out"
    photo = np.random.default_rng(12).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    written = save_outputs(_explanation(), photo, (4, 2, 20, 18), "tiger cat", str(output_dir),
                           "cat", kinds)
    expected = [os.path.abspath(path) for path in output_paths(str(output_dir), "cat", kinds)]
    assert sorted(map(os.path.abspath, written)) == sorted(expected)
    assert sorted(os.listdir(output_dir)) == sorted(os.path.basename(p) for p in expected)
    assert sorted(dst for _, dst in renames) == sorted(expected)
    for src, dst in renames:
        assert os.path.dirname(src) == os.path.dirname(dst) and src != dst
    for path in expected:
        if path.endswith(".png"):
            with Image.open(path) as image:
                assert image.mode == "RGB"


# --- what the pictures show: methods as asked, small inputs upscaled ---------------------------


def _family_explanation(size, methods):
    """An explanation of a size x size input with the Grad-CAM family members `methods`."""
    from guided_gradcam.explanation import MethodMaps

    rng = np.random.default_rng(size)
    maps = {}
    for method in methods:
        cam = rng.uniform(size=(size, size)).astype(np.float32)
        guided = rng.normal(size=(size, size, 3)).astype(np.float32)
        maps[method] = MethodMaps(cam[::4, ::4], cam, guided)
    cam = rng.uniform(size=(size, size)).astype(np.float32)
    gbp = rng.normal(size=(size, size, 3)).astype(np.float32)
    if "gradcam" in maps:
        cam, guided = maps["gradcam"].cam, maps["gradcam"].guided
    else:
        guided = gbp * cam[..., None]
    return Explanation(
        label=282, logits=np.zeros(1000, np.float32), probabilities=np.full(1000, 1e-3, np.float32),
        cam_lowres=cam[::4, ::4], cam=cam, gbp=gbp, guided_gradcam=guided,
        image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8), methods=maps)


def _panel_tiles(panel, count, side):
    """The `count` tiles of a panel whose tiles are side x side, from its layout: PANEL_GAP
    around the edge and between tiles, tiles at the bottom (the row is wider than the
    heading)."""
    from guided_gradcam.outputs.rendering import PANEL_GAP

    assert panel.shape[1] == count * side + (count + 1) * PANEL_GAP, panel.shape
    top = panel.shape[0] - PANEL_GAP - side
    return [panel[top:top + side, left:left + side]
            for left in range(PANEL_GAP, panel.shape[1] - side, side + PANEL_GAP)]


def _nearest(image, size):
    return np.asarray(Image.fromarray(image).resize((size, size), Image.NEAREST))


def _bilinear(image, size):
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _overlay(picture, cam, size):
    """Half the bilinearly upscaled picture, half the jet map upscaled by nearest neighbour."""
    heat = Image.fromarray(_nearest(jet(cam), size))
    return np.asarray(Image.blend(Image.fromarray(_bilinear(picture, size)), heat, 0.5))


@pytest.mark.parametrize("methods", [("gradcampp", "layercam"), ("layercam", "gradcam")])
def test_the_panel_shows_the_methods_asked_in_the_order_given(methods):
    explanation = _family_explanation(224, methods)
    images = render_outputs(explanation, explanation.image, (0, 0, 224, 224), "tiger cat")
    tiles = _panel_tiles(images["panel"], 2 + 2 * len(methods), 224)  # no Grad-CAM added
    for index, method in enumerate(methods):
        _, cam, guided = ((explanation.cam_lowres, explanation.cam, explanation.guided_gradcam)
                          if method == "gradcam" else explanation.methods[method])
        np.testing.assert_array_equal(tiles[2 + 2 * index], _overlay(explanation.image, cam, 224))
        np.testing.assert_array_equal(tiles[3 + 2 * index], gradient_to_image(guided))
    # Grad-CAM's own PNGs are written, asked or not (as its npz fields are always filled).
    expected = {"gradcam", "guided_gradcam", "gbp", "panel"} | set(methods) | {
        "guided_" + method for method in methods}
    assert set(images) == expected
    assert [os.path.basename(path) for path in output_paths("out", "cat", ("png",), methods)
            ] == ["cat_gradcam.png", "cat_gbp.png", "cat_guided_gradcam.png"] + [
        "cat_%s%s.png" % (prefix, method) for method in methods if method != "gradcam"
        for prefix in ("", "guided_")]


def test_a_small_inputs_pictures_are_upscaled_to_224_and_titles_fit():
    """A 96x96 model: every picture 3x (the smallest integer factor to reach 224), maps by
    nearest neighbour and the photo bilinearly, as PIL resizes them here; each title is
    drawn whole (its ink as wide as the full title's text)."""
    from PIL import ImageDraw

    from guided_gradcam.outputs.rendering import PANEL_BACKGROUND, TITLE_FONT_SIZE, _font

    explanation = _family_explanation(96, ("gradcam",))
    photo = np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    images = render_outputs(explanation, photo, (16, 0, 112, 96), "tiger cat")
    gbp = _nearest(gradient_to_image(explanation.gbp), 288)
    guided = _nearest(gradient_to_image(explanation.guided_gradcam), 288)
    np.testing.assert_array_equal(images["gbp"], gbp)
    np.testing.assert_array_equal(images["guided_gradcam"], guided)
    photo_up = np.asarray(Image.fromarray(photo).resize((384, 288), Image.BILINEAR))
    np.testing.assert_array_equal(images["gradcam"],
                                  overlay_on_photo(photo_up, explanation.cam, (48, 0, 336, 288)))
    panel = images["panel"]
    tiles = _panel_tiles(panel, 4, 288)
    np.testing.assert_array_equal(tiles[0], _bilinear(explanation.image, 288))
    np.testing.assert_array_equal(tiles[1], gbp)
    np.testing.assert_array_equal(tiles[2], _overlay(explanation.image, explanation.cam, 288))
    np.testing.assert_array_equal(tiles[3], guided)
    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), _font(TITLE_FONT_SIZE)
    titles_bottom = panel.shape[0] - 8 - 288
    for index, title in enumerate(("Original", "Guided Backprop", "Grad-CAM",
                                   "Guided Grad-CAM")):
        left = 8 + index * (288 + 8)
        strip = panel[titles_bottom - 24:titles_bottom, left:left + 288]
        ink = np.nonzero((strip != PANEL_BACKGROUND).any(axis=(0, 2)))[0]
        assert abs((ink[-1] - ink[0] + 1) - draw.textlength(title, font=font)) <= 3, title
