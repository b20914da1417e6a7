"""Graph formats explained through the toolkit, against references computed here without it.

- A TF 1 tf-slim graph (BatchNorm fed `is_training`, a ReLU fully connected layer between the
  Grad-CAM layer and the logits) saved as `.meta` + checkpoint, and frozen to a `.pb`.
  Grad-CAM's reference is the same network rebuilt in a plain graph and restored from the
  checkpoint; GBP's is the network rebuilt under this test's own guided ReLU/ReLU6 gradients.
- A nested Keras 3 model exported as a SavedModel and saved as `.keras`, and a Keras model with
  PReLU and hard_silu: references from GradientTape over a forward pass written here with the
  layers' weights, plain or through this test's own `tf.custom_gradient` guided ReLUs.
- A GraphDef whose ReLU sits in a function body is refused.

Each comparison also checks that the data tells the right answer from the wrong one.
"""
import concurrent.futures
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf2
import tensorflow.compat.v1 as tf
from PIL import Image

from conftest import run_cli
from guided_gradcam import GuidedGradCam
from guided_gradcam.core import tf_compat  # noqa: F401  (tf_compat: slim.batch_norm)
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.core.tf_eager import eager
from helpers import guided_relu, guided_relu6

import tf_slim as slim  # noqa: E402  (after tf_compat's module aliases)

REPO = Path(__file__).resolve().parents[2]
SIZE = 32
CLASSES = 5
LABELS = [1, 3, 4]  # one explained class per image of the batch
CLI_IMAGE = 1  # the batch image the CLI runs explain (with LABELS[CLI_IMAGE])


def assert_matches(ours, reference, what):
    """Equal up to float32 rounding, relative to the reference's peak: measured at most 5e-6
    of the peak (both of .ci/run's regimes), so 1e-4 of it keeps a 20x margin."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, (what, ours.shape, reference.shape)
    peak = np.abs(reference).max()
    assert peak > 0, what
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * peak, err_msg=what)
    print("%s: max |difference| / peak = %.2e" % (what, np.abs(ours - reference).max() / peak))


def relative_difference(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def make_images(seed, count=len(LABELS)):
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3)).astype(np.uint8)


def cam_from(activations, grads):
    """Grad-CAM of the paper in numpy: ReLU(Σ_k α_k A^k), α_k the spatial mean of ∂y/∂A^k."""
    alpha = grads.mean(axis=(1, 2), keepdims=True)
    return np.maximum((alpha * activations).sum(axis=3), 0.0)


def write_png(path, image):
    Image.fromarray(image).save(path)
    return path


# --- CLI runs, as tests/cli/test_explain.py makes them ---------------------------------------------------

class Runs(dict):
    """name → future; indexing waits for that run and gives its CompletedProcess, so the runs
    go on while the tests compute their references in this process."""

    def __getitem__(self, name):
        return super().__getitem__(name).result()


def npz_of(run, stem="image"):
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    with np.load(run.output_dir / (stem + ".npz")) as arrays:
        return dict(arrays)


# --- the TF 1 tf-slim graph ----------------------------------------------------------------------

TEST_GUIDED_RELU = "TestGraphModelsGuidedRelu"
TEST_GUIDED_RELU6 = "TestGraphModelsGuidedRelu6"


def _guided_relu_grad(op, grad):
    # Gates on the forward input (the toolkit gates on the output): the same set, another way.
    x = op.inputs[0]
    return grad * tf.cast(grad > 0, grad.dtype) * tf.cast(x > 0, grad.dtype)


def _guided_relu6_grad(op, grad):
    x = op.inputs[0]
    return grad * tf.cast(grad > 0, grad.dtype) * tf.cast((x > 0) & (x < 6), grad.dtype)


for _name, _function in ((TEST_GUIDED_RELU, _guided_relu_grad),
                         (TEST_GUIDED_RELU6, _guided_relu6_grad)):
    try:
        tf.RegisterGradient(_name)(_function)
    except KeyError:  # already registered: the module was imported twice
        pass


def slim_network(images, is_training):
    """(A = the last conv's ReLU6 output, logits, probs)."""
    net = slim.conv2d(images, 8, [3, 3], normalizer_fn=slim.batch_norm,
                      normalizer_params={"is_training": is_training}, activation_fn=tf.nn.relu,
                      scope="conv1")
    features = slim.conv2d(net, 12, [3, 3], stride=2, activation_fn=tf.nn.relu6, scope="conv2")
    hidden = slim.fully_connected(slim.flatten(features), 16, activation_fn=tf.nn.relu,
                                  scope="fc")
    logits = slim.fully_connected(hidden, CLASSES, activation_fn=None, scope="logits")
    return features, logits, tf.nn.softmax(logits, name="probs")


def slim_graph(override=None):
    """A new graph holding the network; `override`: gradient_override_map while building."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="input")
        is_training = tf.placeholder(tf.bool, [], name="is_training")
        if override:
            with graph.gradient_override_map(override):
                features, logits, probs = slim_network(images, is_training)
        else:
            features, logits, probs = slim_network(images, is_training)
    return graph, images, is_training, features, logits, probs


def explained_logit(logits, labels):
    """Σ_b logits[b, labels[b]]: its gradient w.r.t. image b is ∂y_b^{c_b}/∂x_b."""
    return tf.reduce_sum(tf.gather(logits, labels, axis=1, batch_dims=1))


@pytest.fixture(scope="module")
def slim_model(tmp_path_factory):
    """The slim graph saved with random weights and non-trivial BatchNorm moving statistics as
    `model.meta` + checkpoint, and frozen (is_training left a placeholder) to `frozen.pb`."""
    folder = tmp_path_factory.mktemp("slim")
    rng = np.random.default_rng(0)
    graph, _, _, _, _, _ = slim_graph()
    with graph.as_default(), tf.Session() as session:
        session.run(tf.global_variables_initializer())
        for variable in tf.global_variables():
            shape = variable.shape.as_list()
            if "moving_mean" in variable.name:
                variable.load(rng.normal(0.0, 0.5, shape).astype(np.float32), session)
            elif "moving_variance" in variable.name:
                variable.load(rng.uniform(0.2, 3.0, shape).astype(np.float32), session)
            elif "beta" in variable.name or "biases" in variable.name:
                variable.load(rng.normal(0.0, 0.3, shape).astype(np.float32), session)
            else:  # weights; conv2's large enough that some ReLU6 units saturate at 6
                gain = 6.0 if variable.name.startswith("conv2/") else 1.5
                variable.load(rng.normal(0.0, gain / np.sqrt(np.prod(shape[:-1])), shape)
                              .astype(np.float32), session)
        prefix = str(folder / "model")
        tf.train.Saver().save(session, prefix)
        frozen = tf.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), ["probs"])
    with open(folder / "frozen.pb", "wb") as f:
        f.write(frozen.SerializeToString())
    return dict(meta=prefix + ".meta", checkpoint=prefix, pb=str(folder / "frozen.pb"))


@pytest.fixture(scope="module")
def slim_images():
    return make_images(seed=1)


def _restored_session(graph, checkpoint):
    session = tf.Session(graph=graph)
    with graph.as_default():
        tf.train.Saver().restore(session, checkpoint)
    return session


@pytest.fixture(scope="module")
def slim_reference(slim_model, slim_images):
    """Maps of the slim network computed in two graphs of this test's own, neither the
    toolkit's: plain (Grad-CAM, wrong unguided GBP) and guided (GBP, wrong guided ∂y/∂A)."""
    x = slim_images.astype(np.float32) / 255.0  # preprocess="unit"
    labels = np.array(LABELS, np.int32)
    graph, images, is_training, features, logits, _ = slim_graph()
    with graph.as_default():
        y = explained_logit(logits, labels)
        grads, input_grads = tf.gradients(y, [features, images])
    with _restored_session(graph, slim_model["checkpoint"]) as session:
        a, dy_da, unguided_gbp, scores = session.run(
            [features, grads, input_grads, logits], {images: x, is_training: False})
        training_scores = session.run(logits, {images: x, is_training: True})

    guided_map = {"Relu": TEST_GUIDED_RELU, "Relu6": TEST_GUIDED_RELU6}
    graph, images, is_training, features, logits, _ = slim_graph(guided_map)
    with graph.as_default():
        y = explained_logit(logits, labels)
        guided_grads, gbp = tf.gradients(y, [features, images])
    with _restored_session(graph, slim_model["checkpoint"]) as session:
        guided_dy_da, gbp = session.run([guided_grads, gbp], {images: x, is_training: False})
    return dict(cam=cam_from(a, dy_da), gbp=gbp, logits=scores, activations=a,
                wrong_gbp=unguided_gbp, wrong_cam=cam_from(a, guided_dy_da),
                training_logits=training_scores)


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory):
    """A nested Keras 3 model (its base holds the Grad-CAM layer `conv_b`) exported as a
    SavedModel and saved as `.keras`."""
    folder = tmp_path_factory.mktemp("keras")
    layers = keras.layers
    with eager():
        keras.utils.set_random_seed(2)
        base = keras.Sequential([
            keras.Input((SIZE, SIZE, 3)),
            layers.Conv2D(6, 3, padding="same", activation="relu6", name="conv_a"),
            layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_b"),
        ], name="base")
        inputs = keras.Input((SIZE, SIZE, 3))
        hidden = layers.Dense(12, activation="relu", name="hidden")(
            layers.Flatten(name="flatten")(base(inputs)))
        outputs = layers.Dense(CLASSES, activation="softmax", name="scores")(hidden)
        model = keras.Model(inputs, outputs, name="nested")
        rng = np.random.default_rng(3)
        for layer in (base.get_layer("conv_a"), base.get_layer("conv_b")):
            layer.bias.assign(rng.normal(0.0, 0.3, layer.bias.shape))  # Keras starts at 0
        model.export(str(folder / "saved_model"), verbose=False)
        model.save(folder / "nested.keras")
    return dict(model=model, saved_model=str(folder / "saved_model"),
                keras_file=str(folder / "nested.keras"))


PLAIN = dict(relu=tf2.nn.relu, relu6=tf2.nn.relu6)
GUIDED = dict(relu=guided_relu, relu6=guided_relu6)


def conv(layer, x, activation=None):
    y = tf2.nn.conv2d(x, layer.kernel, layer.strides, layer.padding.upper()) + layer.bias
    return activation(y) if activation else y


def dense(layer, x, activation=None):
    y = tf2.matmul(x, layer.kernel) + layer.bias
    return activation(y) if activation else y


def eager_maps(forward, images, labels):
    """(cam, gbp, logits, wrong cam from a guided ∂y/∂A) of `forward(x, relus, tape)` →
    (A, logits before softmax), with GradientTape in eager mode."""
    with eager():
        x = tf2.constant(images.astype(np.float32) / 255.0)
        results = {}
        for kind, relus in (("plain", PLAIN), ("guided", GUIDED)):
            with tf2.GradientTape(persistent=True) as tape:
                tape.watch(x)
                a, logits = forward(x, relus, tape)
                y = tf2.reduce_sum(tf2.gather(logits, labels, axis=1, batch_dims=1))
            results[kind] = (a.numpy(), tape.gradient(y, a).numpy(), tape.gradient(y, x).numpy(),
                             logits.numpy())
    a, dy_da, unguided_gbp, logits = results["plain"]
    _, guided_dy_da, gbp, _ = results["guided"]
    return dict(cam=cam_from(a, dy_da), gbp=gbp, logits=logits, wrong_gbp=unguided_gbp,
                wrong_cam=cam_from(a, guided_dy_da))


@pytest.fixture(scope="module")
def keras_images():
    return make_images(seed=4)


@pytest.fixture(scope="module")
def keras_reference(keras_models, keras_images):
    model = keras_models["model"]
    base = model.get_layer("base")

    def forward(x, relus, tape):
        a = conv(base.get_layer("conv_b"), conv(base.get_layer("conv_a"), x, relus["relu6"]),
                 relus["relu"])
        tape.watch(a)
        hidden = dense(model.get_layer("hidden"), tf2.reshape(a, [tf2.shape(a)[0], -1]),
                       relus["relu"])
        return a, dense(model.get_layer("scores"), hidden)
    return eager_maps(forward, keras_images, np.array(LABELS, np.int32))


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, slim_model, slim_images, keras_models, keras_images, prelu_model,
             prelu_images):
    """The CLI on the .meta graph, the SavedModel and the .keras files, two at a time."""
    base = tmp_path_factory.mktemp("cli")
    label = ["--label", LABELS[CLI_IMAGE], "--outputs", "npz", "--preprocess", "unit"]
    slim_image = write_png(base / "slim.png", slim_images[CLI_IMAGE])
    keras_image = write_png(base / "keras.png", keras_images[CLI_IMAGE])
    prelu_image = write_png(base / "prelu.png", prelu_images[CLI_IMAGE])
    commands = {  # the meta run first: the module's first test reads it
        "meta": ["--model", slim_model["meta"], "--input", "input:0", "--output", "probs",
                 "--feed", "is_training=false", "--layer", "conv2", "--image", slim_image],
        "prelu": ["--model", prelu_model[1], "--layer", "features", "--image", prelu_image],
        "saved_model": ["--model", keras_models["saved_model"], "--signature",
                        "serving_default", "--image", keras_image],
        "keras_inner_layer": ["--model", keras_models["keras_file"], "--layer", "conv_b",
                              "--image", keras_image],
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        yield Runs({name: pool.submit(run_cli, args + label, base / name)
                    for name, args in commands.items()})


# --- (a) the TF 1 .meta graph --------------------------------------------------------------------

@pytest.fixture(scope="module")
def meta_explanations(slim_model, slim_images):
    with GuidedGradCam(slim_model["meta"], input="input:0", output="probs",
                       feeds={"is_training": False}, layer="conv2",
                       preprocess="unit") as explainer:
        return explainer.layer, explainer.explain(slim_images, LABELS)


def test_meta_graph_through_the_cli(cli_runs, slim_images, slim_reference):
    # The module's first test: starting the CLI runs here overlaps them with the references.
    run = cli_runs["meta"]
    arrays = npz_of(run, "slim")
    np.testing.assert_array_equal(arrays["image"], slim_images[CLI_IMAGE])
    assert arrays["label"] == LABELS[CLI_IMAGE]
    assert "Grad-CAM layer conv2" in run.stdout, run.stdout
    assert_matches(arrays["cam_lowres"], slim_reference["cam"][CLI_IMAGE], "meta CLI cam_lowres")
    assert_matches(arrays["gbp"], slim_reference["gbp"][CLI_IMAGE], "meta CLI gbp")


def test_meta_graph_equals_the_plain_and_guided_graph_references(meta_explanations,
                                                                 slim_reference):
    layer, explanations = meta_explanations
    assert layer == "conv2"
    assert [e.label for e in explanations] == LABELS
    assert_matches(np.stack([e.logits for e in explanations]), slim_reference["logits"],
                   "meta logits")
    assert_matches(np.stack([e.cam_lowres for e in explanations]), slim_reference["cam"],
                   "meta cam_lowres")
    assert_matches(np.stack([e.gbp for e in explanations]), slim_reference["gbp"], "meta gbp")


def test_slim_reference_data_discriminates(slim_reference):
    ref = slim_reference
    assert ref["cam"].max() > 0
    # A ReLU layer lies between A and the logits, so a guided ∂y/∂A gives another map; guiding
    # changes the input gradient; the moving statistics make is_training matter.
    assert relative_difference(ref["wrong_cam"], ref["cam"]) > 1e-2
    assert relative_difference(ref["wrong_gbp"], ref["gbp"]) > 0.05
    assert relative_difference(ref["training_logits"], ref["logits"]) > 0.05
    saturated, off = (ref["activations"] >= 6).mean(), (ref["activations"] == 0).mean()
    print("ReLU6 units saturated: %.2f, off: %.2f" % (saturated, off))
    assert 0.02 < saturated and 0.02 < off  # both of ReLU6's gates close somewhere


def test_training_mode_batch_norm_is_refused(slim_model):
    for model in (slim_model["meta"], slim_model["pb"]):
        with pytest.raises(GuidedGradCamError, match="batch statistics.*is_training=True"):
            GuidedGradCam(model, input="input:0", output="probs", feeds={"is_training": True},
                          layer="conv2", preprocess="unit")


# --- (b) the same graph frozen -------------------------------------------------------------------

def test_frozen_graph_equals_the_references(slim_model, slim_images, slim_reference):
    graph_def = tf.GraphDef()
    graph_def.ParseFromString(Path(slim_model["pb"]).read_bytes())
    ops = {node.name: node.op for node in graph_def.node}
    assert ops["is_training"] == "Placeholder"
    assert not {"VarHandleOp", "VariableV2", "ReadVariableOp"} & set(ops.values())  # frozen
    with GuidedGradCam(slim_model["pb"], input="input:0", output="probs:0",
                       feeds={"is_training": False}, layer="conv2",
                       preprocess="unit") as explainer:
        explanations = explainer.explain(slim_images, LABELS)
    assert_matches(np.stack([e.cam_lowres for e in explanations]), slim_reference["cam"],
                   "frozen cam_lowres")
    assert_matches(np.stack([e.gbp for e in explanations]), slim_reference["gbp"], "frozen gbp")


# --- (c) a Keras 3 SavedModel --------------------------------------------------------------------

@pytest.mark.parametrize("signature", [None, "serve"])
def test_saved_model_signatures_equal_the_eager_reference(keras_models, keras_images,
                                                          keras_reference, signature):
    with GuidedGradCam(keras_models["saved_model"], signature=signature,
                       preprocess="unit") as explainer:
        assert explainer.layer == "base/conv_b"  # the last conv, by default
        explanations = explainer.explain(keras_images, LABELS)
    assert_matches(np.stack([e.cam_lowres for e in explanations]), keras_reference["cam"],
                   "SavedModel %s cam_lowres" % signature)
    assert_matches(np.stack([e.gbp for e in explanations]), keras_reference["gbp"],
                   "SavedModel %s gbp" % signature)


def test_keras_reference_data_discriminates(keras_reference):
    assert relative_difference(keras_reference["wrong_cam"], keras_reference["cam"]) > 1e-2
    assert relative_difference(keras_reference["wrong_gbp"], keras_reference["gbp"]) > 0.05


def test_saved_model_through_the_cli(cli_runs, keras_images, keras_reference):
    arrays = npz_of(cli_runs["saved_model"], "keras")
    np.testing.assert_array_equal(arrays["image"], keras_images[CLI_IMAGE])
    assert_matches(arrays["cam_lowres"], keras_reference["cam"][CLI_IMAGE],
                   "SavedModel CLI cam_lowres")
    assert_matches(arrays["gbp"], keras_reference["gbp"][CLI_IMAGE], "SavedModel CLI gbp")


def test_missing_signature_lists_the_available_ones(keras_models):
    with pytest.raises(GuidedGradCamError) as raised:
        GuidedGradCam(keras_models["saved_model"], signature="default")
    message = str(raised.value)
    assert "\n" not in message
    assert "no signature 'default'" in message and "serve, serving_default" in message, message


# --- (d) layer names -----------------------------------------------------------------------------

def test_inner_keras_layer_name_through_the_cli(cli_runs, keras_reference):
    run = cli_runs["keras_inner_layer"]
    arrays = npz_of(run, "keras")
    # The traced scope is nested_1/base_1/conv_b_1: the user's name finds it.
    assert "Grad-CAM layer base/conv_b" in run.stdout, run.stdout
    assert_matches(arrays["cam_lowres"], keras_reference["cam"][CLI_IMAGE],
                   ".keras CLI cam_lowres")
    assert_matches(arrays["gbp"], keras_reference["gbp"][CLI_IMAGE], ".keras CLI gbp")


def test_unknown_layer_lists_valid_names_with_nested_ones(keras_models):
    with pytest.raises(GuidedGradCamError) as raised:
        GuidedGradCam(keras_models["keras_file"], layer="conv_c")
    first, *listing = str(raised.value).splitlines()
    assert first.startswith("unknown layer 'conv_c'; the %d valid layers" % len(listing)), first
    valid = dict(line.split() for line in listing)  # one a line: name, height x width x channels
    # SIZE x SIZE input: conv_a keeps it ('same'), conv_b is 3x3 'valid' at stride 2
    assert valid["base/conv_a"] == "%dx%dx6" % (SIZE, SIZE), valid
    assert valid["base/conv_b"] == "%dx%dx8" % ((SIZE - 3) // 2 + 1, (SIZE - 3) // 2 + 1), valid
    assert list(valid)[:2] == ["base/conv_a", "base/conv_b"], listing  # nearest names first


@pytest.mark.parametrize("tensor", ["conv2/Relu6", "conv2/Relu6:0"])
def test_raw_tensor_name_of_the_frozen_graph_as_layer(slim_model, slim_images, slim_reference,
                                                      tensor):
    with GuidedGradCam(slim_model["pb"], input="input", output="probs",
                       feeds={"is_training": False}, layer=tensor,
                       preprocess="unit") as explainer:
        assert explainer.layer == tensor
        explanations = explainer.explain(slim_images, LABELS)
    assert_matches(np.stack([e.cam_lowres for e in explanations]), slim_reference["cam"],
                   "layer %s cam_lowres" % tensor)


# --- (e) ReLUs that are no activations', and ReLUs in function bodies -----------------------------

@pytest.fixture(scope="module")
def prelu_model(tmp_path_factory):
    """conv → PReLU → conv with hard_silu → conv ReLU (A) → dense ReLU → softmax, in memory and
    saved as `.keras`."""
    layers = keras.layers
    path = tmp_path_factory.mktemp("prelu") / "prelu.keras"
    with eager():
        keras.utils.set_random_seed(5)
        inputs = keras.Input((SIZE, SIZE, 3))
        x = layers.Conv2D(6, 3, padding="same", name="conv1")(inputs)
        x = layers.PReLU(shared_axes=[1, 2], name="prelu")(x)
        x = layers.Conv2D(6, 3, padding="same", activation="hard_silu", name="conv2")(x)
        x = layers.Conv2D(8, 3, strides=2, activation="relu", name="features")(x)
        x = layers.Dense(12, activation="relu", name="hidden")(layers.Flatten()(x))
        outputs = layers.Dense(CLASSES, activation="softmax", name="scores")(x)
        model = keras.Model(inputs, outputs, name="prelu_model")
        prelu = model.get_layer("prelu")
        prelu.alpha.assign(np.random.default_rng(6).uniform(0.1, 0.5, prelu.alpha.shape))
        model.save(path)
    return model, str(path)


def prelu_model_forward(model, prelu_relu, hard_silu_relu6):
    """The forward pass of `prelu_model` with the given ReLUs inside PReLU and hard_silu."""
    alpha = model.get_layer("prelu").alpha

    def forward(x, relus, tape):
        x = conv(model.get_layer("conv1"), x)
        x = prelu_relu(x) - alpha * prelu_relu(-x)  # Keras 3's PReLU
        x = conv(model.get_layer("conv2"), x)
        x = x * hard_silu_relu6(x + 3.0) / 6.0  # Keras 3's hard_silu
        a = conv(model.get_layer("features"), x, relus["relu"])
        tape.watch(a)
        hidden = dense(model.get_layer("hidden"), tf2.reshape(a, [tf2.shape(a)[0], -1]),
                       relus["relu"])
        return a, dense(model.get_layer("scores"), hidden)
    return forward


@pytest.fixture(scope="module")
def prelu_images():
    return make_images(seed=7)


@pytest.fixture(scope="module")
def prelu_reference(prelu_model, prelu_images):
    """PReLU and hard_silu differentiated plainly, the true ReLUs guided; and the wrong GBP
    with PReLU's and hard_silu's ReLUs guided too."""
    model, _ = prelu_model
    labels = np.array(LABELS, np.int32)
    reference = eager_maps(prelu_model_forward(model, tf2.nn.relu, tf2.nn.relu6),
                           prelu_images, labels)
    all_guided = eager_maps(prelu_model_forward(model, guided_relu, guided_relu6),
                            prelu_images, labels)
    return dict(reference, all_guided_gbp=all_guided["gbp"])


def test_prelu_and_hard_silu_keep_their_ordinary_gradient(prelu_model, prelu_images,
                                                          prelu_reference):
    with GuidedGradCam(prelu_model[0], layer="features", preprocess="unit") as explainer:
        explanations = explainer.explain(prelu_images, LABELS)
        unguided = explainer.unguided_activations
    assert unguided == {"PReLU": 1, "hard_silu": 1}, unguided
    assert_matches(np.stack([e.gbp for e in explanations]), prelu_reference["gbp"], "PReLU gbp")
    assert_matches(np.stack([e.cam_lowres for e in explanations]), prelu_reference["cam"],
                   "PReLU cam_lowres")
    # On this data, guiding PReLU's and hard_silu's ReLUs as well, or guiding nothing, would
    # each give another GBP.
    assert relative_difference(prelu_reference["all_guided_gbp"], prelu_reference["gbp"]) > 0.05
    assert relative_difference(prelu_reference["wrong_gbp"], prelu_reference["gbp"]) > 0.05


def test_prelu_model_through_the_cli_reports_the_unguided_activations(cli_runs,
                                                                      prelu_reference):
    run = cli_runs["prelu"]
    assert run.returncode == 0, run.stderr
    header = [line for line in run.stdout.splitlines() if line.startswith("guided backprop")]
    assert len(header) == 1, run.stdout
    assert "PReLU ×1" in header[0] and "hard_silu ×1" in header[0], header[0]
    arrays = npz_of(run, "prelu")
    assert_matches(arrays["gbp"], prelu_reference["gbp"][CLI_IMAGE], "PReLU CLI gbp")


def _cond_relu_graph_def(lower_control_flow):
    """A frozen tf.function whose ReLUs sit in the branches of a tf.cond."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    rng = np.random.default_rng(8)
    kernel = rng.normal(0.0, 0.3, (3, 3, 3, 4)).astype(np.float32)
    weights = rng.normal(0.0, 1.0, (4, CLASSES)).astype(np.float32)
    with eager():
        @tf2.function(input_signature=[tf2.TensorSpec([None, SIZE, SIZE, 3], tf2.float32)])
        def probabilities(x):
            features = tf2.nn.conv2d(x, tf2.constant(kernel), 1, "SAME")
            features = tf2.cond(tf2.reduce_mean(x) > 0.5, lambda: tf2.nn.relu(features),
                                lambda: tf2.nn.relu(-features))
            pooled = tf2.reduce_mean(features, axis=[1, 2])
            return tf2.nn.softmax(tf2.matmul(pooled, tf2.constant(weights)))
        frozen = convert_variables_to_constants_v2(probabilities.get_concrete_function(),
                                                   lower_control_flow=lower_control_flow)
        return frozen.graph.as_graph_def()


def test_relu_in_a_function_body_is_refused(tmp_path):
    hidden, lowered = tmp_path / "cond.pb", tmp_path / "lowered.pb"
    graph_def = _cond_relu_graph_def(lower_control_flow=False)
    assert any(node.op in ("If", "StatelessIf") for node in graph_def.node)
    hidden.write_bytes(graph_def.SerializeToString())
    lowered.write_bytes(_cond_relu_graph_def(lower_control_flow=True).SerializeToString())
    with pytest.raises(GuidedGradCamError) as raised:
        GuidedGradCam(str(hidden), preprocess="unit")
    message = str(raised.value)
    assert "function bodies" in message and "lower_control_flow=True" in message, message
    # The same function with its control flow lowered is accepted: the refusal is about
    # where the ReLUs are, nothing else.
    with GuidedGradCam(str(lowered), preprocess="unit") as explainer:
        explanation, = explainer.explain(make_images(seed=9, count=1))
        # The default layer is the cond's output, the features that the pooling averages, not
        # one of the lowered cond's Switch outputs that leave its scope first.
        pooling, = [op for op in explainer.graph.graph.get_operations() if op.type == "Mean"
                    and op.inputs[0].shape.ndims == 4 and op.outputs[0].shape.ndims == 2]
        assert explainer.layer == "cond"
        assert explainer.graph.activations.name == pooling.inputs[0].name
        assert explainer.graph.activations.op.type != "Switch"
    assert np.abs(explanation.gbp).max() > 0


def test_a_residual_scopes_layer_is_its_last_exit_not_its_skip(tmp_path):
    """A frozen TF 1 graph whose scope `block` has two exits: its first conv's output also
    skips over the block into an Add after it, and the block's own output (block/out). The
    layer `block` is the block's output: its Grad-CAM equals ReLU(Σ_k α_k out_k) with
    α_k = W[k, c] / (h·w), ∂y^c/∂out for y = (mean over space of out + skip) · W."""
    rng = np.random.default_rng(13)
    first_kernel = rng.normal(0.0, 0.3, (3, 3, 3, 4)).astype(np.float32)
    second_kernel = rng.normal(0.0, 0.3, (3, 3, 4, 4)).astype(np.float32)
    weights = rng.normal(0.0, 1.0, (4, CLASSES)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="input")
        with tf.name_scope("block"):
            first = tf.nn.conv2d(x, tf.constant(first_kernel), 1, "SAME", name="conv1")
            hidden = tf.nn.relu(first, name="relu")
            second = tf.nn.conv2d(hidden, tf.constant(second_kernel), 1, "SAME", name="conv2")
            out = tf.nn.relu(second, name="out")
        pooled = tf.reduce_mean(tf.add(out, first, name="skip"), axis=[1, 2])
        tf.nn.softmax(tf.matmul(pooled, tf.constant(weights)), name="probs")
    path = tmp_path / "residual.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    images = make_images(seed=13)
    with tf.Session(graph=graph) as session:
        activations = session.run(out, {x: images / 255.0})
    alpha = weights[:, LABELS].T[:, None, None, :] / (SIZE * SIZE)  # [B, 1, 1, K]
    reference = np.maximum((alpha * activations).sum(axis=3), 0.0)
    with GuidedGradCam(str(path), input="input:0", output="probs:0", layer="block",
                       preprocess="unit") as explainer:
        layer = explainer.graph.activations
        assert layer.op.name == explainer.graph.model.scope + "block/out", layer.name
        explanations = explainer.explain(images, LABELS)
    assert_matches(np.stack([e.cam_lowres for e in explanations]), reference,
                   "residual block cam_lowres")
