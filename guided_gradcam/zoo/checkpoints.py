"""Finding a network's checkpoint and restoring it, with errors that say what does not fit.

Lookup order: an explicit path, then `./checkpoints/<network>/` (or `<checkpoints_dir>/<network>/`
when one is given), then the user's own place, `$GUIDED_GRADCAM_HOME/checkpoints/<network>/`
(default `~/.cache/guided_gradcam`, as Keras and PyTorch hub keep theirs), where `make demo`
registers the converted checkpoint; last, the official TF-Slim archive is downloaded, verified
and unpacked by `checkpoint_download` into the given `checkpoints_dir`, else into that home.
A run from any working directory finds what `make demo` prepared.

    python -m guided_gradcam.zoo.checkpoints --register PREFIX --network NAME
"""
import argparse
import glob
import os
import shutil
import sys
import tempfile

from guided_gradcam.zoo.checkpoint_download import download_checkpoint, find_checkpoint_prefix
from guided_gradcam.errors import CheckpointError

DEFAULT_CHECKPOINTS_DIR = "checkpoints"
HOME_ENV = "GUIDED_GRADCAM_HOME"
# The real MobileNet V1 0.75 weights (a TF.js export) sit beside a checkout of this project, in
# ../shared/weights; a pip install has no checkout, and its users are not pointed there.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_WEIGHTS = os.path.join(CHECKOUT, os.pardir, "shared", "weights")
TFJS_MOBILENET = "mobilenet_v1_0.75_224_tfjs"


def converter_hint(network):
    """How to convert the TF.js weights into `network`'s checkpoint, where they are here; ''
    elsewhere (a pip install) and for other networks."""
    tfjs = os.path.normpath(os.path.join(SHARED_WEIGHTS, TFJS_MOBILENET))
    if network != "mobilenet_v1_075" or not os.path.isdir(tfjs):
        return ""
    shown = min(os.path.relpath(tfjs), tfjs, key=len)
    return ("or convert the TF.js weights: python -m guided_gradcam.zoo.convert_tfjs --model_dir %s "
            "--output checkpoints/mobilenet_v1_075/mobilenet_v1_0.75_224.ckpt" % shown)


def guided_gradcam_home():
    """The user's place for checkpoints: $GUIDED_GRADCAM_HOME, else ~/.cache/guided_gradcam
    ($XDG_CACHE_HOME respected)."""
    home = os.environ.get(HOME_ENV)
    if home:
        return os.path.abspath(os.path.expanduser(home))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "guided_gradcam")


def home_checkpoints_dir():
    return os.path.join(guided_gradcam_home(), "checkpoints")


def locate_checkpoint(spec, checkpoint=None, checkpoints_dir=None, download=True,
                      progress=sys.stderr):
    """The checkpoint prefix to restore for `spec`, downloading the official one if needed."""
    if checkpoint:
        return _prefix_from_path(checkpoint)
    searched = [checkpoints_dir or DEFAULT_CHECKPOINTS_DIR, home_checkpoints_dir()]
    for folder in searched:
        directory = os.path.join(folder, spec.name)
        prefix = find_checkpoint_prefix(directory, spec.checkpoint_name) if os.path.isdir(directory) else None
        if prefix:
            return prefix
    hint = converter_hint(spec.name)
    if not download:
        raise CheckpointError("no checkpoint for %s in %s; with downloads allowed the official "
                              "archive %s is fetched, or unpack it into %s by hand%s" % (
                                  spec.name, " or ".join(os.path.join(f, spec.name)
                                                         for f in searched),
                                  spec.checkpoint_url,
                                  os.path.join(searched[0], spec.name), hint and "; " + hint))
    # Downloads go where the caller keeps checkpoints, else to the user's home for them.
    target = os.path.join(checkpoints_dir or home_checkpoints_dir(), spec.name)
    return download_checkpoint(spec.checkpoint_url, target, spec.checkpoint_name,
                               progress=progress, hint=hint)


def register_checkpoint(prefix, network):
    """Copies the checkpoint at `prefix` into the user's home for `network` (atomically: a
    temporary folder renamed into place) and returns the registered prefix."""
    files = glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*")
    if not any(name.endswith(".index") for name in files):
        raise CheckpointError("no checkpoint at %s (no %s.index)" % (prefix, prefix))
    target = os.path.join(home_checkpoints_dir(), network)
    registered = os.path.join(target, os.path.basename(prefix))
    if os.path.isdir(target) and all(
            os.path.isfile(os.path.join(target, os.path.basename(f)))
            and os.path.getsize(os.path.join(target, os.path.basename(f))) == os.path.getsize(f)
            for f in files):
        return registered  # already there
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".%s." % network, suffix=".tmp", dir=os.path.dirname(target))
    try:
        for name in files:
            shutil.copy2(name, staging)
        if os.path.isdir(target):
            shutil.rmtree(target)  # an older or partial registration
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return registered


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
    import tensorflow.compat.v1 as tf

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
    import tensorflow.compat.v1 as tf

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


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m guided_gradcam.zoo.checkpoints",
        description="Register a checkpoint in $%s/checkpoints/<network>/ (default %s), where "
                    "every run looks for it whatever its working directory." % (
                        HOME_ENV, home_checkpoints_dir()))
    parser.add_argument("--register", required=True, metavar="PREFIX", help="checkpoint prefix")
    parser.add_argument("--network", required=True, help="the network it belongs to")
    args = parser.parse_args(argv)
    try:
        registered = register_checkpoint(args.register, args.network)
    except (CheckpointError, OSError) as error:
        print("error: %s" % (getattr(error, "strerror", None) or error), file=sys.stderr)
        return 1
    print("registered %s for %s" % (registered, args.network))
    return 0


if __name__ == "__main__":
    sys.exit(main())
