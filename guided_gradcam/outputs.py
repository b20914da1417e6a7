"""Rendering one explanation into the CLI's files: numpy post-processing and I/O only."""
import os

from guided_gradcam import rendering

OUTPUT_KINDS = ("png", "npz", "panel")


def heading(explanation, class_name):
    prefix = "counterfactual " if explanation.counterfactual else ""
    return "%s%s (%d)  p=%.3f" % (
        prefix, class_name, explanation.label, explanation.probabilities[explanation.label])


def render_outputs(explanation, photo, box, class_name):
    """{'gradcam', 'gbp', 'guided_gradcam', 'panel'} → uint8 RGB images.

    'gradcam' overlays the map on the whole photo at its own resolution (`box` is where the
    network input came from); the others are at the network input size.
    """
    gbp = rendering.gradient_to_image(explanation.gbp)
    guided = rendering.gradient_to_image(explanation.guided_gradcam)
    height, width = explanation.cam.shape
    cam_on_input = rendering.overlay_on_photo(explanation.image, explanation.cam, (0, 0, width, height))
    panel = rendering.make_panel(
        [("Original", explanation.image), ("Guided Backprop", gbp), ("Grad-CAM", cam_on_input),
         ("Guided Grad-CAM", guided)],
        heading(explanation, class_name))
    return {
        "gradcam": rendering.overlay_on_photo(photo, explanation.cam, box),
        "gbp": gbp,
        "guided_gradcam": guided,
        "panel": panel,
    }


def save_outputs(explanation, photo, box, class_name, output_dir, stem, kinds=OUTPUT_KINDS):
    """Writes `<stem>_{gradcam,gbp,guided_gradcam,panel}.png` and `<stem>.npz` atomically."""
    os.makedirs(output_dir, exist_ok=True)
    written = []
    if "png" in kinds or "panel" in kinds:
        for name, image in render_outputs(explanation, photo, box, class_name).items():
            if ("panel" if name == "panel" else "png") in kinds:
                path = os.path.join(output_dir, "%s_%s.png" % (stem, name))
                rendering.save_png(path, image)
                written.append(path)
    if "npz" in kinds:
        path = os.path.join(output_dir, stem + ".npz")
        rendering.save_npz(path, **explanation.arrays())
        written.append(path)
    return written
