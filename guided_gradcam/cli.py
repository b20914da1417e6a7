"""`inference.py`: explain images with Grad-CAM, Guided Backprop and Guided Grad-CAM.

A thin layer over the Python API: parse flags, stream images through `GuidedGradCam.explain`
in batches, print each image's top-5 and write its files. Bad input costs only itself: it is
reported in one line, skipped, and reflected in the exit code.
"""
import os
import sys

from absl import app, flags

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.tf_startup import import_tensorflow_quietly
from guided_gradcam.networks import DEFAULT_NETWORK, NETWORKS

flags.DEFINE_multi_string("image", None, "Image file, folder or glob; repeatable.")
flags.DEFINE_string("label", None, "Class to explain: ImageNet index (0-999) or class name. "
                    "Default: each image's top-1 class.")
flags.DEFINE_string("network", DEFAULT_NETWORK, "One of: %s." % ", ".join(NETWORKS))
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix, file or folder. Default: "
                    "checkpoints/<network>/, else the official archive is downloaded.")
flags.DEFINE_string("checkpoints_dir", "checkpoints", "Where per-network checkpoints live.")
flags.DEFINE_string("layer", None, "Grad-CAM layer (end point). Default: the network's last "
                    "conv layer; an unknown name lists the valid ones.")
flags.DEFINE_string("output_dir", "output", "Where the PNGs and .npz files are written.")
flags.DEFINE_string("input_size", None, "Network input size as HxW or N (square). Default: the "
                    "network's own (224). Not for vgg_16, whose fc layers need 224x224.")
flags.DEFINE_integer("batch_size", 16, "Images per session run.", lower_bound=1)
flags.DEFINE_boolean("counterfactual", False, "Explain -dy/dA: what speaks against the class.")
FLAGS = flags.FLAGS


def _error(message):
    print("error: %s" % message, file=sys.stderr)


def _unique_stems(paths):
    """Output stems per path; a taken stem (same name in two folders) gets a free _N suffix."""
    used, stems = set(), []
    for path in paths:
        base = stem = os.path.splitext(os.path.basename(path))[0]
        number = 1
        while stem in used:
            number += 1
            stem = "%s_%d" % (base, number)
        used.add(stem)
        stems.append(stem)
    return stems


def parse_input_size(text):
    """'320x240' → (320, 240) as (height, width); '320' → (320, 320)."""
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) <= 0:
        raise GuidedGradCamError("--input_size must be HxW or N, e.g. 320x240; got %r" % text)
    return size


def _batches(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def explain_files(explainer, paths, label, output_dir, batch_size, counterfactual):
    """Explains `paths` batch by batch; returns the number of files that failed."""
    from guided_gradcam.images import load_photo
    from guided_gradcam.outputs import save_outputs

    failures = 0
    for batch in _batches(list(zip(paths, _unique_stems(paths))), batch_size):
        loaded = []
        for path, stem in batch:
            try:
                photo = load_photo(path)
            except GuidedGradCamError as error:
                _error(error)
                failures += 1
                continue
            network_input, box = explainer.fit(photo)
            loaded.append((path, stem, photo, box, network_input))
        if not loaded:
            continue
        explanations = explainer.explain(
            [item[4] for item in loaded], label, counterfactual=counterfactual)
        for (path, stem, photo, box, _), explanation in zip(loaded, explanations):
            top5 = ", ".join("%s (%d) %.3f" % (explainer.labels.name(i), i, p)
                             for i, p in explanation.top_k(5))
            print("%s: top-5: %s" % (path, top5))
            name = explainer.labels.name(explanation.label)
            try:
                written = save_outputs(explanation, photo, box, name, output_dir, stem)
            except OSError as error:
                _error("cannot write outputs for %s: %s" % (path, error))
                failures += 1
                continue
            print("  explained %s (%d); wrote %s" % (name, explanation.label, ", ".join(written)))
    return failures


def main(argv):
    if len(argv) > 1:
        _error("unexpected arguments: %s (images go after --image)" % " ".join(argv[1:]))
        return 2
    if not FLAGS.image:
        _error("no input: pass --image PATH (a file, a folder or a glob; repeatable)")
        return 2
    try:
        from guided_gradcam.images import collect_image_paths
        from guided_gradcam.labels import LabelSpace
        from guided_gradcam.networks import get_network

        input_size = parse_input_size(FLAGS.input_size)
        get_network(FLAGS.network).check_input_size(input_size)  # fail fast, before TF loads
        label = LabelSpace(1000).resolve(FLAGS.label) if FLAGS.label is not None else None
        paths, missing = collect_image_paths(FLAGS.image)
        for message in missing:
            _error(message)
        if not paths:
            return 1
        import_tensorflow_quietly()
        from guided_gradcam.explainer import GuidedGradCam

        with GuidedGradCam(FLAGS.network, FLAGS.checkpoint, FLAGS.layer,
                           checkpoints_dir=FLAGS.checkpoints_dir,
                           input_size=input_size) as explainer:
            failures = explain_files(explainer, paths, label, FLAGS.output_dir,
                                     FLAGS.batch_size, FLAGS.counterfactual)
    except GuidedGradCamError as error:
        _error(error)
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    failures += len(missing)
    if failures:
        _error("%d of %d inputs failed" % (failures, len(paths) + len(missing)))
    return 1 if failures else 0


def run():
    app.run(main)
