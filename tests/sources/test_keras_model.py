"""Small Keras models of every head and shape, explained through the toolkit, against references
computed here in eager mode: Grad-CAM from a GradientTape plain gradient, GBP from the same
model with every ReLU replaced by a `tf.custom_gradient` guided ReLU of this test's own.

Each model has a ReLU Dense layer between the Grad-CAM layer and the scores (as VGG's fc6/fc7),
so a guided ∂y/∂A would be wrong, and a head activation that must be bypassed. Each comparison
also checks that its data tells the right answer from the wrong ones: the unguided gradient,
the guided ∂y/∂A, and the gradient through the softmax or sigmoid.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf2
import tf_keras

from PIL import Image

from conftest import run_cli
from guided_gradcam import GuidedGradCam
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.preprocessing import describe_input, get_preprocessing
from guided_gradcam.sources.graph_def import rescaling_scopes
from guided_gradcam.sources.keras_model import KerasSource, rescaling_layers
from guided_gradcam.core.tf_eager import eager
from helpers import guided_relu, guided_relu6

SIZE = 16


PLAIN = {"relu": "relu", "relu6": "relu6"}
GUIDED = {"relu": guided_relu, "relu6": guided_relu6}


def _stages(K, relus, features_activation, units, head):
    """(layers up to A, layers after A) of a small CNN."""
    base = [
        K.layers.Conv2D(5, 3, padding="same", activation=relus["relu6"], name="conv1"),
        K.layers.Conv2D(6, 3, activation=features_activation or relus["relu"], name="features"),
    ]
    tail = [
        K.layers.MaxPooling2D(2, name="pool"),
        K.layers.Flatten(name="flatten"),
        K.layers.Dense(8, activation=relus["relu"], name="hidden"),
        K.layers.Dense(units, activation=head, name="scores"),
    ]
    return base, tail


def build(K, relus, channels=3, features_activation=None, units=3, head="softmax",
          nested=False):
    """The Keras model, and a function giving (A, scores before the head) in eager mode."""
    base, tail = _stages(K, relus, features_activation, units, head)
    inputs = K.Input((SIZE, SIZE, channels))
    if nested:
        inner = K.Sequential([K.Input((SIZE, SIZE, channels))] + base, name="base")
        hidden = inner(inputs)
    else:
        hidden = inputs
        for layer in base:
            hidden = layer(hidden)
    outputs = hidden
    for layer in tail:
        outputs = layer(outputs)
    model = K.Model(inputs, outputs, name="small")

    def features_and_scores(x, tape=None):
        a = x
        for layer in base:
            a = layer(a)
        if tape is not None:
            tape.watch(a)
        h = a
        for layer in tail[:-1]:
            h = layer(h)
        scores = tf2.matmul(h, tail[-1].kernel) + tail[-1].bias  # the head's input
        return a, scores
    return model, features_and_scores


def explained_score(scores, labels, task):
    """y^c per image: binary label 0 explains −z."""
    if task == "binary":
        return tf2.where(tf2.constant(labels) == 1, scores[:, 0], -scores[:, 0])
    return tf2.gather(scores, labels, axis=1, batch_dims=1)


def references(K, case, images, labels, preprocess):
    """Grad-CAM and GBP computed here: (cam_lowres, gbp, wrong answers)."""
    kwargs = case["kwargs"]
    with eager():
        model, plain = build(K, PLAIN, **kwargs)
        guided_model, guided = build(K, GUIDED, **kwargs)
        guided_model.set_weights(model.get_weights())
        x = tf2.constant(preprocess(images.astype(np.float32)))
        with tf2.GradientTape(persistent=True) as tape:
            tape.watch(x)
            a, scores = plain(x, tape)
            y = explained_score(scores, labels, case["task"])
            head = kwargs.get("head", "softmax")
            after_head = {"softmax": tf2.nn.softmax, "sigmoid": tf2.sigmoid}.get(
                head, tf2.identity)(scores)
            through_head = tf2.gather(after_head, labels if case["task"] != "binary" else
                                      np.zeros_like(labels), axis=1, batch_dims=1)
        grads = tape.gradient(y, a)
        unguided_gbp = tape.gradient(y, x)
        head_grads = tape.gradient(through_head, a)
        with tf2.GradientTape(persistent=True) as tape:
            tape.watch(x)
            guided_a, guided_scores = guided(x, tape)
            guided_y = explained_score(guided_scores, labels, case["task"])
        gbp = tape.gradient(guided_y, x)
        guided_grads = tape.gradient(guided_y, guided_a)

        def cam(g):
            alpha = tf2.reduce_mean(g, axis=[1, 2], keepdims=True)
            return np.maximum(tf2.reduce_sum(alpha * a, axis=3).numpy(), 0)
        wrong = {"unguided GBP": unguided_gbp.numpy(), "guided dy/dA": cam(guided_grads),
                 "not bypassed head": cam(head_grads)}
        return model, cam(grads), gbp.numpy(), y.numpy(), wrong


CASES = {
    "softmax": dict(task="classification", kwargs=dict(units=3, head="softmax"), labels=[2, 0, 1]),
    "binary": dict(task="binary", kwargs=dict(units=1, head="sigmoid"), labels=[1, 0, 1]),
    "multilabel": dict(task="multilabel", kwargs=dict(units=4, head="sigmoid"), labels=[3, 1, 0]),
    "regression": dict(task="regression", kwargs=dict(units=1, head=None), labels=[0, 0, 0]),
    "nested": dict(task="classification", kwargs=dict(units=3, nested=True), labels=[1, 2, 0]),
    "swish": dict(task="classification", kwargs=dict(units=3, features_activation="swish"),
                  labels=[0, 1, 2]),
    "gray": dict(task="binary", kwargs=dict(units=1, head="sigmoid", channels=1),
                 labels=[0, 1, 1]),
}


def _relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture(scope="module", params=sorted(CASES))
def case_result(request):
    name = request.param
    case = CASES[name]
    channels = case["kwargs"].get("channels", 3)
    rng = np.random.default_rng(sorted(CASES).index(name))
    images = rng.integers(0, 256, (3, SIZE, SIZE, channels)).astype(np.uint8)
    labels = np.array(case["labels"], np.int32)
    keras.utils.set_random_seed(len(name))
    model, cam, gbp, y, wrong = references(keras, case, images, labels, lambda x: x / 255.0)
    with GuidedGradCam(model, layer="features", preprocess="unit") as explainer:
        explanations = explainer.explain(images, list(labels))
        unguided = explainer.unguided_activations
    return name, case, explanations, cam, gbp, y, wrong, unguided


def test_gradcam_equals_the_eager_plain_gradient_reference(case_result):
    name, case, explanations, cam, _, _, wrong, _ = case_result
    ours = np.stack([e.cam_lowres for e in explanations])
    assert ours.max() > 0, name
    print("%s: cam_lowres max |ours - reference| / peak = %.1e" % (name, _relative(ours, cam)))
    np.testing.assert_allclose(ours, cam, rtol=1e-4, atol=1e-5 * cam.max(), err_msg=name)
    # The data separates the paper's α from a guided ∂y/∂A and from the un-bypassed head.
    assert _relative(wrong["guided dy/dA"], cam) > 1e-2, name
    if case["kwargs"].get("head", "softmax"):
        assert _relative(wrong["not bypassed head"], cam) > 1e-2, name


def test_gbp_equals_the_custom_gradient_guided_reference(case_result):
    name, case, explanations, _, gbp, _, wrong, _ = case_result
    ours = np.stack([e.gbp for e in explanations])
    assert ours.shape == gbp.shape, name
    print("%s: gbp max |ours - reference| / peak = %.1e" % (name, _relative(ours, gbp)))
    np.testing.assert_allclose(ours, gbp, rtol=1e-4, atol=1e-5 * np.abs(gbp).max(), err_msg=name)
    assert _relative(wrong["unguided GBP"], gbp) > 0.05, name  # guiding changes this data


def test_head_task_labels_and_scores(case_result):
    name, case, explanations, _, _, y, _, unguided = case_result
    for label, explanation, score in zip(case["labels"], explanations, y):
        assert explanation.task == case["task"] and explanation.label == label, name
        if case["task"] == "binary":
            z = explanation.logits[0]
            assert score == pytest.approx(z if label == 1 else -z, rel=1e-4, abs=1e-6)
            assert explanation.probabilities[1] == pytest.approx(1 / (1 + np.exp(-z)), rel=1e-5)
        elif case["task"] == "regression":
            assert explanation.value == pytest.approx(score, rel=1e-4, abs=1e-6)
            assert explanation.probabilities is None
        else:
            assert explanation.logits[label] == pytest.approx(score, rel=1e-4, abs=1e-6)
    assert ("Sigmoid (swish)" in unguided) == (name == "swish"), unguided


def test_binary_default_explains_the_predicted_side():
    case = CASES["binary"]
    images = np.random.default_rng(11).integers(0, 256, (8, SIZE, SIZE, 3)).astype(np.uint8)
    with eager():
        keras.utils.set_random_seed(5)
        model, features_and_scores = build(keras, PLAIN, **case["kwargs"])
        z = features_and_scores(tf2.constant(images / 255.0, tf2.float32))[1].numpy()[:, 0]
        bias = model.get_layer("scores").bias
        bias.assign(bias - np.median(z))  # half the images on each side
    with GuidedGradCam(model, layer="features", preprocess="unit") as explainer:
        explanations = explainer.explain(images)
    sides = {e.label for e in explanations}
    for e in explanations:
        assert e.label == int(e.logits[0] > 0)
    assert sides == {0, 1}, "the data must hold both predicted sides"


def test_regression_counterfactual_negates_the_gradient_of_y():
    """A regression model's counterfactual Grad-CAM is ReLU(Σ_k α_k A^k) with α the spatial
    mean of −∂y/∂A, from a GradientTape here; both maps have positive parts, so the factual one
    tells them apart."""
    images = np.random.default_rng(4).integers(0, 256, (3, SIZE, SIZE, 3)).astype(np.uint8)
    with eager():
        keras.utils.set_random_seed(4)  # Σ α_k A^k of both signs, in every image
        model, features_and_scores = build(keras, PLAIN, **CASES["regression"]["kwargs"])
        with tf2.GradientTape() as tape:
            a, scores = features_and_scores(tf2.constant(images / 255.0, tf2.float32), tape)
            y = scores[:, 0]  # the one linear unit: y itself
        grads = tape.gradient(y, a).numpy()
        a = a.numpy()
    linear = (grads.mean(axis=(1, 2), keepdims=True) * a).sum(3)  # Σ_k α_k A^k, α of +∂y/∂A
    reference = {sign: np.maximum(sign * linear, 0) for sign in (1.0, -1.0)}  # α of ±∂y/∂A
    with GuidedGradCam(model, layer="features", preprocess="unit") as explainer:
        assert explainer.task == "regression"
        maps = {sign: np.stack([e.cam_lowres for e in explainer.explain(
            images, counterfactual=sign < 0)]) for sign in (1.0, -1.0)}
    for sign, expected in reference.items():
        # Not vacuous: each image's map has a positive part of at least 30 % of |Σ α A|'s peak.
        assert (expected.reshape(len(images), -1).max(1) > 0.3 * np.abs(linear).max()).all()
        np.testing.assert_allclose(maps[sign], expected, rtol=1e-4, atol=1e-5 * expected.max(),
                                   err_msg="counterfactual" if sign < 0 else "factual")
    assert _relative(reference[-1.0], reference[1.0]) > 0.5  # the data tells the signs apart


def test_tf_keras_model_matches_the_same_weights_in_keras_3(tmp_path):
    """tf-keras (Keras 2) keeps FusedBatchNormV3 and its own scope names; a saved .h5 of it
    gives the same maps as the Keras 3 model with the same weights."""
    case = CASES["softmax"]
    images = np.random.default_rng(3).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)
    with eager():
        keras.utils.set_random_seed(8)
        model3, _ = build(keras, PLAIN, **case["kwargs"])
        model2, _ = build(tf_keras, PLAIN, **case["kwargs"])
        model2.set_weights(model3.get_weights())
        model2.save(str(tmp_path / "small.h5"))
    maps = []
    for model in (model3, str(tmp_path / "small.h5")):
        with GuidedGradCam(model, layer="features", preprocess="unit") as explainer:
            maps.append(explainer.explain(images, [0, 2]))
    for keras3, keras2 in zip(*maps):
        np.testing.assert_allclose(keras2.cam_lowres, keras3.cam_lowres, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(keras2.gbp, keras3.gbp, rtol=1e-4,
                                   atol=1e-5 * np.abs(keras3.gbp).max())


def test_class_names_are_imagenets_only_when_asked():
    """A model's classes are 'class N' unless --labels_file names them; with 1001 scores and
    'imagenet', score 0 is the background class, never the predicted one."""
    images = np.random.default_rng(4).integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.uint8)
    with eager():
        keras.utils.set_random_seed(6)
        model, _ = build(keras, PLAIN, units=1001)
        bias = model.get_layer("scores").bias
        bias.assign(np.r_[100.0, np.zeros(1000)].astype(np.float32))  # background always wins
    with GuidedGradCam(model, layer="features") as explainer:
        plain, = explainer.explain(images)
        assert (plain.label, explainer.labels.name(plain.label)) == (0, "class 0")
        assert len(explainer.labels) == 1001
    with GuidedGradCam(model, layer="features", labels_file="imagenet") as explainer:
        named, = explainer.explain(images)
        assert len(explainer.labels) == 1000 and named.logits.shape == (1000,)
        assert named.label == int(np.argmax(plain.logits[1:]))
        assert explainer.labels.name(named.label) == explainer.labels.names[named.label].split(",")[0]
        assert explainer.labels.resolve("tiger cat") == 282


def test_an_all_zero_gradcam_is_noted_and_still_written(tmp_path):
    """A layer with no active unit has no positive evidence for any class: the CLI says so in
    one note and writes the npz all the same."""
    with eager():
        keras.utils.set_random_seed(9)
        model, _ = build(keras, PLAIN, units=3)
        bias = model.get_layer("features").bias
        bias.assign(np.full(bias.shape, -1000.0, np.float32))  # ReLU(·) = 0 everywhere
        model.save(tmp_path / "silent.keras")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 50, 3), np.uint8)).save(photo)
    run = run_cli(["--model", tmp_path / "silent.keras", "--layer", "features", "--image", photo,
                   "--outputs", "npz,panel"], tmp_path / "out")
    assert run.returncode == 0, run.stderr
    header, preprocessing, result, note, written = run.stdout.splitlines()
    assert note.startswith("note: ") and "all zero: no positive evidence for class" in note
    assert "at layer features" in note
    with np.load(tmp_path / "out" / "photo.npz") as arrays:
        assert not arrays["cam_lowres"].any() and np.isfinite(arrays["guided_gradcam"]).all()
    # Raw pixels, the default for --model: no claim that the model rescales them, but a note
    # that this one cannot (it has no rescaling layer) and how to choose --preprocess.
    assert "preprocessing raw: float pixels 0..255, unchanged;" in header, header
    assert "rescales" not in header, header
    assert preprocessing == (
        "note: the model receives float pixels 0..255 and has no Rescaling or Normalization "
        "layer; if it was trained on rescaled pixels, choose --preprocess unit (/255), "
        "inception ([-1, 1]), vgg (minus ImageNet means) or torch (ImageNet mean/std)")
    assert result.startswith("%s: top-3: " % photo), result  # 3 classes: not top-5
    assert written == "wrote %s, %s" % (tmp_path / "out" / "photo_panel.png",
                                        tmp_path / "out" / "photo.npz")


def test_rescaling_layers_are_named_with_what_they_compute():
    """Keras 3 and tf-keras Rescaling / Normalization layers, nested ones too, each with its
    arithmetic from the layer's own arguments."""
    mean, variance = [123.68, 116.78, 103.94], [58.395 ** 2, 57.12 ** 2, 57.375 ** 2]
    with eager():
        inputs = keras.Input((SIZE, SIZE, 3))
        base = keras.Sequential([keras.Input((SIZE, SIZE, 3)),
                                 keras.layers.Rescaling(1 / 255.0, name="to_unit")], name="base")
        hidden = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_inception")(
            base(inputs))
        hidden = keras.layers.Normalization(mean=mean, variance=variance, name="imagenet")(hidden)
        model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="features")(hidden))
        old = tf_keras.Sequential([tf_keras.Input((SIZE, SIZE, 3)),
                                   tf_keras.layers.Rescaling(0.3, offset=[1.0, 2.0, 3.0],
                                                             name="rescaling"),
                                   tf_keras.layers.Conv2D(2, 3)])
        plain, _ = build(keras, PLAIN)
    # The values by hand: sqrt(58.395²) = 58.395 → "58.4" at 4 significant digits.
    assert rescaling_layers(model) == (
        "base/to_unit (Rescaling: x / 255)", "to_inception (Rescaling: x / 127.5 - 1)",
        "imagenet (Normalization: (x - (123.7, 116.8, 103.9)) / (58.4, 57.12, 57.38))")
    assert rescaling_layers(old) == ("rescaling (Rescaling: x * 0.3 + (1, 2, 3))",)
    assert rescaling_layers(plain) == ()


def test_graph_formats_find_rescaling_only_by_its_keras_scope_name():
    """A SavedModel of a Keras model keeps `rescaling_1` in its op names (as model.export
    writes them); batch_normalization is no input rescaling; a graph without such a scope
    cannot tell."""
    graph_def = tf2.compat.v1.GraphDef()
    for name in ("keras_tensor", "StatefulPartitionedCall/functional_1/rescaling_1/mul",
                 "StatefulPartitionedCall/functional_1/rescaling_1/add",
                 "StatefulPartitionedCall/functional_1/batch_normalization/mul",
                 "StatefulPartitionedCall/functional_1/conv2d/Relu"):
        graph_def.node.add(name=name, op="NoOp")
    assert rescaling_scopes(graph_def) == (
        "functional_1/rescaling_1 (a scope named like a Keras Rescaling layer)",)
    del graph_def.node[1:3]
    assert rescaling_scopes(graph_def) is None


@pytest.mark.parametrize("preprocess, rescaling, header, note", [
    ("raw", ("rescaling (Rescaling: x / 255)",),
     "raw: float pixels 0..255, unchanged; the model's own rescaling: rescaling (Rescaling: "
     "x / 255)", None),
    ("raw", (), "raw: float pixels 0..255, unchanged",
     "the model receives float pixels 0..255 and has no Rescaling or Normalization layer; "
     "if it was trained on rescaled pixels, choose --preprocess unit (/255), inception "
     "([-1, 1]), vgg (minus ImageNet means) or torch (ImageNet mean/std)"),
    ("raw", None, "raw: float pixels 0..255, unchanged",
     "cannot tell whether the model rescales its input (its graph keeps no Keras layers): it "
     "receives float pixels 0..255; if it was trained on rescaled pixels, choose --preprocess "
     "unit (/255), inception ([-1, 1]), vgg (minus ImageNet means) or torch (ImageNet "
     "mean/std)"),
    ("unit", ("rescaling (Rescaling: x / 255)",), "unit: pixels / 255",
     "--preprocess unit rescales the pixels, and the model has its own rescaling too: "
     "rescaling (Rescaling: x / 255); pass --preprocess raw unless it was trained that way"),
    ("unit", (), "unit: pixels / 255", None),
    ("unit", None, "unit: pixels / 255", None),
])
def test_the_run_header_says_what_is_known_of_the_models_rescaling(preprocess, rescaling,
                                                                   header, note):
    assert describe_input(get_preprocessing(preprocess), rescaling) == (header, note)


def test_a_keras_source_reports_its_rescaling_layers():
    with eager():
        inputs = keras.Input((SIZE, SIZE, 3))
        hidden = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(
            keras.layers.Conv2D(2, 3, activation="relu", name="features")(hidden))))
    source = KerasSource(model, "scaled", get_preprocessing("raw"))
    assert source.rescaling == ("scale (Rescaling: x / 255)",)


def test_open_input_size_needs_input_size_and_then_follows_it():
    """A fully convolutional model with (None, None) spatial input: the size is the user's."""
    with eager():
        inputs = keras.Input((None, None, 3))
        hidden = keras.layers.Conv2D(4, 3, activation="relu", name="features")(inputs)
        outputs = keras.layers.Dense(2, activation="softmax")(
            keras.layers.GlobalAveragePooling2D()(hidden))
        model = keras.Model(inputs, outputs)
    with pytest.raises(GuidedGradCamError, match="leaves its input size open: pass --input_size"):
        GuidedGradCam(model)
    images = np.random.default_rng(1).integers(0, 256, (2, 40, 56, 3)).astype(np.uint8)
    with GuidedGradCam(model, input_size=(40, 56)) as explainer:
        assert explainer.input_size == (40, 56)
        explanation = explainer.explain(images)[0]
    assert explanation.cam_lowres.shape == (38, 54) and explanation.gbp.shape == (40, 56, 3)
