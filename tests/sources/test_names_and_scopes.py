"""Models named and built as users name and build them: a SavedModel folder named like an
identifier (`mnet_savedmodel`, as `model.export` writes it), a `tf.Module` whose ops sit in no
name scope (`StatefulPartitionedCall/Relu` after freezing), a TF 1 graph built without scopes.
Maps are checked against Grad-CAM computed here with numpy from eager activations, within 1e-4
of the map's peak (measured: 2e-6 in both of .ci/run's regimes, a 50x margin)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf2
import tensorflow.compat.v1 as tf

from guided_gradcam import GuidedGradCam
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.sources import open_source
from guided_gradcam.core.tf_eager import eager

REPO = Path(__file__).resolve().parents[2]
SIZE, CHANNELS, CLASSES = 16, 6, 4
RNG = np.random.default_rng(19)
KERNEL = RNG.normal(0.0, 0.05, (3, 3, 3, CHANNELS)).astype(np.float32)
KERNEL_2 = RNG.normal(0.0, 0.3, (3, 3, CHANNELS, CHANNELS)).astype(np.float32)
DENSE = RNG.normal(0.0, 1.0, (CHANNELS, CLASSES)).astype(np.float32)
IMAGES = RNG.integers(0, 256, (3, SIZE, SIZE, 3)).astype(np.uint8)
LABELS = [0, 2, 3]


def reference_cams(activations, labels):
    """Grad-CAM by hand for y = mean_ij(A) @ DENSE: ∂y^c/∂A^k_ij = DENSE[k, c] / (h w)."""
    alpha = DENSE[:, labels].T / (activations.shape[1] * activations.shape[2])  # (B, K)
    return np.maximum(np.einsum("bijk,bk->bij", activations, alpha), 0.0)


def forward_activations(x, layers=1):
    with eager():
        a = tf2.nn.relu(tf2.nn.conv2d(x, KERNEL, 1, "SAME"))
        if layers == 2:
            a = tf2.nn.relu(tf2.nn.conv2d(a, KERNEL_2, 1, "SAME"))
        return a.numpy()


class Module(tf2.Module):
    """Hand-written TF 2 code: every op at the root of its function, no Keras scopes."""

    def __init__(self):
        super().__init__()
        self.kernel = tf2.Variable(KERNEL)
        self.dense = tf2.Variable(DENSE)

    @tf2.function(input_signature=[tf2.TensorSpec([None, SIZE, SIZE, 3], tf2.float32)])
    def __call__(self, x):
        features = tf2.nn.relu(tf2.nn.conv2d(x, self.kernel, 1, "SAME"))
        return tf2.matmul(tf2.reduce_mean(features, axis=[1, 2]), self.dense)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding the SavedModel `mnet_savedmodel`, and one named like a network."""
    folder = tmp_path_factory.mktemp("models")
    with eager():
        module = Module()
        tf2.saved_model.save(module, str(folder / "mnet_savedmodel"),
                             signatures=module.__call__)
        tf2.saved_model.save(module, str(folder / "vgg_16"), signatures=module.__call__)
    from PIL import Image
    Image.fromarray(IMAGES[0]).save(folder / "image.png")
    return folder


def run_in(folder, *args):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, str(REPO / "inference.py"), *args], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_saved_model_folder_named_like_an_identifier_is_that_folder(workdir):
    run = run_in(workdir, "--model", "mnet_savedmodel", "--image", "image.png", "--label", "2",
                 "--output_dir", "out")
    assert run.returncode == 0, run.stderr
    assert "unknown network" not in run.stderr
    assert run.stdout.startswith("model: mnet_savedmodel "), run.stdout
    assert "Grad-CAM layer StatefulPartitionedCall/Relu;" in run.stdout, run.stdout
    saved = np.load(workdir / "out" / "image.npz")
    expected = reference_cams(forward_activations(IMAGES[:1].astype(np.float32)), [2])[0]
    np.testing.assert_allclose(saved["cam_lowres"], expected, rtol=1e-4,
                               atol=1e-4 * expected.max())


def test_a_name_that_is_a_network_and_a_path_says_which_was_used(workdir):
    run = run_in(workdir, "--model", "vgg_16", "--image", "image.png", "--output_dir", "out2")
    assert run.returncode == 0, run.stderr
    assert "note: vgg_16 is also a built-in network's name; --model uses the path" in run.stderr
    assert run.stdout.startswith("model: vgg_16 (classification, 4 scores)"), run.stdout
    # The API's plain string is the network: it says so, and looks for vgg_16's checkpoint.
    cwd, notes = os.getcwd(), _Lines()
    os.chdir(workdir)
    try:
        with pytest.raises(GuidedGradCamError) as raised:
            open_source("vgg_16", download=False, progress=notes)
    finally:
        os.chdir(cwd)
    assert "vgg_16" in str(raised.value) and "checkpoint" in str(raised.value)
    assert notes.text.startswith("note: 'vgg_16' is a built-in network and also a path here; "
                                 "using the network"), notes.text
    # A Path is always a path.
    source = open_source(workdir / "vgg_16", download=False, progress=notes)
    assert type(source).__name__ == "SavedModelSource"


class _Lines:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_unscoped_tf_module_layers_by_op_name(workdir):
    activations = forward_activations(IMAGES.astype(np.float32))
    expected = reference_cams(activations, LABELS)
    with GuidedGradCam(workdir / "mnet_savedmodel") as explainer:
        assert explainer.layer == "StatefulPartitionedCall/Relu"
        assert explainer.layer_names == ("StatefulPartitionedCall/Conv2D",
                                         "StatefulPartitionedCall/Relu")
        default = explainer.explain(IMAGES, LABELS)
    for layer in ("Relu", "StatefulPartitionedCall/Relu:0"):
        with GuidedGradCam(workdir / "mnet_savedmodel", layer=layer) as explainer:
            named = explainer.explain(IMAGES, LABELS)
        for a, b in zip(default, named):
            np.testing.assert_array_equal(a.cam_lowres, b.cam_lowres)
    for explanation, cam in zip(default, expected):
        assert cam.max() > 0
        np.testing.assert_allclose(explanation.cam_lowres, cam, rtol=1e-4, atol=1e-4 * cam.max())
    # The pre-ReLU conv by its op name: Grad-CAM of the conv output, by hand.
    with GuidedGradCam(workdir / "mnet_savedmodel", layer="Conv2D") as explainer:
        conv = explainer.explain(IMAGES, LABELS)
    with eager():
        pre = tf2.nn.conv2d(IMAGES.astype(np.float32), KERNEL, 1, "SAME").numpy()
    with eager(), tf2.GradientTape() as tape:
        pre_t = tf2.constant(pre)
        tape.watch(pre_t)
        scores = tf2.matmul(tf2.reduce_mean(tf2.nn.relu(pre_t), axis=[1, 2]), DENSE)
        objective = tf2.reduce_sum(tf2.gather(scores, LABELS, axis=1, batch_dims=1))
        alpha = tape.gradient(objective, pre_t).numpy().mean(axis=(1, 2))
    for explanation, a, p in zip(conv, alpha, pre):
        cam = np.maximum((p * a).sum(-1), 0)
        np.testing.assert_allclose(explanation.cam_lowres, cam, rtol=1e-4, atol=1e-4 * cam.max())


def _unscoped_tf1_graph_def():
    """conv → relu → conv → relu → mean → matmul, built by hand with no scope at all."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="input")
        a = tf.nn.relu(tf.nn.conv2d(x, tf.constant(KERNEL), 1, "SAME"))
        a = tf.nn.relu(tf.nn.conv2d(a, tf.constant(KERNEL_2), 1, "SAME"))
        tf.matmul(tf.reduce_mean(a, axis=[1, 2]), tf.constant(DENSE), name="logits")
    return graph.as_graph_def()


def test_unscoped_tf1_graph_default_is_the_last_spatial_op(tmp_path):
    path = tmp_path / "unscoped.pb"
    path.write_bytes(_unscoped_tf1_graph_def().SerializeToString())
    with GuidedGradCam(str(path)) as explainer:
        assert explainer.layer == "Relu_1"
        assert explainer.layer_names == ("Conv2D", "Relu", "Conv2D_1", "Relu_1")
        explanations = explainer.explain(IMAGES, LABELS)
    expected = reference_cams(forward_activations(IMAGES.astype(np.float32), layers=2), LABELS)
    for explanation, cam in zip(explanations, expected):
        assert cam.max() > 0
        np.testing.assert_allclose(explanation.cam_lowres, cam, rtol=1e-4, atol=1e-4 * cam.max())
    # --layer names the first block: honoured, no default needed.
    with GuidedGradCam(str(path), layer="Relu") as explainer:
        assert explainer.layer == "Relu"
        first = explainer.explain(IMAGES, LABELS)
    assert not np.allclose(first[0].cam_lowres, explanations[0].cam_lowres)
