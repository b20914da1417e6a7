"""Convert Keras MobileNet V1 weights exported as a TensorFlow.js layers model to a TF-Slim checkpoint.

The TF.js export is `model.json` (whose `weightsManifest` lists weight groups: shard files and, in
order, the float32 weights they hold back to back) plus the raw little-endian shard files. Keras
and TF-Slim both store convolution kernels as HWIO and depthwise kernels as (3, 3, C, 1), so only
the names change; the arrays are written unchanged.

    python -m guided_gradcam.zoo.convert_tfjs --model_dir DIR --output PREFIX [--sha256 FILE]
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np

from guided_gradcam.core.tf_startup import import_tensorflow_quietly
from guided_gradcam.errors import CheckpointError, GuidedGradCamError

_SLIM_SCOPE = "MobilenetV1"
_BATCH_NORM_PARAMS = ("gamma", "beta", "moving_mean", "moving_variance")
_BATCH_NORM_LAYERS = ("conv1", "conv_dw", "conv_pw")
# Keras parameter name -> slim variable name, per kind of layer.
_CONV_PARAMS = {
    "conv1": {"kernel": "weights"},
    "conv_dw": {"depthwise_kernel": "depthwise_weights"},
    "conv_pw": {"kernel": "weights"},
    "conv_preds": {"kernel": "weights", "bias": "biases"},
}


def _load_manifest(model_dir):
    path = os.path.join(model_dir, "model.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)["weightsManifest"]
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist; --model_dir must be a TF.js layers model folder") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is not a TF.js layers model.json with a weightsManifest ({e})") from None
    if not isinstance(manifest, list):
        raise CheckpointError(f"{path}: weightsManifest is not a list of weight groups")
    return manifest


def file_sha256(path):
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_sha256_list(sha256_file):
    """Parse sha256sum output ("HASH  NAME", or "HASH *NAME" for binary mode) into {NAME: HASH}."""
    expected = {}
    try:
        with open(sha256_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CheckpointError(f"cannot read sha256 list {sha256_file} ({e.strerror or e})") from None
    for line in lines:
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            continue  # blank lines or comments
        name = parts[1].lstrip("*")
        expected[os.path.normpath(name)] = parts[0].lower()
    return expected


def verify_sha256(model_dir, sha256_file):
    """Check model.json and every shard in its manifest against a sha256sum-format list."""
    expected = _read_sha256_list(sha256_file)
    names = ["model.json"] + [p for group in _load_manifest(model_dir) for p in group.get("paths", [])]
    for name in names:
        path = os.path.join(model_dir, name)
        want = expected.get(os.path.normpath(name))
        if want is None:
            raise CheckpointError(f"{sha256_file} has no sha256 entry for {name}; cannot verify {path}")
        try:
            got = file_sha256(path)
        except OSError as e:
            raise CheckpointError(f"cannot read {path} ({e.strerror or e})") from None
        if got != want:
            raise CheckpointError(
                f"{path} is corrupted: its sha256 is {got}, {sha256_file} expects {want}")


def read_tfjs_weights(model_dir):
    """Return {Keras weight name: float32 array} from a TF.js layers model folder."""
    weights = {}
    for group in _load_manifest(model_dir):
        paths = group.get("paths", [])
        try:
            data = b"".join(_read_bytes(os.path.join(model_dir, p)) for p in paths)
        except OSError as e:
            raise CheckpointError(f"cannot read TF.js shard {e.filename} ({e.strerror or e})") from None
        shard_names = ", ".join(paths)
        offset = 0
        for spec in group.get("weights", []):
            name, shape, dtype = spec["name"], tuple(spec["shape"]), spec.get("dtype", "float32")
            if dtype != "float32":
                raise CheckpointError(f"{name} in {shard_names} has dtype {dtype}; only float32 is supported")
            size = 4 * int(np.prod(shape, dtype=np.int64))
            if offset + size > len(data):
                raise CheckpointError(
                    f"{shard_names} in {model_dir} is too short for {name} {list(shape)} "
                    f"({len(data)} bytes, need {offset + size})")
            if name in weights:
                raise CheckpointError(f"{model_dir}/model.json lists weight {name} twice")
            # Copy so the arrays do not keep the whole group's buffer alive (and are writable).
            weights[name] = np.frombuffer(data, dtype="<f4", count=size // 4, offset=offset).reshape(shape).copy()
            offset += size
        if offset != len(data):
            raise CheckpointError(
                f"{shard_names} in {model_dir} holds {len(data)} bytes but the manifest describes {offset}")
    return weights


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _slim_layer(keras_layer):
    """Return (slim scope, kind) for a Keras MobileNet layer name, or (None, None)."""
    if keras_layer == "conv1":
        return "Conv2d_0", "conv1"
    if keras_layer == "conv_preds":
        return "Logits/Conv2d_1c_1x1", "conv_preds"
    match = re.fullmatch(r"conv_(dw|pw)_([1-9]\d*)", keras_layer)
    if match and int(match.group(2)) <= 13:
        kind, index = match.group(1), int(match.group(2))
        return f"Conv2d_{index}_{'depthwise' if kind == 'dw' else 'pointwise'}", f"conv_{kind}"
    return None, None


def keras_to_slim_name(keras_name):
    """Map a Keras MobileNet V1 weight name to the official TF-Slim MobilenetV1 variable name."""
    layer, _, param = keras_name.partition("/")
    batch_norm = layer.endswith("_bn")
    scope, kind = _slim_layer(layer[:-3] if batch_norm else layer)
    if batch_norm and kind in _BATCH_NORM_LAYERS and param in _BATCH_NORM_PARAMS:
        return f"{_SLIM_SCOPE}/{scope}/BatchNorm/{param}"
    if not batch_norm and param in _CONV_PARAMS.get(kind, {}):
        return f"{_SLIM_SCOPE}/{scope}/{_CONV_PARAMS[kind][param]}"
    raise CheckpointError(f"unknown Keras MobileNet V1 weight {keras_name!r}; no TF-Slim variable matches it")


def _write_checkpoint(slim_weights, output_prefix):
    import tensorflow.compat.v1 as tf

    output_dir = os.path.dirname(os.path.abspath(output_prefix))
    base = os.path.basename(output_prefix)
    os.makedirs(output_dir, exist_ok=True)
    # Save into a temporary folder beside the output and rename the files into place afterwards,
    # so an interrupted conversion never leaves a half-written checkpoint under the real name.
    temp_dir = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=output_dir)
    try:
        with tf.Graph().as_default() as graph:
            variables = {name: tf.Variable(initial_value=value, name=name, dtype=tf.float32)
                         for name, value in slim_weights.items()}
            # A dict var_list makes the checkpoint keys exactly the slim names (no ':0', no uniquifying).
            saver = tf.train.Saver(var_list=variables)
            with tf.Session(graph=graph) as session:
                session.run(tf.global_variables_initializer())
                saver.save(session, os.path.join(temp_dir, base), write_meta_graph=False, write_state=False)
        written = sorted(os.listdir(temp_dir))
        # Data shards first, index last: a reader that sees the .index also finds its data.
        for name in sorted(written, key=lambda n: n.endswith(".index")):
            os.replace(os.path.join(temp_dir, name), os.path.join(output_dir, name))
        return written
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def convert(model_dir, output_prefix, sha256_file=None):
    """Convert the TF.js model in model_dir to a TF-Slim checkpoint; returns the slim names written."""
    if sha256_file is not None:
        verify_sha256(model_dir, sha256_file)
    slim_weights = {}
    for keras_name, value in read_tfjs_weights(model_dir).items():
        slim_name = keras_to_slim_name(keras_name)
        if slim_name in slim_weights:
            raise CheckpointError(f"two Keras weights map to the TF-Slim variable {slim_name}")
        slim_weights[slim_name] = value
    try:
        _write_checkpoint(slim_weights, output_prefix)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {output_prefix} ({e.strerror or e})") from None
    return list(slim_weights)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m guided_gradcam.zoo.convert_tfjs",
        description="Convert Keras MobileNet V1 TF.js layers-model weights to a TF-Slim checkpoint.")
    parser.add_argument("--model_dir", required=True, help="folder holding model.json and its weight shards")
    parser.add_argument("--output", required=True,
                        help="checkpoint prefix to write, e.g. checkpoints/mobilenet_v1_075/mobilenet_v1_0.75_224.ckpt")
    parser.add_argument("--sha256", default=None, help="sha256sum-format list to verify the shards against")
    args = parser.parse_args(argv)
    import_tensorflow_quietly()
    try:
        names = convert(args.model_dir, args.output, sha256_file=args.sha256)
    except GuidedGradCamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    verified = " (shards verified against sha256 list)" if args.sha256 else ""
    print(f"wrote {len(names)} variables to checkpoint {args.output}{verified}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
