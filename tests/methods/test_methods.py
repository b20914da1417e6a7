"""The CAM methods (guided_gradcam.methods): each formula against values worked out by hand, and the
properties that tie the methods together on real graphs.

Hand-computed cases use 2x2 maps, written one channel at a time; the expected numbers are
worked in the comments beside them. The properties: HiResCAM and XGrad-CAM equal Grad-CAM
where ∂y/∂A is constant in space (MobileNet's and ResNet-50's default layers, reached through
global average pooling and a linear map) and differ on VGG-16 (fc6/fc7 between conv5_3 and the
logits); LayerCAM equals HiResCAM where g ≥ 0; every method is zero for A = 0; a counterfactual
negates g for every method; an image's maps do not depend on the rest of its batch.
"""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from guided_gradcam.methods import REGISTRY

from guided_gradcam import load_photo
from guided_gradcam.explainer import session_config
from guided_gradcam.graph import build_explanation_graph
from guided_gradcam.zoo.networks import NETWORKS
from guided_gradcam.sources.slim import SlimSource
from helpers import KERNEL, TOY, bilinear_half_pixel, toy_images as _toy_images

METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam")
SEED = 0


def _evaluate(method, activations, grads):
    """The registered `method` on constant A and g ([B, h, w, K]), run in a session of its own."""
    with tf.Graph().as_default(), tf.Session() as session:
        return session.run(REGISTRY[method].lowres(
            tf.constant(activations, tf.float32), tf.constant(grads, tf.float32)))


def _channels(*maps):
    """One image's [h, w, K] from its K channel maps, each [h, w] (readable hand arrays)."""
    return np.stack(maps, axis=-1).astype(np.float32)


def _assert_equal_maps(actual, expected, rtol=1e-5):
    """Equal within rtol of the expected map's peak; the peak must be positive, or equality
    of two all-zero maps would prove nothing."""
    peak = np.abs(expected).max()
    assert peak > 0, "an all-zero map cannot show the property"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * peak)


def test_the_family_has_five_methods():
    """The five of (A, g); the attention maps of a transformer follow (tests/sources/
    test_vit.py)."""
    assert tuple(REGISTRY) == METHODS + ("rollout", "gradattention")


# -- hand-computed values -----------------------------------------------------------------------

# Two images (the weights are per image: pooling over the batch would change every number),
# three channels; channel 2 of image 0 is all zero (XGrad-CAM's Σ_ab A_ab = 0).
HAND_A = np.stack([
    _channels([[1, 2], [3, 4]], [[0, 1], [2, 0]], [[0, 0], [0, 0]]),
    _channels([[2, 0], [0, 2]], [[1, 1], [1, 1]], [[0, 0], [0, 3]]),
])
HAND_G = np.stack([
    _channels([[1, -1], [2, 0]], [[-2, 1], [0, -3]], [[5, 5], [5, 5]]),
    _channels([[1, 3], [-1, 1]], [[-1, -1], [-1, -1]], [[0, 0], [0, 2]]),
])
HAND_EXPECTED = {
    # w_k = mean_ij g: image 0: w = (0.5, -1, 5); L = 0.5 A0 - A1 (A2 = 0):
    #   [[0.5 - 0, 1 - 1], [1.5 - 2, 2 - 0]] = [[0.5, 0], [-0.5, 2]] → ReLU.
    # image 1: w = (4/4, -4/4, 2/4) = (1, -1, 0.5); L = A0 - A1 + 0.5 A2:
    #   [[2 - 1, 0 - 1], [0 - 1, 2 - 1 + 1.5]] = [[1, -1], [-1, 2.5]] → ReLU.
    "gradcam": [[[0.5, 0], [0, 2]], [[1, 0], [0, 2.5]]],
    # w_k = Σ_ij A g / Σ_ab A: image 0: Σ A = (10, 3, 0);
    #   w0 = (1·1 + 2·(-1) + 3·2 + 4·0) / 10 = 0.5, w1 = (1·1) / 3 = 1/3, w2 = 0 (all-zero
    #   channel; 0/0 must not become NaN). L = 0.5 A0 + A1 / 3 = [[0.5, 1 + 1/3], [1.5 + 2/3, 2]].
    # image 1: Σ A = (4, 4, 3); w0 = (2·1 + 2·1) / 4 = 1, w1 = -4 / 4 = -1, w2 = 3·2 / 3 = 2;
    #   L = A0 - A1 + 2 A2 = [[1, -1], [-1, 2 - 1 + 6]] → ReLU.
    "xgradcam": [[[0.5, 4 / 3], [13 / 6, 2]], [[1, 0], [0, 7]]],
    # L_ij = Σ_k ReLU(g) A: image 0: [[1·1 + 0, 0·2 + 1·1], [2·3 + 0·2, 0 + 0]];
    # image 1: [[1·2, 3·0], [0·0, 1·2 + 2·3]] (channel 1's g < 0 drops out).
    "layercam": [[[1, 1], [6, 0]], [[2, 0], [0, 8]]],
    # L_ij = ReLU(Σ_k g A): image 0: [[1·1 - 2·0, -1·2 + 1·1], [2·3 + 0·2, 0·4 - 3·0]]
    #   = [[1, -1], [6, 0]]; image 1: [[2 - 1, 0 - 1], [0 - 1, 2 - 1 + 6]] = [[1, -1], [-1, 7]].
    "hirescam": [[[1, 0], [6, 0]], [[1, 0], [0, 7]]],
}


@pytest.mark.parametrize("method", sorted(HAND_EXPECTED))
def test_method_equals_hand_computed_values(method):
    actual = _evaluate(method, HAND_A, HAND_G)
    assert np.isfinite(actual).all()
    np.testing.assert_allclose(actual, np.array(HAND_EXPECTED[method]), rtol=1e-6, atol=1e-7)


def test_gradcampp_equals_hand_computed_values_with_zero_denominators():
    # a_ij = g² / (2 g² + S g³), S = Σ_ab A of the channel; 0 where the denominator is 0.
    activations = np.stack([
        # image 0: channel 0 has S = 4, channel 1 S = -4 (a layer before its ReLU)
        _channels([[1, 0], [2, 1]], [[-1, -2], [0, -1]]),
        # image 1: S = (2, 2)
        _channels([[1, 1], [1, -1]], [[0, 0], [0, 2]]),
    ])
    grads = np.stack([
        _channels([[1, -0.5], [0, 2]], [[0.5, 1], [-1, 0.25]]),
        _channels([[1, 1], [1, 1]], [[-1, -1], [-1, 1]]),
    ])
    # image 0, channel 0 (S = 4):
    #   g = 1:    a = 1 / (2 + 4) = 1/6,                  a·ReLU(g) = 1/6
    #   g = -0.5: denominator 0.5 + 4·0.25·(-0.5) = 0 → a = 0 (ReLU(g) = 0: NaN without care)
    #   g = 0:    0 / 0 → a = 0
    #   g = 2:    a = 4 / (8 + 4·8) = 0.1,               a·ReLU(g) = 0.2
    #   w0 = 1/6 + 1/5 = 11/30
    # image 0, channel 1 (S = -4):
    #   g = 0.5:  denominator 0.5 - 4·0.25·0.5 = 0 → a = 0, though ReLU(g) = 0.5 (inf without care)
    #   g = 1:    a = 1 / (2 - 4) = -1/2,                 a·ReLU(g) = -1/2
    #   g = -1:   a = 1 / (2 + 4) = 1/6,                  a·ReLU(g) = 0
    #   g = 0.25: a = 0.0625 / (0.125 - 0.0625) = 1,      a·ReLU(g) = 0.25
    #   w1 = -1/4
    #   L = 11/30 A0 - 1/4 A1 = [[11/30 + 1/4, 0 + 1/2], [22/30 + 0, 11/30 + 1/4]]
    # image 1, channel 0 (S = 2): g = 1 everywhere: a = 1 / (2 + 2) = 1/4, w0 = 4 · 1/4 = 1
    # image 1, channel 1 (S = 2): g = -1: denominator 2 - 2 = 0 → a = 0; g = 1: a = 1/4; w1 = 1/4
    #   L = A0 + A1 / 4 = [[1, 1], [1, -1 + 0.5]] → ReLU
    expected = np.array([[[37 / 60, 1 / 2], [11 / 15, 37 / 60]],
                         [[1, 1], [1, 0]]])
    actual = _evaluate("gradcampp", activations, grads)
    assert np.isfinite(actual).all()
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_zero_for_all_zero_activations(method):
    rng = np.random.default_rng(SEED)
    grads = rng.normal(size=(2, 3, 3, 4))
    grads[rng.random(grads.shape) < 0.3] = 0.0  # g = 0 gives 0/0 in Grad-CAM++
    actual = _evaluate(method, np.zeros_like(grads), grads)
    assert np.isfinite(actual).all() and not actual.any()


def test_layercam_equals_hirescam_where_the_gradient_is_nonnegative():
    rng = np.random.default_rng(SEED)
    activations = rng.normal(size=(2, 3, 3, 4))  # both signs: LayerCAM's ReLU(g)·A, not ReLU(A)
    grads = np.abs(rng.normal(size=activations.shape))
    grads[rng.random(grads.shape) < 0.2] = 0.0
    assert (grads >= 0).all()
    _assert_equal_maps(_evaluate("layercam", activations, grads),
                       _evaluate("hirescam", activations, grads), rtol=1e-6)
    # The same A with g of both signs: the two must differ, or the equality shows nothing.
    mixed = grads - 0.5
    layercam = _evaluate("layercam", activations, mixed)
    hirescam = _evaluate("hirescam", activations, mixed)
    assert np.abs(layercam - hirescam).max() > 0.1 * hirescam.max()


# -- the explanation graph on a toy network whose ∂y/∂A varies in space ------------------------

def _toy_weights(seed, nonnegative):
    rng = np.random.default_rng(seed)
    w_hidden = rng.normal(size=(64, 6)).astype(np.float32)
    w_logits = rng.normal(size=(6, 3)).astype(np.float32)
    return (np.abs(w_hidden), np.abs(w_logits)) if nonnegative else (w_hidden, w_logits)


def _spatial_toy(w_hidden, w_logits):
    """test_exact_maps' toy conv, then flatten → dense → ReLU → dense: unlike the average pool,
    the flatten gives every position of A its own gradient, and the hidden ReLU lies between A
    and the logits (the graph's two-pass path)."""
    def build(images, num_classes):
        features = tf.nn.relu(tf.nn.conv2d(images, KERNEL, strides=2, padding="SAME"))
        hidden = tf.nn.relu(tf.matmul(tf.reshape(features, [-1, 4 * 4 * 4]), w_hidden))
        return tf.matmul(hidden, w_logits[:, :num_classes]), {"features": features}
    return dataclasses.replace(TOY, name="spatial_toy", build=build)


def _hand_gradient(activations, labels, w_hidden, w_logits):
    """The plain ∂y^c/∂A of the spatial toy, per image, written out: A [B, 4, 4, 4]."""
    grads = []
    for features, label in zip(activations, labels):
        pre_hidden = features.reshape(-1) @ w_hidden
        upstream = w_logits[:, label] * (pre_hidden > 0)  # through the hidden ReLU
        grads.append((w_hidden @ upstream).reshape(features.shape))
    return np.stack(grads)


def _toy_graph(nonnegative):
    weights = _toy_weights(SEED, nonnegative)
    graph = build_explanation_graph(SlimSource(_spatial_toy(*weights), 3))
    session = tf.Session(graph=graph.graph)
    yield SimpleNamespace(graph=graph, session=session, weights=weights)
    session.close()


@pytest.fixture(scope="module")
def toy():
    yield from _toy_graph(nonnegative=False)


@pytest.fixture(scope="module")
def nonnegative_toy():
    """All weights after A are ≥ 0, so ∂y/∂A ≥ 0 everywhere."""
    yield from _toy_graph(nonnegative=True)


def _run_toy(toy, images, labels, counterfactual=False):
    graph = toy.graph
    return toy.session.run(
        {"A": graph.activations, "targets": graph.targets, "gbp": graph.gbp,
         "methods": {method: graph.methods[method] for method in METHODS}},
        {graph.images: images, graph.labels: labels, graph.counterfactual: counterfactual})


def _assert_guided_is_gbp_times_the_normalised_upsampled_map(maps, gbp, height, width):
    """cam = the half-pixel bilinear upsampling of lowres over its max (all zero for an
    all-zero lowres); guided = gbp ⊙ cam. Returns how many images' maps were not all zero."""
    lowres, cam, guided = maps
    np.testing.assert_allclose(guided, gbp * cam[..., None], rtol=1e-6, atol=0)
    nonzero = 0
    for image_lowres, image_cam in zip(lowres, cam):
        upsampled = bilinear_half_pixel(image_lowres, height, width)
        if upsampled.max() > 0:
            np.testing.assert_allclose(image_cam, upsampled / upsampled.max(), rtol=0, atol=1e-5)
            nonzero += 1
        else:
            assert np.isfinite(image_cam).all() and not image_cam.any()
    return nonzero


def test_toy_gradient_varies_in_space(toy):
    # What makes the toy tell Grad-CAM's spatial mean from the per-position methods.
    out = _run_toy(toy, _toy_images(1, 4), np.array([0, 1, 2, -1], np.int32))
    grads = _hand_gradient(out["A"], out["targets"], *toy.weights)
    spread = grads.max(axis=(1, 2)) - grads.min(axis=(1, 2))  # per image and channel
    assert (spread > 0.1 * np.abs(grads).max()).all()


@pytest.mark.parametrize("counterfactual", [False, True])
def test_toy_maps_are_the_functions_of_a_and_the_signed_plain_gradient(toy, counterfactual):
    images, labels = _toy_images(1, 4), np.array([0, 1, 2, -1], np.int32)
    out = _run_toy(toy, images, labels, counterfactual)
    grads = _hand_gradient(out["A"], out["targets"], *toy.weights)
    sign = -1.0 if counterfactual else 1.0
    nonzero = 0
    for method in METHODS:
        lowres = out["methods"][method].lowres
        expected = _evaluate(method, out["A"], sign * grads)
        _assert_equal_maps(lowres, expected)
        # g and -g must give clearly different maps, or the sign would go unnoticed.
        other = _evaluate(method, out["A"], -sign * grads)
        assert np.abs(other - expected).max() > 0.1 * np.abs(expected).max(), method
        nonzero += _assert_guided_is_gbp_times_the_normalised_upsampled_map(
            out["methods"][method], out["gbp"], 8, 8)
    # All-zero maps cannot show the upsampling: nearly all of the 5 x 4 must not be.
    assert nonzero >= 18, nonzero


def test_toy_layercam_equals_hirescam_where_the_gradient_is_nonnegative(toy, nonnegative_toy):
    images, labels = _toy_images(2, 4), np.array([0, 1, 2, -1], np.int32)
    out = _run_toy(nonnegative_toy, images, labels)
    grads = _hand_gradient(out["A"], out["targets"], *nonnegative_toy.weights)
    assert (grads >= 0).all() and grads.max() > 0
    _assert_equal_maps(out["methods"]["layercam"].lowres, out["methods"]["hirescam"].lowres)
    # The toy with weights of both signs has g < 0 somewhere, and there the two differ.
    mixed = _run_toy(toy, images, labels)["methods"]
    hirescam = mixed["hirescam"].lowres
    assert np.abs(mixed["layercam"].lowres - hirescam).max() > 0.1 * hirescam.max()


def test_toy_maps_of_a_black_image_are_zero_for_every_method(toy):
    # The toy's conv has no bias: a black image gives A = 0 at the layer.
    out = _run_toy(toy, np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 1], np.int32))
    assert not out["A"].any()
    for method in METHODS:
        for array in out["methods"][method]:
            assert np.isfinite(array).all() and not array.any(), method


# -- real networks --------------------------------------------------------------------------

TIGER_CAT, BULL_MASTIFF = 282, 243


@pytest.fixture(scope="module")
def cat_dog(explainer, cat_dog_path):
    return explainer.fit(load_photo(cat_dog_path))[0]


@pytest.fixture(scope="module")
def mobilenet_batch(explainer, cat_dog):
    """Three different images, each with its own label, explained by every method in one
    batch: random noise (its top-1 class), the cat_dog photo as 'tiger cat', and the photo
    upside down as 'bull mastiff'."""
    noise = np.random.default_rng(SEED).integers(0, 256, size=cat_dog.shape).astype(np.uint8)
    images = np.stack([noise, cat_dog, cat_dog[::-1]])
    labels = [None, TIGER_CAT, BULL_MASTIFF]
    return SimpleNamespace(images=images, labels=labels,
                           explained=explainer.explain(images, labels, methods=METHODS))


def test_mobilenet_hirescam_and_xgradcam_equal_gradcam_at_the_default_layer(mobilenet_batch):
    # Conv2d_13_pointwise reaches the logits through a 7x7 average pool and a 1x1 conv:
    # g^k_ij = W_kc / 49 at every position, so both equal Grad-CAM.
    for explanation in mobilenet_batch.explained:
        gradcam = explanation.methods["gradcam"]
        for method in ("hirescam", "xgradcam"):
            _assert_equal_maps(explanation.methods[method].lowres, gradcam.lowres)
            np.testing.assert_allclose(explanation.methods[method].cam, gradcam.cam, atol=1e-5)


def test_mobilenet_guided_maps_are_gbp_times_the_normalised_upsampled_map(mobilenet_batch):
    for explanation in mobilenet_batch.explained:
        for method in METHODS:
            maps = explanation.methods[method]
            assert _assert_guided_is_gbp_times_the_normalised_upsampled_map(
                [array[None] for array in maps], explanation.gbp[None], 224, 224) == 1, method


def test_an_images_maps_do_not_depend_on_the_rest_of_its_batch(explainer, mobilenet_batch):
    batch = mobilenet_batch.explained
    for index in (1, 2):  # not first in the batch
        image, label = mobilenet_batch.images[index], mobilenet_batch.labels[index]
        alone, = explainer.explain(image[None], [label], methods=METHODS)
        in_batch = batch[index]
        assert alone.label == in_batch.label == label
        for method in METHODS:
            for name, actual, expected in zip(("lowres", "cam", "guided"),
                                              in_batch.methods[method], alone.methods[method]):
                # Bit-equal here; 1e-5 of the peak leaves room for a batch's convolutions
                # summing in another order than one image's.
                _assert_equal_maps(actual, expected)
                # The other images' maps differ: mixing them in would show.
                for other in set(range(len(batch))) - {index}:
                    neighbour = batch[other].methods[method]._asdict()[name]
                    assert np.abs(neighbour - expected).max() > 0.1 * np.abs(expected).max(), \
                        (method, name, other)


def _seeded_source(name):
    """`name`'s slim network with random weights: seeded before the first weight exists in
    the explanation graph, so every build draws the same weights."""
    spec = NETWORKS[name]

    def build(images, num_classes):
        tf.set_random_seed(SEED)
        return spec.build(images, num_classes)
    return SlimSource(dataclasses.replace(spec, build=build), 1000)


def _random_network(name):
    graph = build_explanation_graph(_seeded_source(name))
    with graph.graph.as_default():
        initialise = tf.global_variables_initializer()
    session = tf.Session(graph=graph.graph, config=session_config())
    session.run(initialise)
    photo = np.random.default_rng(SEED).integers(0, 256, size=(224, 224, 3)).astype(np.uint8)
    # One photo, explained for its top-1 class and for 'bull mastiff'.
    lowres, targets = session.run(
        [{method: graph.methods[method].lowres for method in METHODS}, graph.targets],
        {graph.images: np.stack([photo, photo]), graph.labels: [-1, BULL_MASTIFF]})
    session.close()
    assert targets[0] != targets[1], "the two targets must be different classes"
    return lowres


@pytest.fixture(scope="module")
def resnet_v1_50_maps():
    return _random_network("resnet_v1_50")


@pytest.fixture(scope="module")
def vgg_16_maps():
    return _random_network("vgg_16")


def test_resnet_hirescam_and_xgradcam_equal_gradcam_at_the_default_layer(resnet_v1_50_maps):
    # block4 reaches the logits through the global average pool and a 1x1 conv.
    gradcam = resnet_v1_50_maps["gradcam"]
    for method in ("hirescam", "xgradcam"):
        for image in range(2):
            _assert_equal_maps(resnet_v1_50_maps[method][image], gradcam[image])


def test_vgg_hirescam_differs_from_gradcam(vgg_16_maps):
    # fc6 (a 7x7 conv over pool5) and fc7 with their ReLUs lie between conv5_3 and the logits:
    # ∂y/∂A varies in space, and HiResCAM's per-position weights give another map.
    gradcam, hirescam, xgradcam = (vgg_16_maps[method] for method in
                                   ("gradcam", "hirescam", "xgradcam"))
    for image in range(2):
        peak = max(gradcam[image].max(), hirescam[image].max())
        assert peak > 0
        difference = np.abs(hirescam[image] - gradcam[image]).max() / peak
        assert difference > 0.5, (image, difference)
        # XGrad-CAM's A-weighted mean of g stays nearer the plain mean (1-6% here), but far
        # beyond the 1e-5 that the equalities at MobileNet's and ResNet's layers allow.
        difference = np.abs(xgradcam[image] - gradcam[image]).max() / peak
        assert difference > 1e-3, (image, difference)
