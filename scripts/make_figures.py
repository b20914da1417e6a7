#!/usr/bin/env python3
"""The Grad-CAM paper's Figure 1, its class-discrimination numbers and localisation boxes.

    python scripts/make_figures.py --image ../shared/images/cat_dog.jpg
    python scripts/make_figures.py --image images/cat.jpg --gallery_dir docs/gallery

Per image and class: the probability and the paper's localisation box (Grad-CAM ≥ 15 % of its
maximum, largest connected region) in photo pixels; per pair of classes: the Pearson correlation
of their GBP, Grad-CAM and Guided Grad-CAM maps. Figures: original | Guided Backprop | Grad-CAM
with the box | Guided Grad-CAM | counterfactual Grad-CAM, one row per class. Without
--gallery_dir, `<stem>_<index>_<class>.png` per class and `<stem>_combined.png` go to
--output_dir; with it, only the combined figure, as `<stem>.png`. One graph for all images, one
`explain` run per image for all its classes and one for their counterfactuals.
"""
import itertools
import os
import sys

from absl import app, flags

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.outputs.figures import (
    CORRELATED_MAPS, class_figure, format_table, map_correlations, stack_figures)
from guided_gradcam.images import load_photo
from guided_gradcam.methods import parse_methods
from guided_gradcam.labels import LabelSpace
from guided_gradcam.evaluation.localization import box_to_photo, gradcam_box
from guided_gradcam.zoo.networks import DEFAULT_NETWORK, NETWORKS, get_network
from guided_gradcam.outputs.rendering import save_png
from guided_gradcam.core.tf_startup import import_tensorflow_quietly

# The classes of the paper's Figure 1 ('tiger cat', 'boxer'), plus 'bull mastiff', which the
# MobileNet ranks above 'boxer'; other photos default to their top-1 class.
DEFAULT_LABELS = {"cat_dog": ("tiger cat", "boxer", "bull mastiff")}

flags.DEFINE_multi_string("image", None, "Photo to explain; repeatable.")
flags.DEFINE_string("labels", None, "Comma-separated ImageNet indices or class names, for every "
                    "image. Default: 'tiger cat,boxer,bull mastiff' for cat_dog.*, else top-1.")
flags.DEFINE_string("network", DEFAULT_NETWORK, "One of: %s." % ", ".join(NETWORKS))
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix, file or folder. Default: "
                    "checkpoints/<network>/, else the official archive is downloaded.")
flags.DEFINE_string("checkpoints_dir", None, "A folder of per-network checkpoints, searched "
                    "before $GUIDED_GRADCAM_HOME/checkpoints. Default: ./checkpoints.")
flags.DEFINE_string("methods", "gradcam", "Grad-CAM family members, comma-separated "
                    "(gradcam, gradcampp, xgradcam, layercam, hirescam): one row per method "
                    "and class, all from the same runs.")
flags.DEFINE_string("output_dir", "output/figures", "Where the per-class and combined figures go.")
flags.DEFINE_string("gallery_dir", None, "Gallery mode: write only each image's combined figure, "
                    "as <stem>.png, into this folder (--output_dir is not used).")
FLAGS = flags.FLAGS


def parse_labels(text, label_space):
    """'tiger cat,243' → [282, 243]; None → None. Raises GuidedGradCamError on bad input."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise GuidedGradCamError("--labels has an empty entry: %r" % text)
    labels = [label_space.resolve(part) for part in parts]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise GuidedGradCamError("--labels names %s more than once"
                                 % ", ".join(label_space.describe(i) for i in repeated))
    return labels


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _slug(name):
    return "".join(char if char.isalnum() else "_" for char in name.lower())


def explain_image(explainer, path, photo, labels):
    """Prints the image's table, returns [(explanation, counterfactual, name, input box)]
    (the box of Grad-CAM's map)."""
    network_input, crop = explainer.fit(photo)
    count = len(labels) if labels else 1
    factual = explainer.explain([network_input] * count, labels)
    counterfactual = explainer.explain(
        [network_input] * count, [e.label for e in factual], counterfactual=True)

    top5 = ", ".join("%s (%d) %.3f" % (explainer.labels.name(i), i, p)
                     for i, p in factual[0].top_k(5))
    print("%s: %dx%d, the network sees %s; top-5: %s"
          % (path, photo.shape[1], photo.shape[0], crop, top5))
    rows, results = [], []
    for explanation, counter in zip(factual, counterfactual):
        box = gradcam_box(explanation.cam)
        photo_box = "none (all-zero map)" if box is None else box_to_photo(
            box, crop, explainer.input_size)
        rows.append([explainer.labels.describe(explanation.label),
                     "%.3f" % explanation.probabilities[explanation.label], photo_box])
        results.append((explanation, counter, explainer.labels.name(explanation.label), box))
    table = format_table(["class", "p", "Grad-CAM box in photo px (left, top, right, bottom)"],
                         rows)
    if len(factual) > 1:
        rows = []
        for first, second in itertools.combinations(factual, 2):
            r = map_correlations(first, second)
            rows.append(["%s / %s" % (explainer.labels.describe(first.label),
                                      explainer.labels.describe(second.label))]
                        + ["%+.3f" % r[name] for name, _ in CORRELATED_MAPS])
        table += format_table(["Pearson r between two classes' maps"]
                              + [title for _, title in CORRELATED_MAPS], rows)
    print("\n".join("  " + line for line in table))
    return results


def write_figures(results, stem, output_dir, gallery_dir):
    """The per-class and combined figures (or, for a gallery, only the combined one)."""
    figures, written = [], []
    for explanation, counter, name, box in results:
        methods = tuple(explanation.methods) or ("gradcam",)
        # One row per method of the Grad-CAM family; the original and GBP in the first only.
        rows = [class_figure(explanation, counter, name,
                             box if method == "gradcam" else gradcam_box(explanation.methods[method].cam),
                             method, with_inputs=row == 0)
                for row, method in enumerate(methods)]
        figure = stack_figures(rows, align_right=True)
        figures.append(figure)
        if gallery_dir is None:
            path = os.path.join(output_dir, "%s_%d_%s.png" % (stem, explanation.label, _slug(name)))
            save_png(path, figure)
            written.append(path)
    if gallery_dir is None:
        path = os.path.join(output_dir, stem + "_combined.png")
    else:
        path = os.path.join(gallery_dir, stem + ".png")
    save_png(path, stack_figures(figures))
    return written + [path]


def main(argv):
    if len(argv) > 1:
        raise GuidedGradCamError("unexpected arguments: %s (images go after --image)"
                                 % " ".join(argv[1:]))
    if not FLAGS.image:
        raise GuidedGradCamError("no input: pass --image PATH (repeatable)")
    get_network(FLAGS.network)  # bad flags fail fast, before TensorFlow loads
    label_space = LabelSpace(1000)
    labels = parse_labels(FLAGS.labels, label_space)
    methods = parse_methods(FLAGS.methods)
    stems = [_stem(path) for path in FLAGS.image]
    for stem in stems:
        if stems.count(stem) > 1:
            raise GuidedGradCamError("two images are named %r; their figures would overwrite "
                                     "each other" % stem)
    photos = [load_photo(path) for path in FLAGS.image]
    output_dir = FLAGS.gallery_dir or FLAGS.output_dir
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise GuidedGradCamError("cannot create %s: %s" % (output_dir, error)) from error

    import_tensorflow_quietly()
    from guided_gradcam.explainer import GuidedGradCam  # loads TensorFlow

    with GuidedGradCam(FLAGS.network, FLAGS.checkpoint, checkpoints_dir=FLAGS.checkpoints_dir,
                       methods=methods) as explainer:
        for path, stem, photo in zip(FLAGS.image, stems, photos):
            image_labels = labels
            if image_labels is None and stem in DEFAULT_LABELS:
                image_labels = [label_space.resolve(name) for name in DEFAULT_LABELS[stem]]
            results = explain_image(explainer, path, photo, image_labels)
            try:
                written = write_figures(results, stem, FLAGS.output_dir, FLAGS.gallery_dir)
            except OSError as error:
                raise GuidedGradCamError("cannot write the figures of %s: %s"
                                         % (path, error)) from error
            print("  wrote %s" % ", ".join(written))
    return 0


def run(argv):
    try:
        return main(argv)
    except GuidedGradCamError as error:
        print("error: %s" % error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    app.run(run)
