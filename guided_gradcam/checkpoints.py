"""Finding a network's checkpoint and restoring it, with errors that say what does not fit.

Lookup order: an explicit path, then `<checkpoints_dir>/<network>/`, then the official TF-Slim
archive (downloaded, verified and unpacked by `checkpoint_download`).
"""
import os
import sys

import tensorflow.compat.v1 as tf

from guided_gradcam.checkpoint_download import download_checkpoint, find_checkpoint_prefix
from guided_gradcam.errors import CheckpointError

DEFAULT_CHECKPOINTS_DIR = "checkpoints"
CONVERTER_HINT = (
    "or convert the TF.js weights: "
    "python -m guided_gradcam.convert_tfjs --model_dir ../shared/weights/mobilenet_v1_0.75_224_tfjs "
    "--output checkpoints/mobilenet_v1_075/mobilenet_v1_0.75_224.ckpt")


def locate_checkpoint(spec, checkpoint=None, checkpoints_dir=DEFAULT_CHECKPOINTS_DIR,
                      download=True, progress=sys.stderr):
    """The checkpoint prefix to restore for `spec`, downloading the official one if needed."""
    if checkpoint:
        return _prefix_from_path(checkpoint)
    directory = os.path.join(checkpoints_dir, spec.name)
    prefix = find_checkpoint_prefix(directory, spec.checkpoint_name) if os.path.isdir(directory) else None
    if prefix:
        return prefix
    hint = CONVERTER_HINT if spec.name == "mobilenet_v1_075" else ""
    if not download:
        raise CheckpointError("no checkpoint for %s in %s%s" % (spec.name, directory, hint and "; " + hint))
    return download_checkpoint(spec.checkpoint_url, directory, spec.checkpoint_name,
                               progress=progress, hint=hint)


def _prefix_from_path(path):
    """Accepts a prefix, its .index / .data-* file, or a folder holding one checkpoint."""
    if os.path.isdir(path):
        prefix = find_checkpoint_prefix(path)
        if prefix is None:
            raise CheckpointError("no checkpoint (*.index or *.ckpt) found in folder %s" % path)
        return prefix
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    if ".data-" in os.path.basename(path):
        return path[: path.rindex(".data-")]
    return path


def variable_shapes(prefix):
    """{variable name: shape} stored in the checkpoint at `prefix`."""
    try:
        return tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError("cannot read checkpoint %s: %s" % (prefix, detail)) from None


def count_logits(spec, shapes, prefix):
    """The number of classes of the checkpoint, read from the logits variable's shape."""
    if spec.logits_variable not in shapes:
        raise CheckpointError(
            "checkpoint %s does not fit network %s: it has no variable %s"
            % (prefix, spec.name, spec.logits_variable))
    return int(shapes[spec.logits_variable][-1])


def restore(session, variables, prefix, shapes, network_name):
    """Restores `variables` by name with tf.train.Saver after checking names and shapes."""
    missing = [v.op.name for v in variables if v.op.name not in shapes]
    if missing:
        raise CheckpointError(
            "checkpoint %s does not fit network %s: %d of its variables are missing, e.g. %s"
            % (prefix, network_name, len(missing), ", ".join(missing[:3])))
    wrong = [
        "%s %s != %s" % (v.op.name, list(shapes[v.op.name]), v.shape.as_list())
        for v in variables if list(shapes[v.op.name]) != v.shape.as_list()
    ]
    if wrong:
        raise CheckpointError(
            "checkpoint %s does not fit network %s: %d variables have other shapes, e.g. %s"
            % (prefix, network_name, len(wrong), "; ".join(wrong[:2])))
    # Inside the graph even when the caller left eager mode on (the Python API's default in TF 2):
    # outside it Saver would restore eagerly and fail.
    with session.graph.as_default():
        tf.train.Saver(var_list={v.op.name: v for v in variables}).restore(session, prefix)
