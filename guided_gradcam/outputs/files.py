"""Rendering one explanation into the CLI's files: numpy post-processing and I/O only."""
import os

import numpy as np
from PIL import Image

from guided_gradcam.core.tasks import REGRESSION
from guided_gradcam.outputs import rendering
from guided_gradcam.outputs.region_tiles import region_tiles
from guided_gradcam.methods import GRADCAM, TITLES

OUTPUT_KINDS = ("png", "npz", "panel")
PNG_MAPS = ("gradcam", "gbp", "guided_gradcam")


def heading(explanation, class_name):
    prefix = "counterfactual " if explanation.counterfactual else ""
    if explanation.task == REGRESSION:
        return "%s%s  y=%.4g" % (prefix, "-y" if explanation.counterfactual else "y",
                                 explanation.value)
    return "%s%s (%d)  p=%.3f" % (
        prefix, class_name, explanation.label, explanation.probabilities[explanation.label])


def _rgb(array):
    """Gray (H, W, 1) arrays of a 1-channel model are drawn as RGB."""
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def render_outputs(explanation, photo, box, class_name, kinds=OUTPUT_KINDS):
    """{'gradcam', 'gbp', 'guided_gradcam', and '<method>', 'guided_<method>' for each other
    method of `explanation.methods`} ('png') and {'panel'} → uint8 RGB images.

    Grad-CAM-style maps are overlaid on the whole photo at its own resolution (`box` is where
    the network input came from); the others are at the network input size. A picture whose
    short side is under 224 pixels (a small model's input, a small photo) is upscaled by an
    integer factor to at least 224 (`rendering.display_scale`): maps by nearest neighbour, each
    value a block, the photo bilinearly. The panel shows the methods of `explanation.methods`
    in their order (Grad-CAM only where asked); Grad-CAM's PNGs are always written.
    """
    images = {}
    if "png" not in kinds and "panel" not in kinds:
        return images  # an arrays-only run renders nothing
    height, width = explanation.cam.shape
    scale = rendering.display_scale(height, width)
    maps = {method: explanation.maps(method) for method in explanation.methods or (GRADCAM,)}
    shown = tuple(maps)  # the panel's methods, in the order asked
    if "png" in kinds:
        maps.setdefault(GRADCAM, explanation.maps(GRADCAM))
    gbp = rendering.upscale(rendering.gradient_to_image(_rgb(explanation.gbp)), scale)
    guided_images = {method: rendering.upscale(rendering.gradient_to_image(_rgb(guided)), scale)
                     for method, (_, _, guided) in maps.items()}
    if "png" in kinds:
        photo, box = _for_display(photo, box)
        for method, (_, cam, _) in maps.items():
            images[method] = rendering.overlay_on_photo(photo, cam, box)
            images["guided_" + method] = guided_images[method]
        images["gbp"] = gbp
    if "panel" in kinds:
        original = rendering.upscale(_rgb(explanation.image), scale, Image.BILINEAR)
        tiles = [("Original", original), ("Guided Backprop", gbp)]
        if explanation.region is not None:  # segmentation: the region and the prediction
            tiles[:1] = region_tiles(explanation, original)
        for method in shown:
            cam = maps[method][1]
            if scale > 1:  # nearest neighbour: each map value a scale x scale block
                cam = np.repeat(np.repeat(cam, scale, axis=0), scale, axis=1)
            title = TITLES[method]
            tiles += [(title, rendering.overlay_on_photo(original, cam, (0, 0) + cam.shape[::-1])),
                      ("Guided " + title, guided_images[method])]
        images["panel"] = rendering.make_panel(tiles, heading(explanation, class_name))
    return images


def _for_display(photo, box):
    """(photo, box) upscaled bilinearly where the photo's short side is under 224 pixels."""
    scale = rendering.display_scale(*np.shape(photo)[:2])
    if scale == 1:
        return photo, box
    return (rendering.upscale(np.asarray(photo), scale, Image.BILINEAR),
            tuple(int(value) * scale for value in box))


def _output_names(stem, kinds, methods=("gradcam",)):
    """{image name: file name} in writing order."""
    names = {}
    if "png" in kinds:
        names.update((name, "%s_%s.png" % (stem, name)) for name in PNG_MAPS)
        for method in methods:  # Grad-CAM's two are among PNG_MAPS already
            names.update((name, "%s_%s.png" % (stem, name))
                         for name in (method, "guided_" + method))
    if "panel" in kinds:
        names["panel"] = "%s_panel.png" % stem
    if "npz" in kinds:
        names["npz"] = stem + ".npz"
    return names


def output_paths(output_dir, stem, kinds=OUTPUT_KINDS, methods=("gradcam",)):
    """The files `save_outputs` writes for `stem`, `kinds` and the Grad-CAM family `methods`."""
    return [os.path.join(output_dir, name)
            for name in _output_names(stem, kinds, methods).values()]


def save_outputs(explanation, photo, box, class_name, output_dir, stem, kinds=OUTPUT_KINDS):
    """Writes the files of `output_paths` atomically; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    methods = tuple(explanation.methods) or ("gradcam",)
    names = _output_names(stem, kinds, methods)
    paths = dict(zip(names, output_paths(output_dir, stem, kinds, methods)))
    for name, image in render_outputs(explanation, photo, box, class_name, kinds).items():
        rendering.save_png(paths[name], image)
    if "npz" in kinds:
        rendering.save_npz(paths["npz"], **explanation.arrays())
    return list(paths.values())
