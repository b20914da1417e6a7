"""The real ImageNet MobileNet V1 0.75 (converted from ../shared) end to end through the API."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf
import tf_slim as slim

from guided_gradcam import load_photo
from guided_gradcam.networks import NETWORKS
from models import mobilenet_v1

# Keras on the same weights, centre crop + resize to 224 (../shared/README.md).
KERAS_TOP5 = [(282, 0.490), (243, 0.349), (292, 0.056), (281, 0.040), (242, 0.032)]
TIGER_CAT, BULL_MASTIFF = 282, 243


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
    from test_exact_maps import bilinear_half_pixel

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
            layer = end_points["Conv2d_13_pointwise"]
            objective = tf.reduce_sum(logits[:, label])
            session = tf.Session()
            tf.train.Saver().restore(session, explainer.checkpoint)
        tensors = (layer, tf.gradients(objective, layer)[0], tf.gradients(objective, net_input)[0])
        references[activation.__name__] = (session, images, label, tensors)
    yield references
    for session, *_ in references.values():
        session.close()


def test_maps_equal_an_independent_computation(reference, cat_dog, explained):
    session, images, label, (layer, layer_grad, _) = reference["relu6"]
    guided_session, g_images, g_label, (_, _, input_grad) = reference["_guided_relu6"]
    for explanation in explained:
        activations, grads = session.run(
            [layer, layer_grad], {images: cat_dog[None], label: explanation.label})
        alpha = grads.mean(axis=(1, 2), keepdims=True)
        expected_cam = np.maximum((alpha * activations).sum(-1), 0)[0]
        np.testing.assert_allclose(explanation.cam_lowres, expected_cam, rtol=1e-4,
                                   atol=1e-4 * expected_cam.max())
        gbp = guided_session.run(input_grad, {g_images: cat_dog[None], g_label: explanation.label})[0]
        assert np.abs(gbp).max() > 0
        # The toolkit's forward pass runs Conv2D + BatchNorm + ReLU6 as one fused kernel (its
        # backward pass never reads a pre-activation); the reference's does not, so the two
        # round differently and a gate within rounding of 0 or 6 may flip. Such flips stay
        # rare and small: no element off by 0.1% of the peak, fewer than 0.1% off by 0.01%.
        np.testing.assert_allclose(explanation.gbp, gbp, atol=1e-3 * np.abs(gbp).max())
        off = ~np.isclose(explanation.gbp, gbp, rtol=1e-4, atol=1e-4 * np.abs(gbp).max())
        assert off.mean() < 1e-3, off.mean()
