"""Models that cannot be explained, through the CLI: each run fails at once with one line on
stderr starting with `error:`, exit code 1, no traceback, nothing on stdout (no run header, no
result line) and no output file — before any image is processed.

Every run is a subprocess costing a few seconds of TensorFlow start-up, so they all start once,
two at a time, in the module fixture `runs`; the two flag errors fail before TF loads.
"""
import concurrent.futures
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf2
import tensorflow.compat.v1 as tf
from PIL import Image

from conftest import run_cli
from guided_gradcam.core import tf_compat  # noqa: F401  (slim.batch_norm under tf-keras 2.x)
from guided_gradcam.core.tf_eager import eager

import tf_slim as slim  # noqa: E402  (after tf_compat's module aliases)

REPO = Path(__file__).resolve().parents[2]
SIZE = 32


def write_corrupt_files(folder, rng):
    """Random bytes under each model suffix."""
    paths = {}
    for suffix in ("keras", "h5", "pb", "meta"):
        paths[suffix] = folder / ("corrupt." + suffix)
        paths[suffix].write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return paths


def write_tf1_graph(folder):
    """A TF 1 graph whose BatchNorm reads an `is_training` placeholder, saved as .meta."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        images = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="input")
        is_training = tf.placeholder(tf.bool, [], name="is_training")
        net = slim.conv2d(images, 4, [3, 3], normalizer_fn=slim.batch_norm,
                          normalizer_params={"is_training": is_training}, scope="conv")
        logits = slim.fully_connected(tf.reduce_mean(net, axis=[1, 2]), 3, activation_fn=None,
                                      scope="logits")
        tf.nn.softmax(logits, name="probs")
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            tf.train.Saver().save(session, str(folder / "tf1"))
    return folder / "tf1.meta"


def write_saved_model(folder):
    """A SavedModel whose only signature is `classify`."""
    kernel = np.random.default_rng(1).normal(0.0, 0.3, (3, 3, 3, 4)).astype(np.float32)
    with eager():
        class Classifier(tf2.Module):
            def __init__(self):
                super().__init__()
                self.kernel = tf2.Variable(kernel)

            @tf2.function(input_signature=[tf2.TensorSpec([None, SIZE, SIZE, 3], tf2.float32)])
            def classify(self, x):
                features = tf2.nn.relu(tf2.nn.conv2d(x, self.kernel, 1, "SAME"))
                return {"probs": tf2.nn.softmax(tf2.reduce_mean(features, axis=[1, 2]))}
        module = Classifier()
        tf2.saved_model.save(module, str(folder / "saved_model"),
                             signatures={"classify": module.classify})
    return folder / "saved_model"


def write_feature_map_model(folder):
    """A Keras model whose output is a 4-D feature map, not scores."""
    with eager():
        keras.utils.set_random_seed(2)
        inputs = keras.Input((SIZE, SIZE, 3))
        outputs = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
        keras.Model(inputs, outputs).save(folder / "feature_map.keras")
    return folder / "feature_map.keras"


class Runs(dict):
    """name → future; indexing waits for that run and gives its CompletedProcess."""

    def __getitem__(self, name):
        return super().__getitem__(name).result()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("model_errors")
    models = base / "models"
    models.mkdir()
    rng = np.random.default_rng(0)
    image = models / "photo.png"
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)).save(image)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = Runs()

        def start(name, *args):
            args = [*args, "--image", image]
            futures[name] = pool.submit(run_cli, args, base / name)

        # Runs start as soon as their model exists, so they overlap the building of the rest.
        corrupt = write_corrupt_files(models, rng)
        for suffix in ("keras", "h5", "pb", "meta"):
            start("corrupt_" + suffix, "--model", corrupt[suffix])
        start("missing_model", "--model", models / "nowhere.keras")
        meta = write_tf1_graph(models)
        tf1 = ["--model", meta, "--input", "input:0", "--preprocess", "unit"]
        start("unknown_tensor", *tf1, "--output", "prob")
        start("unfed_placeholder", *tf1, "--output", "probs")
        start("unknown_preprocess", "--model", meta, "--preprocess", "zscore")  # before TF loads
        start("missing_signature", "--model", write_saved_model(models), "--signature", "predict")
        feature_map = write_feature_map_model(models)
        start("feature_map_output", "--model", feature_map)
        start("network_and_model", "--model", feature_map, "--network", "mobilenet_v1_075")
        yield futures


@pytest.mark.parametrize("name, expected", [
    ("missing_model", ["nowhere.keras", "does not exist"]),
    ("corrupt_keras", ["cannot load Keras model", "corrupt.keras", "not a .keras archive"]),
    ("corrupt_h5", ["cannot load Keras model", "corrupt.h5"]),
    ("corrupt_pb", ["corrupt.pb", "is not a GraphDef"]),
    ("corrupt_meta", ["corrupt.meta", "is not a TF 1 MetaGraphDef"]),
    ("missing_signature", ["no signature 'predict'", "it has: classify"]),
    ("unknown_tensor", ["--output prob", "no op 'prob'", "close matches: probs"]),
    ("feature_map_output", ["is not a score", "(batch, classes)", "--output"]),
    ("unfed_placeholder", ["placeholders that nothing feeds: is_training", "--feed NAME=VALUE"]),
    ("network_and_model", ["--network or --model, not both"]),
    ("unknown_preprocess", ["unknown preprocessing 'zscore'", "raw, unit, inception"]),
])
def test_unusable_model_is_one_error_line_before_any_image(runs, name, expected):
    run = runs[name]
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert run.stdout == ""  # no run header, no image result
    assert not run.output_dir.exists() or not os.listdir(run.output_dir)

