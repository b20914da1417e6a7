"""Rendering one explanation into the CLI's files: numpy post-processing and I/O only."""
import os

import numpy as np

from guided_gradcam import rendering

OUTPUT_KINDS = ("png", "npz", "panel")
PNG_MAPS = ("gradcam", "gbp", "guided_gradcam")


def heading(explanation, class_name):
    prefix = "counterfactual " if explanation.counterfactual else ""
    if explanation.task == "regression":
        return "%s%s  y=%.4g" % (prefix, "-y" if explanation.counterfactual else "y",
                                 explanation.value)
    return "%s%s (%d)  p=%.3f" % (
        prefix, class_name, explanation.label, explanation.probabilities[explanation.label])


def _rgb(array):
    """Gray (H, W, 1) arrays of a 1-channel model are drawn as RGB."""
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def render_outputs(explanation, photo, box, class_name, kinds=OUTPUT_KINDS):
    """{'gradcam', 'gbp', 'guided_gradcam'} ('png') and {'panel'} → uint8 RGB images.

    'gradcam' overlays the map on the whole photo at its own resolution (`box` is where the
    network input came from); the others are at the network input size.
    """
    images = {}
    if "png" not in kinds and "panel" not in kinds:
        return images  # an arrays-only run renders nothing
    gbp = rendering.gradient_to_image(_rgb(explanation.gbp))
    guided = rendering.gradient_to_image(_rgb(explanation.guided_gradcam))
    network_input = _rgb(explanation.image)
    if "png" in kinds:
        images.update(gradcam=rendering.overlay_on_photo(photo, explanation.cam, box),
                      gbp=gbp, guided_gradcam=guided)
    if "panel" in kinds:
        height, width = explanation.cam.shape
        cam_on_input = rendering.overlay_on_photo(
            network_input, explanation.cam, (0, 0, width, height))
        images["panel"] = rendering.make_panel(
            [("Original", network_input), ("Guided Backprop", gbp),
             ("Grad-CAM", cam_on_input), ("Guided Grad-CAM", guided)],
            heading(explanation, class_name))
    return images


def _output_names(stem, kinds):
    """{image name: file name} in writing order."""
    names = {}
    if "png" in kinds:
        names.update((name, "%s_%s.png" % (stem, name)) for name in PNG_MAPS)
    if "panel" in kinds:
        names["panel"] = "%s_panel.png" % stem
    if "npz" in kinds:
        names["npz"] = stem + ".npz"
    return names


def output_paths(output_dir, stem, kinds=OUTPUT_KINDS):
    """The files `save_outputs` writes for `stem` and `kinds`."""
    return [os.path.join(output_dir, name) for name in _output_names(stem, kinds).values()]


def save_outputs(explanation, photo, box, class_name, output_dir, stem, kinds=OUTPUT_KINDS):
    """Writes the files of `output_paths` atomically; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = dict(zip(_output_names(stem, kinds), output_paths(output_dir, stem, kinds)))
    for name, image in render_outputs(explanation, photo, box, class_name, kinds).items():
        rendering.save_png(paths[name], image)
    if "npz" in kinds:
        rendering.save_npz(paths["npz"], **explanation.arrays())
    return list(paths.values())
