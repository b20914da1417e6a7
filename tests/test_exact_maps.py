"""Grad-CAM's α uses the plain gradient even though the network is built under the override.

A toy network with a ReLU between A and the logits (as VGG's fc6/fc7) pins the formula with
hand-computed gradients; VGG-16 itself is compared with the same network built without any
override.
"""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from guided_gradcam.graph import build_explanation_graph
from guided_gradcam.networks import NETWORKS, NetworkSpec

RNG = np.random.default_rng(7)
KERNEL = RNG.normal(size=(3, 3, 3, 4)).astype(np.float32)
W_HIDDEN = RNG.normal(size=(4, 6)).astype(np.float32)
W_LOGITS = RNG.normal(size=(6, 3)).astype(np.float32)


def _toy_build(images, num_classes):
    features = tf.nn.relu(tf.nn.conv2d(images, KERNEL, strides=2, padding="SAME"))
    pre_hidden = tf.matmul(tf.reduce_mean(features, axis=[1, 2]), W_HIDDEN)
    logits = tf.matmul(tf.nn.relu(pre_hidden), W_LOGITS[:, :num_classes])
    return logits, {"features": features}


TOY = NetworkSpec(
    name="toy", build=_toy_build, preprocess=lambda rgb: rgb / 255.0, preprocessing_name="/255",
    input_size=(8, 8), default_layer="features", logits_variable="", archive="",
    checkpoint_name="")


def _hand_computed_cam(features, label, guided_tail=False, sign=1.0):
    """ReLU(Σ_k α_k A^k) with ∂y/∂A written out for mean-pool → dense → ReLU → dense."""
    pooled = features.mean(axis=(0, 1))
    pre_hidden = pooled @ W_HIDDEN
    upstream = W_LOGITS[:, label] * (pre_hidden > 0)  # ∂y/∂pre_hidden through the ReLU
    if guided_tail:
        upstream = upstream * (upstream > 0)  # what a guided ReLU would do there
    grad_per_position = W_HIDDEN @ upstream / (features.shape[0] * features.shape[1])
    alpha = sign * grad_per_position  # the gradient is the same at every position
    return np.maximum((features * alpha).sum(axis=-1), 0.0)


def bilinear_half_pixel(image, height, width):
    """Bilinear upsampling with pixel centres at (i + 0.5), edges clamped, written out."""
    def weights(size_in, size_out):
        source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, size_in - 1)
        matrix = np.zeros((size_out, size_in))
        matrix[np.arange(size_out), low] += 1 - (source - low)
        matrix[np.arange(size_out), high] += source - low
        return matrix
    return weights(image.shape[0], height) @ image @ weights(image.shape[1], width).T


@pytest.fixture(scope="module")
def toy():
    graph = build_explanation_graph(TOY, 3)
    session = tf.Session(graph=graph.graph)
    yield graph, session
    session.close()


def _run(toy, images, labels, counterfactual=False):
    graph, session = toy
    return session.run(
        {"A": graph.activations, "cam_lowres": graph.cam_lowres, "cam": graph.cam,
         "gbp": graph.gbp, "guided_gradcam": graph.guided_gradcam, "targets": graph.targets},
        {graph.images: images, graph.labels: labels, graph.counterfactual: counterfactual})


def test_toy_cam_matches_the_hand_computed_plain_gradient(toy):
    images = RNG.integers(0, 256, size=(4, 8, 8, 3)).astype(np.uint8)
    labels = np.array([0, 1, 2, -1], np.int32)
    out = _run(toy, images, labels)
    differences = 0
    for b in range(4):
        label = out["targets"][b]
        expected = _hand_computed_cam(out["A"][b], label)
        np.testing.assert_allclose(out["cam_lowres"][b], expected, rtol=1e-5, atol=1e-6)
        naive = _hand_computed_cam(out["A"][b], label, guided_tail=True)
        differences += not np.allclose(naive, expected, rtol=1e-3)
    assert differences > 0, "the data must make guided and plain α differ, or this proves nothing"


def test_toy_counterfactual_negates_alpha(toy):
    images = RNG.integers(0, 256, size=(2, 8, 8, 3)).astype(np.uint8)
    labels = np.array([1, 2], np.int32)
    out = _run(toy, images, labels, counterfactual=True)
    for b in range(2):
        expected = _hand_computed_cam(out["A"][b], labels[b], sign=-1.0)
        np.testing.assert_allclose(out["cam_lowres"][b], expected, rtol=1e-5, atol=1e-6)


def test_guided_gradcam_is_gbp_times_normalised_upsampled_cam(toy):
    images = RNG.integers(0, 256, size=(3, 8, 8, 3)).astype(np.uint8)
    out = _run(toy, images, np.array([0, 1, 2], np.int32))
    np.testing.assert_allclose(out["guided_gradcam"], out["gbp"] * out["cam"][..., None], rtol=1e-6)
    for b in range(3):
        if out["cam_lowres"][b].max() > 0:
            assert out["cam"][b].max() == pytest.approx(1.0)
            upsampled = bilinear_half_pixel(out["cam_lowres"][b], 8, 8)
            np.testing.assert_allclose(out["cam"][b], upsampled / upsampled.max(), rtol=1e-5)


def test_an_all_zero_map_normalises_to_zeros_not_nan(toy):
    out = _run(toy, np.zeros((1, 8, 8, 3), np.uint8), np.array([0], np.int32))
    assert not out["A"].any()
    assert np.isfinite(out["cam"]).all() and not out["cam"].any()
    assert np.isfinite(out["guided_gradcam"]).all()


# -- VGG-16: fc6/fc7 ReLUs lie between conv5_3 and the logits ---------------------------------

@pytest.fixture(scope="module")
def vgg_pair(tmp_path_factory):
    """The toolkit's VGG-16 graph and a plain copy (no override) with the same random weights."""
    spec = NETWORKS["vgg_16"]
    explained = build_explanation_graph(spec, 1000)
    prefix = str(tmp_path_factory.mktemp("vgg") / "vgg_16.ckpt")
    with explained.graph.as_default():
        tf.set_random_seed(0)
        session = tf.Session()
        session.run(tf.global_variables_initializer())
        tf.train.Saver().save(session, prefix, write_meta_graph=False)

    plain = tf.Graph()
    with plain.as_default():
        images = tf.placeholder(tf.uint8, [None, 224, 224, 3])
        logits, end_points = spec.build(spec.preprocess(tf.cast(images, tf.float32)), 1000)
        label = tf.placeholder(tf.int32, [])
        conv5 = end_points["vgg_16/conv5/conv5_3"]
        plain_grad = tf.gradients(tf.reduce_sum(logits[:, label]), conv5)[0]
        plain_session = tf.Session()
        tf.train.Saver().restore(plain_session, prefix)
    yield explained, session, (images, label, logits, conv5, plain_grad, plain_session)
    session.close()
    plain_session.close()


def test_vgg_cam_uses_plain_gradients_through_fc_relus(vgg_pair):
    explained, session, (images, label, logits, conv5, plain_grad, plain_session) = vgg_pair
    photo = np.random.default_rng(3).integers(0, 256, size=(1, 224, 224, 3)).astype(np.uint8)
    predicted = int(plain_session.run(logits, {images: photo}).argmax())
    with explained.graph.as_default():
        naive_grad = tf.gradients(  # everything under the override: fc6/fc7 guided
            tf.reduce_sum(tf.gather(explained.logits, explained.targets, axis=1, batch_dims=1)),
            explained.activations)[0]
    for target in (predicted, 243):
        cam, activations, naive = session.run(
            [explained.cam_lowres, explained.activations, naive_grad],
            {explained.images: photo, explained.labels: [target]})
        grads = plain_session.run(plain_grad, {images: photo, label: target})
        expected = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * activations).sum(-1), 0)
        np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-5 * expected.max())
        naive_cam = np.maximum((naive.mean(axis=(1, 2), keepdims=True) * activations).sum(-1), 0)
        alpha, naive_alpha = grads.mean(axis=(1, 2)), naive.mean(axis=(1, 2))
        error = np.abs(naive_alpha - alpha).max() / np.abs(alpha).max()
        print("class %d: naive guided alpha differs by %.1f%% of max |alpha|" % (target, 100 * error))
        assert error > 0.05
        assert not np.allclose(naive_cam, expected, rtol=1e-2)


def test_default_target_skips_a_background_logit():
    def build_with_loud_background(images, num_classes):
        logits, end_points = _toy_build(images, num_classes)
        return logits + tf.constant([100.0, 0.0, 0.0]), end_points  # logit 0 always wins

    spec = NetworkSpec(**{**TOY.__dict__, "build": build_with_loud_background})
    images = RNG.integers(0, 256, size=(3, 8, 8, 3)).astype(np.uint8)
    for background, expected_floor in ((0, 0), (1, 1)):
        graph = build_explanation_graph(spec, 3, background_logits=background)
        with tf.Session(graph=graph.graph) as session:
            targets, logits = session.run([graph.targets, graph.logits],
                                          {graph.images: images, graph.labels: [-1, -1, -1]})
        assert (targets >= expected_floor).all()
        np.testing.assert_array_equal(targets, background + logits[:, background:].argmax(1))


def test_relus_between_the_layer_and_the_logits_are_found():
    from guided_gradcam.graph import relus_between

    toy = build_explanation_graph(TOY, 3)
    assert len(relus_between(toy.activations, toy.logits)) == 1  # the hidden dense layer's
    for network, expected in (("vgg_16", 2), ("mobilenet_v1_075", 0), ("resnet_v1_50", 0)):
        graph = build_explanation_graph(NETWORKS[network], 1000)
        found = relus_between(graph.activations, graph.logits)
        assert len(found) == expected, (network, found)
