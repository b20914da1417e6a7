"""Score-CAM, Ablation-CAM, Eigen-CAM, EigenGrad-CAM and the smoothing options against
independent references: eager loops of one forward pass per channel on a small network
(tf.image.resize for the masks, the network's tail called on ablated activations), numpy SVD
for the Eigen methods, GradientTape for the gradients; and hand-worked cases of the weights.

The small network: a 3x3 stride-2 conv with ReLU (A: 8x8x6 from a 16x16 input), then a
hidden layer with ReLU on A's spatial mean, then 3 logits; its "skip" variant also adds a
linear map of the input's mean to the logits, so its tail reads the input beside A.
"""
import io
import re
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf2
import tensorflow.compat.v1 as tf

from guided_gradcam.core.tf_eager import eager
from guided_gradcam.explainer import GuidedGradCam
from guided_gradcam import channel_maps, forward_passes
from guided_gradcam.forward_passes import PassProgress
from guided_gradcam.methods import REGISTRY
from guided_gradcam.methods import ablationcam, scorecam
from guided_gradcam.smoothing import AUGMENTATIONS
from guided_gradcam.sources.slim import SlimSource
from guided_gradcam.zoo.networks import NetworkSpec

SIZE = 16
_rng = np.random.default_rng(11)
CONV = _rng.normal(size=(3, 3, 3, 6)).astype(np.float32)
HIDDEN = _rng.normal(size=(6, 5)).astype(np.float32)
OUT = _rng.normal(size=(5, 3)).astype(np.float32)
SKIP = _rng.normal(size=(3, 3)).astype(np.float32) * 4.0
LABELS = [2, 0, 1]
GRADIENT_FREE = ("scorecam", "ablationcam", "eigencam", "eigengradcam")


def features_of(x):
    return tf.nn.relu(tf.nn.conv2d(x, CONV, strides=2, padding="SAME"))


def tail(features, x, skip):
    logits = tf.matmul(tf.nn.relu(tf.matmul(tf.reduce_mean(features, axis=[1, 2]), HIDDEN)), OUT)
    if skip:
        logits += tf.matmul(tf.reduce_mean(x, axis=[1, 2]), SKIP)
    return logits


def _spec(skip):
    def build(images, num_classes):
        features = features_of(images)
        return tail(features, images, skip), {"features": features}
    return NetworkSpec(
        name="small", build=build, preprocess=lambda rgb: rgb / 255.0, preprocessing_name="/255",
        input_size=(SIZE, SIZE), default_layer="features", logits_variable="", archive="",
        checkpoint_name="")


def _images(seed, count=3):
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3)).astype(np.uint8)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "skip"])
def small(request):
    skip = request.param
    explainer = GuidedGradCam(SlimSource(_spec(skip), 3), batch_size=5, score_cam_channels=None)
    yield SimpleNamespace(explainer=explainer, skip=skip, images=_images(1))
    explainer.close()


def _assert_maps_equal(actual, expected, fraction=1e-4):
    """Within `fraction` of the expected map's peak; the peak must be positive. Measured in
    both of CI's regimes (oneDNN, and plain kernels on one thread): at most 2.4 % of the
    allowance (1e-6 of the peak against the references, 2.4e-7 between batchings)."""
    peak = np.abs(expected).max()
    assert peak > 0, "an all-zero map cannot show anything"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=fraction * peak)


# -- eager references ---------------------------------------------------------------------------

def eagerly(function):
    """Runs a reference eagerly, whatever mode the test process is in (TF 1 graph mode)."""
    def run(*args, **kwargs):
        with eager():
            return function(*args, **kwargs)
    return run


def _inputs(images):
    return tf2.constant(images.astype(np.float32) / 255.0)


def _mask(channel_map):
    """The channel map resized to the input by TF2's bilinear (half-pixel centres), min-max
    normalised to [0, 1] (0 for a constant map)."""
    up = tf2.image.resize(channel_map[None, :, :, None], (SIZE, SIZE), "bilinear").numpy()[0]
    spread = up.max() - up.min()
    return (up - up.min()) / spread if spread > 0 else np.zeros_like(up)


@eagerly
def scorecam_reference(images, labels, skip, channels=None, counterfactual=False,
                       with_weights=False):
    """Score-CAM's maps [B, h, w] (and with_weights: its weights [B, K], 0 where not chosen)."""
    x = _inputs(images)
    activations = features_of(x).numpy()
    maps, every_weight = [], np.zeros(activations.shape[::3])
    for b, label in enumerate(labels):
        a = activations[b]
        order = range(a.shape[-1])
        if channels is not None:
            variance = [a[:, :, k].var() for k in order]
            order = sorted(sorted(order, key=lambda k: -variance[k])[:channels])
        scores = []
        for k in order:  # one forward pass of the whole network per channel
            masked = x[b:b + 1] * _mask(a[:, :, k])
            scores.append(tail(features_of(masked), masked, skip).numpy()[0, label])
        scores = -np.array(scores) if counterfactual else np.array(scores)
        weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        every_weight[b, list(order)] = weights
        maps.append(np.maximum(sum(w * a[:, :, k] for w, k in zip(weights, order)), 0))
    return (np.array(maps), every_weight) if with_weights else np.array(maps)


@eagerly
def ablationcam_reference(images, labels, skip, counterfactual=False):
    x = _inputs(images)
    activations = features_of(x).numpy()
    maps = []
    for b, label in enumerate(labels):
        a = activations[b]
        score = tail(a[None], x[b:b + 1], skip).numpy()[0, label]
        weights = []
        for k in range(a.shape[-1]):
            ablated = a.copy()
            ablated[:, :, k] = 0
            weights.append((score - tail(ablated[None], x[b:b + 1], skip).numpy()[0, label])
                           / score)
        weights = -np.array(weights) if counterfactual else np.array(weights)
        maps.append(np.maximum(np.tensordot(a, weights, axes=([2], [0])), 0))
    return np.array(maps)


@eagerly
def activations_and_gradients(net_inputs, labels, skip):
    """A and the plain ∂y^c/∂A by GradientTape (eager: the ordinary ReLU gradient)."""
    x = tf2.constant(net_inputs)
    activations = features_of(x)
    with tf2.GradientTape() as tape:
        tape.watch(activations)
        logits = tail(activations, x, skip)
        score = tf2.reduce_sum(tf2.gather(logits, labels, axis=1, batch_dims=1))
    return activations.numpy(), tape.gradient(score, activations).numpy()


def projection_reference(weighted):
    """Numpy SVD: the centred h·w × K matrix projected on its first right singular vector,
    signed to correlate positively with the sum over channels, after ReLU."""
    maps = []
    for image in weighted:
        pixels = image.reshape(-1, image.shape[-1]).astype(np.float64)
        centred = pixels - pixels.mean(axis=0)
        projection = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        if projection @ pixels.sum(axis=1) < 0:
            projection = -projection
        maps.append(np.maximum(projection, 0).reshape(image.shape[:2]))
    return np.array(maps)


def _lowres(explanations, method):
    return np.array([explanation.maps(method).lowres for explanation in explanations])


# -- hand-worked weights ----------------------------------------------------------------------

def test_score_cam_weights_are_a_softmax_over_the_evaluated_channels():
    scores = np.array([[1.0, 2.0, np.nan], [0.0, 0.0, 0.0]])
    # image 0: softmax(1, 2) = (1, e) / (1 + e) = (0.26894, 0.73106); channel 2 not evaluated.
    # image 1: equal scores, equal weights; the image's own score cancels.
    expected = [[0.2689414, 0.7310586, 0.0], [1 / 3, 1 / 3, 1 / 3]]
    np.testing.assert_allclose(scorecam.score_weights(scores, np.array([5.0, -3.0]), False),
                               expected, rtol=1e-6)
    # counterfactual: softmax(-1, -2) = (e, 1) / (1 + e)
    np.testing.assert_allclose(scorecam.score_weights(scores, np.array([5.0, -3.0]), True)[0],
                               [0.7310586, 0.2689414, 0.0], rtol=1e-6)


def test_score_cam_masks_are_upsampled_and_min_max_normalised():
    maps = np.array([[[0.0, 1.0], [2.0, 3.0]], [[4.0, 4.0], [4.0, 4.0]]])
    masks = scorecam.channel_masks(maps, 2, 2)  # same size: no interpolation
    np.testing.assert_allclose(masks[0], [[0, 1 / 3], [2 / 3, 1]], rtol=1e-6)
    assert (masks[1] == 0).all()  # a constant map: 0/0 is 0, not NaN
    # 2 → 4 with half-pixel centres: output pixel 1 sits at 0.25 of the way from map pixel 0
    # to 1, so the row (0, 1) upsamples to (0, 0.25, 0.75, 1); the column (0, 2) to
    # (0, 0.5, 1.5, 2); the corners stay 0 and 3.
    up = scorecam.channel_masks(maps[:1], 4, 4)[0] * 3.0
    np.testing.assert_allclose(up[0], [0, 0.25, 0.75, 1], atol=1e-6)
    np.testing.assert_allclose(up[:, 0], [0, 0.5, 1.5, 2], atol=1e-6)
    # The masks of a 3-channel input: each pixel's mask once per channel.
    per_channel = scorecam.channel_masks(maps, 4, 4, channels=3)
    assert per_channel.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(per_channel, np.repeat(scorecam.channel_masks(maps, 4, 4)
                                                         [..., None], 3, axis=3))


def test_faster_score_cam_keeps_the_channels_of_largest_variance():
    activations = np.zeros((2, 2, 4))
    activations[..., 1] = [[0, 5], [5, 0]]  # variance 6.25
    activations[..., 2] = [[0, 1], [1, 0]]  # 0.25
    activations[..., 3] = [[0, 2], [2, 0]]  # 1
    assert list(scorecam.chosen_channels(activations, 2)) == [1, 3]
    assert list(scorecam.chosen_channels(activations, None)) == [0, 1, 2, 3]


def test_ablation_cam_weights_are_the_relative_drop_of_the_score():
    ablated = np.array([[3.0, 5.0, 4.0], [1.0, 2.0, -1.0]])
    own = np.array([4.0, 0.0])
    # image 0: (4 - 3) / 4, (4 - 5) / 4, 0; image 1: y = 0 gives 0, not inf
    np.testing.assert_allclose(ablationcam.score_weights(ablated, own, False),
                               [[0.25, -0.25, 0], [0, 0, 0]])
    np.testing.assert_allclose(ablationcam.score_weights(ablated, own, True)[0], [-0.25, 0.25, 0])


def _eigen(method, activations, grads):
    with tf.Graph().as_default(), tf.Session() as session:
        return session.run(REGISTRY[method].lowres(
            tf.constant(activations, tf.float32), tf.constant(grads, tf.float32)))


def test_eigen_cam_is_the_centred_first_component_signed_by_the_channel_sum():
    # Both channels are [[0, 1], [2, 3]]: the pixels (0, 0), (1, 1), (2, 2), (3, 3), centred
    # (-1.5, -1.5) … (1.5, 1.5), lie on (1, 1)/√2: projections -1.5√2, -0.5√2, 0.5√2, 1.5√2.
    # Uncentred they would be 0, √2, 2√2, 3√2 (every pixel positive).
    channel = np.array([[0.0, 1.0], [2.0, 3.0]])
    activations = np.stack([channel, channel], axis=-1)[None]
    root2 = np.sqrt(2.0)
    np.testing.assert_allclose(_eigen("eigencam", activations, np.ones_like(activations))[0],
                               [[0, 0], [0.5 * root2, 1.5 * root2]], rtol=1e-5, atol=1e-6)
    # Negated A: the sum over channels is (0, -2, -4, -6), so the component is signed the
    # other way: the map lies on the pixels whose activations are least negative.
    np.testing.assert_allclose(_eigen("eigencam", -activations, np.ones_like(activations))[0],
                               [[1.5 * root2, 0.5 * root2], [0, 0]], rtol=1e-5, atol=1e-6)
    # EigenGrad-CAM projects A ⊙ g: g = -1 flips it like negating A.
    np.testing.assert_allclose(_eigen("eigengradcam", activations, -np.ones_like(activations)),
                               _eigen("eigencam", -activations, np.ones_like(activations)),
                               atol=1e-6)


# -- against the eager references on the small network --------------------------------------

@pytest.mark.parametrize("counterfactual", [False, True])
def test_score_cam_equals_one_forward_pass_per_masked_channel(small, counterfactual):
    explanations = small.explainer.explain(small.images, LABELS, counterfactual,
                                           methods=["scorecam"])
    _assert_maps_equal(_lowres(explanations, "scorecam"),
                       scorecam_reference(small.images, LABELS, small.skip,
                                          counterfactual=counterfactual))


def test_faster_score_cam_equals_the_reference_on_the_top_variance_channels(small):
    with GuidedGradCam(SlimSource(_spec(small.skip), 3), batch_size=4,
                       score_cam_channels=2) as faster:
        explanations = faster.explain(small.images, LABELS, methods=["scorecam"])
    expected = scorecam_reference(small.images, LABELS, small.skip, channels=2)
    _assert_maps_equal(_lowres(explanations, "scorecam"), expected)
    every = scorecam_reference(small.images, LABELS, small.skip)
    assert np.abs(expected - every).max() > 1e-3 * every.max()  # 2 of 6 channels differ


@pytest.mark.parametrize("counterfactual", [False, True])
def test_ablation_cam_equals_one_tail_pass_per_ablated_channel(small, counterfactual):
    assert small.explainer.graph.tail_reads_input == small.skip
    explanations = small.explainer.explain(small.images, LABELS, counterfactual,
                                           methods=["ablationcam"])
    _assert_maps_equal(_lowres(explanations, "ablationcam"),
                       ablationcam_reference(small.images, LABELS, small.skip, counterfactual))


@pytest.mark.parametrize("counterfactual", [False, True])
def test_eigen_methods_equal_numpy_svd(small, counterfactual):
    explanations = small.explainer.explain(small.images, LABELS, counterfactual,
                                           methods=["eigencam", "eigengradcam"])
    activations, grads = activations_and_gradients(
        small.images.astype(np.float32) / 255.0, LABELS, small.skip)
    sign = -1.0 if counterfactual else 1.0
    _assert_maps_equal(_lowres(explanations, "eigencam"), projection_reference(activations))
    _assert_maps_equal(_lowres(explanations, "eigengradcam"),
                       projection_reference(activations * sign * grads))


def test_eigen_smooth_projects_the_weighted_activations(small):
    with GuidedGradCam(SlimSource(_spec(small.skip), 3), eigen_smooth=True,
                       score_cam_channels=None) as smooth:
        explanations = smooth.explain(small.images, LABELS,
                                      methods=["gradcam", "hirescam", "scorecam"])
    activations, grads = activations_and_gradients(
        small.images.astype(np.float32) / 255.0, LABELS, small.skip)
    alphas = grads.mean(axis=(1, 2), keepdims=True)
    _assert_maps_equal(_lowres(explanations, "gradcam"),
                       projection_reference(alphas * activations))
    _assert_maps_equal(_lowres(explanations, "hirescam"),
                       projection_reference(grads * activations))
    # Score-CAM's weights, from the reference loop of one pass per channel, projected.
    plain, weights = scorecam_reference(small.images, LABELS, small.skip, with_weights=True)
    _assert_maps_equal(_lowres(explanations, "scorecam"),
                       projection_reference(weights[:, None, None, :] * activations))
    assert np.abs(_lowres(explanations, "scorecam") - plain).max() > 1e-3 * plain.max()


@pytest.mark.parametrize("eigen_smooth", [False, True], ids=["sum", "eigen_smooth"])
def test_maps_of_weights_found_outside_the_graph_equal_the_graphs_own(small, eigen_smooth):
    """channel_maps (numpy, for Score-CAM's and Ablation-CAM's weights) given Grad-CAM's
    weights gives Grad-CAM's maps of the graph (TF's resize, max and projection)."""
    with GuidedGradCam(SlimSource(_spec(small.skip), 3), eigen_smooth=eigen_smooth) as explainer:
        explanations = explainer.explain(small.images, LABELS, methods=["gradcam"])
    activations, grads = activations_and_gradients(
        small.images.astype(np.float32) / 255.0, LABELS, small.skip)
    gbp = np.array([explanation.gbp for explanation in explanations])
    lowres, cam, guided = channel_maps.weighted_maps(grads.mean(axis=(1, 2)), activations, gbp,
                                                     projection=eigen_smooth)
    _assert_maps_equal(lowres, _lowres(explanations, "gradcam"))
    _assert_maps_equal(cam, np.array([explanation.cam for explanation in explanations]))
    _assert_maps_equal(guided, np.array([e.guided_gradcam for e in explanations]))


def test_aug_smooth_averages_the_restored_maps_of_the_six_augmentations(small):
    with GuidedGradCam(SlimSource(_spec(small.skip), 3), aug_smooth=True) as smooth:
        explanations = smooth.explain(small.images, LABELS, methods=["gradcam"])
    net_inputs = small.images.astype(np.float32) / 255.0
    maps = []
    for flip, brightness in AUGMENTATIONS:
        augmented = brightness * (net_inputs[:, :, ::-1] if flip else net_inputs)
        activations, grads = activations_and_gradients(augmented.astype(np.float32), LABELS,
                                                       small.skip)
        cam = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * activations).sum(-1), 0)
        maps.append(cam[:, :, ::-1] if flip else cam)
    expected = np.mean(maps, axis=0)
    _assert_maps_equal(_lowres(explanations, "gradcam"), expected)
    assert np.abs(maps[0] - expected).max() > 1e-3 * expected.max()  # smoothing shows
    for explanation in explanations:
        assert explanation.cam.max() == pytest.approx(1.0)
        np.testing.assert_allclose(explanation.guided_gradcam,
                                   explanation.gbp * explanation.cam[..., None], rtol=1e-6)


def test_gradient_free_maps_do_not_depend_on_the_rest_of_the_batch(small):
    # batch_size 5 with 6 channels: runs of masked inputs straddle images.
    together = small.explainer.explain(small.images, LABELS, methods=GRADIENT_FREE)
    for index in (1, 2):
        alone, = small.explainer.explain(small.images[index:index + 1], LABELS[index],
                                         methods=GRADIENT_FREE)
        for method in GRADIENT_FREE:
            for actual, expected in zip(together[index].maps(method), alone.maps(method)):
                _assert_maps_equal(actual, expected, fraction=1e-5)


def test_guided_maps_of_the_gradient_free_methods_are_gbp_times_their_map(small):
    explanation, = small.explainer.explain(small.images[:1], LABELS[0], methods=GRADIENT_FREE)
    for method in GRADIENT_FREE:
        lowres, cam, guided = explanation.maps(method)
        assert cam.shape == (SIZE, SIZE) and cam.max() == pytest.approx(1.0)
        np.testing.assert_allclose(guided, explanation.gbp * cam[..., None], rtol=1e-6)


def test_passes_report_their_progress_only_while_work_is_left():
    stream = io.StringIO()
    progress = PassProgress("score-cam masked inputs", 64, stream, quiet_for=0.0, interval=0.0)
    progress.update(16)
    progress.update(64)  # the end: nothing left to announce
    assert re.fullmatch(r"score-cam masked inputs: 16/64, \d\d:\d\d:\d\d left\n",
                        stream.getvalue()), stream.getvalue()
    quiet = io.StringIO()
    PassProgress("ablation-cam tail passes", 64, quiet).update(16)  # within the first seconds
    assert quiet.getvalue() == ""


def test_passes_feed_at_most_batch_size_inputs_whatever_the_channel_count(small):
    """Memory stays flat in K: every run of masked inputs or ablated activations holds at most
    `batch_size` of them (the runs observed on the explainer's own session)."""
    explainer, g = small.explainer, small.explainer.graph
    fed = []

    def observed_run(fetches, feed):
        fed.extend(len(value) for tensor, value in feed.items()
                   if tensor in (g.net_input, g.activations))
        return explainer.session.run(fetches, feed)

    net_inputs = explainer.network_inputs(small.images)
    activations = explainer.session.run(g.activations, {g.net_input: net_inputs})
    targets = np.array(LABELS)
    for batch_size in (1, 4):
        fed.clear()
        masked = forward_passes.masked_input_scores(observed_run, g, net_inputs, activations,
                                                    targets, batch_size)
        ablated = forward_passes.ablated_scores(observed_run, g, net_inputs, activations,
                                                targets, batch_size)
        pairs = activations.shape[0] * activations.shape[-1]
        assert max(fed) == batch_size and len(fed) >= 2 * pairs / batch_size
        assert np.isfinite(masked).all() and np.isfinite(ablated).all()


def test_gradient_free_methods_add_no_ops_to_the_graph(small):
    """The passes feed the graph built once per explainer; it is finalized, and stays so."""
    graph = small.explainer.graph.graph
    operations = len(graph.get_operations())
    small.explainer.explain(small.images, LABELS, methods=GRADIENT_FREE)
    assert graph.finalized and len(graph.get_operations()) == operations
