"""The real ImageNet MobileNet V1 0.75 (converted from ../shared) end to end through the API."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf
import tf_slim as slim

from guided_gradcam import load_photo
from guided_gradcam.graph import build_explanation_graph
from guided_gradcam.zoo.networks import NETWORKS
from guided_gradcam.zoo.slim_models import mobilenet_v1
from guided_gradcam.sources.slim import SlimSource
from helpers import bilinear_half_pixel

# Keras on the same weights, centre crop + resize to 224 (../shared/README.md).
KERAS_TOP5 = [(282, 0.490), (243, 0.349), (292, 0.056), (281, 0.040), (242, 0.032)]
TIGER_CAT, BULL_MASTIFF = 282, 243
# 14x14, before the stride-2 Conv2d_12: ∂y/∂A varies in space there (at Conv2d_13_pointwise,
# the default, the average pool makes it constant), and the ReLU6s of layers 12 and 13 lie
# between it and the logits, so the explanation graph takes its two-pass path.
EARLIER_LAYER = "Conv2d_11_pointwise"


@pytest.fixture(scope="module")
def cat_dog(explainer, cat_dog_path):
    network_input, _ = explainer.fit(load_photo(cat_dog_path))
    return network_input


@pytest.fixture(scope="module")
def explained(explainer, cat_dog):
    """One batch: the same photo for 'tiger cat' and for 'bull mastiff'."""
    return explainer.explain(np.stack([cat_dog, cat_dog]), [TIGER_CAT, "bull mastiff"])


def test_converted_checkpoint_has_exactly_the_graphs_variables(explainer):
    stored = set(tf.train.load_checkpoint(explainer.checkpoint).get_variable_to_shape_map())
    with explainer._graph.graph.as_default():
        built = {v.op.name for v in tf.global_variables()}
    assert stored == built
    assert explainer.labels.offset == 0 and explainer.labels.num_logits == 1000


def test_top5_agrees_with_keras(explained):
    top5 = explained[0].top_k(5)
    assert [c.name for c in top5[:2]] == ["tiger cat", "bull mastiff"]
    assert explained[1].class_name == "bull mastiff"
    assert [index for index, _ in top5] == [index for index, _ in KERAS_TOP5]
    for (_, probability), (_, keras_probability) in zip(top5, KERAS_TOP5):
        assert probability == pytest.approx(keras_probability, abs=0.01)


def test_gradcam_finds_the_cat_below_and_the_dog_above(explained):
    cat, dog = explained
    assert (cat.label, dog.label) == (TIGER_CAT, BULL_MASTIFF)
    cat_row, _ = np.unravel_index(np.argmax(cat.cam), cat.cam.shape)
    dog_row, dog_col = np.unravel_index(np.argmax(dog.cam), dog.cam.shape)
    assert cat_row >= 112, "the cat lies across the lower half"
    assert dog_row < 112 and 56 <= dog_col < 168, "the dog sits in the upper middle"
    assert cat.cam[112:].sum() > cat.cam[:112].sum()
    assert dog.cam[:112].sum() > dog.cam[112:].sum()


def test_a_batch_equals_one_image_at_a_time(explainer, cat_dog, explained):
    for explanation in explained:
        single, = explainer.explain(cat_dog[None], [explanation.label])
        for name in ("logits", "cam_lowres", "cam", "gbp", "guided_gradcam"):
            np.testing.assert_allclose(
                getattr(single, name), getattr(explanation, name), rtol=1e-4,
                atol=1e-5 * np.abs(getattr(single, name)).max(), err_msg=name)


def test_cam_is_the_half_pixel_bilinear_upsampling_of_cam_lowres(explained):
    for explanation in explained:
        upsampled = bilinear_half_pixel(explanation.cam_lowres, 224, 224)
        np.testing.assert_allclose(explanation.cam, upsampled / upsampled.max(), atol=1e-5)


def test_default_label_is_the_top1_class(explainer, cat_dog):
    explanation, = explainer.explain(cat_dog[None])
    assert explanation.label == TIGER_CAT


def test_counterfactual_map_is_the_negative_part(explainer, cat_dog, explained):
    counterfactual, = explainer.explain(cat_dog[None], [BULL_MASTIFF], counterfactual=True)
    factual = explained[1]
    assert counterfactual.cam_lowres.any()
    # ReLU(s) and ReLU(-s) of the same weighted sum s are never both positive.
    assert not np.any((counterfactual.cam_lowres > 0) & (factual.cam_lowres > 0))
    # What speaks against the dog lies in the lower half, where the cat is.
    assert counterfactual.cam[112:].sum() > counterfactual.cam[:112].sum()
    np.testing.assert_allclose(counterfactual.gbp, factual.gbp, rtol=1e-5, atol=1e-9)


@tf.custom_gradient
def _guided_relu6(x):
    """Guided ReLU6 written independently of the override mechanism."""
    y = tf.nn.relu6(x)

    def grad(dy):
        return dy * tf.cast((dy > 0) & (x > 0) & (x < 6), dy.dtype)
    return y, grad


@pytest.fixture(scope="module")
def reference(explainer):
    """MobileNet with no override: plain ∂y/∂A, and GBP from a custom-gradient ReLU6."""
    spec = NETWORKS["mobilenet_v1_075"]
    references = {}
    for activation in (tf.nn.relu6, _guided_relu6):
        graph = tf.Graph()
        with graph.as_default():
            images = tf.placeholder(tf.uint8, [None, 224, 224, 3])
            label = tf.placeholder(tf.int32, [])
            net_input = spec.preprocess(tf.cast(images, tf.float32))
            with slim.arg_scope(mobilenet_v1.mobilenet_v1_arg_scope()), \
                    slim.arg_scope([slim.conv2d, slim.separable_conv2d], activation_fn=activation):
                logits, end_points = mobilenet_v1.mobilenet_v1(net_input, 1000, depth_multiplier=0.75)
            layer, earlier = end_points["Conv2d_13_pointwise"], end_points[EARLIER_LAYER]
            objective = tf.reduce_sum(logits[:, label])
            session = tf.Session()
            tf.train.Saver().restore(session, explainer.checkpoint)
        tensors = dict(zip(("layer", "earlier", "layer_grad", "earlier_grad", "input_grad"),
                           [layer, earlier] + tf.gradients(objective, [layer, earlier, net_input])))
        references[activation.__name__] = (session, images, label, tensors)
    yield references
    for session, *_ in references.values():
        session.close()


def test_maps_equal_an_independent_computation(reference, cat_dog, explained):
    session, images, label, tensors = reference["relu6"]
    for explanation in explained:
        activations, grads = session.run(
            [tensors["layer"], tensors["layer_grad"]],
            {images: cat_dog[None], label: explanation.label})
        alpha = grads.mean(axis=(1, 2), keepdims=True)
        expected_cam = np.maximum((alpha * activations).sum(-1), 0)[0]
        np.testing.assert_allclose(explanation.cam_lowres, expected_cam, rtol=1e-4,
                                   atol=1e-4 * expected_cam.max())
        _assert_gbp_equals_the_reference(explanation.gbp, reference, cat_dog, explanation.label)


def _assert_gbp_equals_the_reference(actual, reference, cat_dog, target):
    guided_session, images, label, tensors = reference["_guided_relu6"]
    gbp = guided_session.run(tensors["input_grad"], {images: cat_dog[None], label: target})[0]
    assert np.abs(gbp).max() > 0
    # The toolkit's forward pass runs Conv2D + BatchNorm + ReLU6 as one fused kernel (its
    # backward pass never reads a pre-activation); the reference's does not, so the two
    # round differently and a gate within rounding of 0 or 6 may flip. Such flips stay
    # rare and small: no element off by 0.3% of the peak (measured: 0.028% in both of
    # .ci/run's regimes, a 10x margin), fewer than 0.1% off by 0.01%.
    np.testing.assert_allclose(actual, gbp, atol=3e-3 * np.abs(gbp).max())
    off = ~np.isclose(actual, gbp, rtol=1e-4, atol=1e-4 * np.abs(gbp).max())
    assert off.mean() < 1e-3, off.mean()


@pytest.fixture(scope="module")
def earlier_layer(explainer):
    """The explanation graph of the real MobileNet at EARLIER_LAYER, restored."""
    graph = build_explanation_graph(
        SlimSource(NETWORKS["mobilenet_v1_075"], explainer.labels.num_logits), layer=EARLIER_LAYER)
    with graph.graph.as_default():
        session = tf.Session()
        tf.train.Saver().restore(session, explainer.checkpoint)
    yield graph, session
    session.close()


def test_maps_at_an_earlier_layer_equal_an_independent_computation(
        earlier_layer, reference, cat_dog, explained):
    graph, session = earlier_layer
    ref_session, images, label, tensors = reference["relu6"]
    for explanation in explained:
        cam_lowres, cam, gbp = session.run(
            [graph.cam_lowres, graph.cam, graph.gbp],
            {graph.images: cat_dog[None], graph.labels: [explanation.label]})
        activations, grads = ref_session.run(
            [tensors["earlier"], tensors["earlier_grad"]],
            {images: cat_dog[None], label: explanation.label})

        def weighted(alpha):
            return np.maximum((alpha * activations).sum(-1), 0)[0]
        expected = weighted(grads.mean(axis=(1, 2), keepdims=True))
        assert expected.shape == (14, 14) and expected.max() > 0
        np.testing.assert_allclose(cam_lowres[0], expected, rtol=1e-4, atol=1e-4 * expected.max())
        # The gradient varies in space here: α averaged over rows or columns only differs.
        for axis in (1, 2):
            one_axis = weighted(grads.mean(axis=axis, keepdims=True))
            assert np.abs(one_axis - expected).max() > 0.05 * expected.max(), axis
        upsampled = bilinear_half_pixel(cam_lowres[0], 224, 224)
        np.testing.assert_allclose(cam[0], upsampled / upsampled.max(), atol=1e-5)
        # GBP does not depend on the layer, but here it comes from the two-pass path.
        _assert_gbp_equals_the_reference(gbp[0], reference, cat_dog, explanation.label)
