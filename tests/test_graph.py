"""Grad-CAM and GBP equal independent computations, on the graph's two-pass path above all.

Grad-CAM's α uses the plain gradient even though the network is built under the override, and
GBP the guided one. A toy network with a ReLU between A and the logits (as VGG's fc6/fc7) pins
both with gradients written out in numpy; VGG-16 and ResNet-50 (random, seeded weights) are
compared with the same network built twice more by this test: once without any override (plain
∂y/∂A) and once with a guided ReLU gradient of the test's own (GBP).
"""
import contextlib
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from guided_gradcam.graph import build_explanation_graph, upsample_and_normalise
from guided_gradcam.zoo.networks import NETWORKS, NetworkSpec
from guided_gradcam.sources.slim import SlimSource

from helpers import (KERNEL, TOY, W_HIDDEN, W_LOGITS, bilinear_half_pixel, toy_build,
                     toy_images as _toy_images)


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


def _toy_conv(x):
    """The toy's 3x3 stride-2 SAME conv on one (8, 8, 3) input: TF pads 8 → 9 at the bottom and
    right only ((4 - 1) · 2 + 3 - 8 = 1 row and column)."""
    padded = np.pad(x, ((0, 1), (0, 1), (0, 0)))
    return np.array([[np.tensordot(padded[2 * i:2 * i + 3, 2 * j:2 * j + 3], KERNEL, axes=3)
                      for j in range(4)] for i in range(4)])


def _hand_computed_gbp(net_input, label, guided=True):
    """∂y/∂x of the toy for one preprocessed (8, 8, 3) input, written out layer by layer; with
    guided=True each ReLU passes only positive gradient, and only where its input is positive."""
    def relu_backward(upstream, pre_activation):
        if guided:
            upstream = np.maximum(upstream, 0.0)
        return upstream * (pre_activation > 0)

    pre_features = _toy_conv(net_input)
    pre_hidden = np.maximum(pre_features, 0).mean(axis=(0, 1)) @ W_HIDDEN
    hidden_grad = relu_backward(W_LOGITS[:, label], pre_hidden)
    feature_grad = np.broadcast_to(W_HIDDEN @ hidden_grad / 16, pre_features.shape)
    conv_grad = relu_backward(feature_grad, pre_features)
    input_grad = np.zeros((9, 9, 3))
    for i in range(4):
        for j in range(4):
            input_grad[2 * i:2 * i + 3, 2 * j:2 * j + 3] += KERNEL @ conv_grad[i, j]
    return input_grad[:8, :8]


@pytest.fixture(scope="module")
def toy():
    graph = build_explanation_graph(SlimSource(TOY, 3))
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
    labels = np.array([0, 1, 2, -1], np.int32)
    out = _run(toy, _toy_images(1, 4), labels)
    differences = 0
    for b in range(4):
        label = out["targets"][b]
        expected = _hand_computed_cam(out["A"][b], label)
        np.testing.assert_allclose(out["cam_lowres"][b], expected, rtol=1e-5, atol=1e-6)
        naive = _hand_computed_cam(out["A"][b], label, guided_tail=True)
        differences += not np.allclose(naive, expected, rtol=1e-3)
    assert differences > 0, "the data must make guided and plain α differ, or this proves nothing"


def test_toy_gbp_matches_the_hand_computed_guided_backprop(toy):
    images = _toy_images(3, 4)
    out = _run(toy, images, np.array([0, 1, 2, -1], np.int32))
    unlike_plain = 0
    for b in range(4):
        net_input = images[b].astype(np.float64) / 255.0
        label = out["targets"][b]
        np.testing.assert_allclose(out["A"][b], np.maximum(_toy_conv(net_input), 0), rtol=1e-5,
                                   atol=1e-6)
        expected = _hand_computed_gbp(net_input, label)
        scale = np.abs(expected).max()
        assert scale > 0
        np.testing.assert_allclose(out["gbp"][b], expected, rtol=1e-5, atol=1e-6 * scale)
        plain = _hand_computed_gbp(net_input, label, guided=False)
        unlike_plain += np.abs(plain - expected).max() > 0.1 * scale
    # The plain gradient (what GBP would be if built inside plain_gradients()) must differ
    # clearly on this data, or the check above could not tell the two apart.
    assert unlike_plain >= 3, unlike_plain


def test_toy_counterfactual_negates_alpha(toy):
    labels = np.array([1, 2], np.int32)
    out = _run(toy, _toy_images(3, 2), labels, counterfactual=True)
    for b in range(2):
        expected = _hand_computed_cam(out["A"][b], labels[b], sign=-1.0)
        np.testing.assert_allclose(out["cam_lowres"][b], expected, rtol=1e-5, atol=1e-6)


def test_guided_gradcam_is_gbp_times_normalised_upsampled_cam(toy):
    out = _run(toy, _toy_images(4, 6), np.array([0, 1, 2, 0, 1, 2], np.int32))
    np.testing.assert_allclose(out["guided_gradcam"], out["gbp"] * out["cam"][..., None], rtol=1e-6)
    checked = 0
    for b in range(6):
        if out["cam_lowres"][b].max() > 0:
            assert out["cam"][b].max() == pytest.approx(1.0)
            upsampled = bilinear_half_pixel(out["cam_lowres"][b], 8, 8)
            np.testing.assert_allclose(out["cam"][b], upsampled / upsampled.max(), rtol=1e-5)
            checked += 1
        else:
            assert not out["cam"][b].any()
    # All-zero maps cannot show the upsampling: enough of the data must not be all zero.
    assert checked >= 4, "only %d of 6 maps are not all zero" % checked


@pytest.mark.parametrize("low,high", [((7, 5), (224, 160)), ((3, 4), (8, 8))])
def test_upsampling_by_products_equals_tfs_resize_where_the_size_is_unknown(low, high):
    """Maps of a known size are upsampled by two products with interpolation matrices; of an
    unknown size, by TF's ResizeBilinear (half-pixel centres): both give the same maps, and an
    all-zero map stays zero. Over 60 random cases, both kernel regimes, they differed by at most
    2.4e-7 (two float32 ulps at the peak of 1): the tolerance allows 8x that."""
    maps = np.random.default_rng(3).random((3,) + low).astype(np.float32)
    maps[2] = 0.0
    upsampled, op_types = [], []
    for shape in (maps.shape, (None, None, None)):
        with tf.Graph().as_default() as graph, tf.Session() as session:
            lowres = tf.placeholder(tf.float32, shape)
            upsampled.append(session.run(upsample_and_normalise(lowres, *high), {lowres: maps}))
            op_types.append({op.type for op in graph.get_operations()})
    assert "ResizeBilinear" not in op_types[0] and "ResizeBilinear" in op_types[1]
    by_products, by_resize = upsampled
    assert by_products.shape == (3,) + high
    np.testing.assert_allclose(by_products, by_resize, rtol=0, atol=2e-6)
    assert np.allclose(by_products[:2].max(axis=(1, 2)), 1.0) and not by_products[2].any()


def test_an_all_zero_map_normalises_to_zeros_not_nan(toy):
    out = _run(toy, np.zeros((1, 8, 8, 3), np.uint8), np.array([0], np.int32))
    assert not out["A"].any()
    assert np.isfinite(out["cam"]).all() and not out["cam"].any()
    assert np.isfinite(out["guided_gradcam"]).all()


def test_default_target_skips_a_background_logit():
    def build_with_loud_background(images, num_classes):
        logits, end_points = toy_build(images, num_classes)
        return logits + tf.constant([100.0, 0.0, 0.0]), end_points  # logit 0 always wins

    spec = NetworkSpec(**{**TOY.__dict__, "build": build_with_loud_background})
    images = _toy_images(5, 3)
    for background, expected_floor in ((0, 0), (1, 1)):
        graph = build_explanation_graph(SlimSource(spec, 3, background_logits=background))
        with tf.Session(graph=graph.graph) as session:
            targets, logits = session.run([graph.targets, graph.logits],
                                          {graph.images: images, graph.labels: [-1, -1, -1]})
        assert (targets >= expected_floor).all()
        np.testing.assert_array_equal(targets, background + logits[:, background:].argmax(1))


# -- VGG-16 and ResNet-50 against graphs this test builds itself ------------------------------

SEED = 0
# The test's own guided ReLU gradient, registered under names of its own. It gates on the
# ReLU's input (the toolkit's gates on the output) and is written with tf.where.
REFERENCE_GUIDED = {"Relu": "ExactMapsTestGuidedRelu", "Relu6": "ExactMapsTestGuidedRelu6"}


def _guided_gradient(upper):
    def gradient(op, grad):
        x = op.inputs[0]
        opened = (grad > 0) & (x > 0) if upper is None else (grad > 0) & (x > 0) & (x < upper)
        return tf.where(opened, grad, tf.zeros_like(grad))
    return gradient


for _op_type, _upper in (("Relu", None), ("Relu6", 6.0)):
    try:
        tf.RegisterGradient(REFERENCE_GUIDED[_op_type])(_guided_gradient(_upper))
    except KeyError:
        pass  # this module was imported before (a reload): the name is taken, by this function


def _reference_graph(spec, layer, guided):
    """`spec`'s network built by the test: plain, or with every Relu/Relu6 guided by the test's
    own gradient. Returns its tensors; ∂y/∂A and ∂y/∂x of logit `label`, summed over the batch."""
    graph = tf.Graph()
    with graph.as_default():
        # Seeded before anything is built: the same random weights in every run.
        tf.set_random_seed(SEED)
        images = tf.placeholder(tf.uint8, [None, 224, 224, 3])
        label = tf.placeholder(tf.int32, [])
        net_input = spec.preprocess(tf.cast(images, tf.float32))
        override = graph.gradient_override_map(REFERENCE_GUIDED) if guided else contextlib.nullcontext()
        with override:
            logits, end_points = spec.build(net_input, 1000)
        activations = end_points[layer]
        layer_grad, input_grad = tf.gradients(
            tf.reduce_sum(logits[:, label]), [activations, net_input])
    relus = [op for op in graph.get_operations() if op.type in REFERENCE_GUIDED]
    assert relus
    if guided:
        assert all(op.get_attr("_gradient_op_type").decode() == REFERENCE_GUIDED[op.type]
                   for op in relus)
    return SimpleNamespace(graph=graph, images=images, label=label, logits=logits,
                           activations=activations, layer_grad=layer_grad, input_grad=input_grad)


def _randomise_normalisation(session, rng):
    """BatchNorm statistics, scales and offsets start as constants: random values make the
    normalisation (and the toolkit's folded BatchNorm gradient) do something."""
    for variable in tf.global_variables():
        name, shape = variable.op.name, variable.shape.as_list()
        if name.endswith("moving_variance"):
            variable.load(rng.uniform(0.5, 2.0, shape).astype(np.float32), session)
        elif name.endswith("gamma"):
            variable.load(rng.uniform(0.5, 1.5, shape).astype(np.float32), session)
        elif name.endswith(("beta", "moving_mean")):
            variable.load(rng.normal(0.0, 0.1, shape).astype(np.float32), session)


def _network_under_test(name, layer, folder):
    """The toolkit's graph for `layer`, and the plain and guided references, on the same random
    weights (made once, in the plain reference, and restored into the other two)."""
    spec = NETWORKS[name]
    plain = _reference_graph(spec, layer, guided=False)
    with plain.graph.as_default():
        plain.session = tf.Session()
        plain.session.run(tf.global_variables_initializer())
        _randomise_normalisation(plain.session, np.random.default_rng(SEED))
        prefix = tf.train.Saver().save(plain.session, str(folder / name), write_meta_graph=False)
    guided = _reference_graph(spec, layer, guided=True)
    explained = build_explanation_graph(SlimSource(spec, 1000), layer=layer)
    sessions = [plain.session]
    for graph in (guided.graph, explained.graph):
        with graph.as_default():
            sessions.append(tf.Session())
            tf.train.Saver().restore(sessions[-1], prefix)
    guided.session, session = sessions[1:]
    photo = np.random.default_rng(3).integers(0, 256, size=(1, 224, 224, 3)).astype(np.uint8)
    predicted = int(plain.session.run(plain.logits, {plain.images: photo}).argmax())
    yield SimpleNamespace(name=name, explained=explained, session=session, plain=plain,
                          guided=guided, photo=photo, predicted=predicted,
                          targets=(predicted, 243))
    for session in sessions:
        session.close()


@pytest.fixture(scope="module")
def vgg_16(tmp_path_factory):
    """fc6/fc7 ReLUs lie between conv5_3 and the logits: the two-pass path."""
    yield from _network_under_test("vgg_16", "vgg_16/conv5/conv5_3", tmp_path_factory.mktemp("vgg"))


@pytest.fixture(scope="module")
def resnet_v1_50(tmp_path_factory):
    """block3 (7x7): block4's ReLUs lie between it and the logits (the two-pass path), and its
    3x3 convs make ∂y/∂A vary in space, unlike at block4 before the global average pool."""
    yield from _network_under_test("resnet_v1_50", "resnet_v1_50/block3",
                                   tmp_path_factory.mktemp("resnet"))


def _explain(network, target):
    explained = network.explained
    return network.session.run(
        {"cam_lowres": explained.cam_lowres, "A": explained.activations, "gbp": explained.gbp,
         "targets": explained.targets},
        {explained.images: network.photo, explained.labels: [target]})


def _reference_run(reference, network, target, tensors):
    return reference.session.run(tensors, {reference.images: network.photo, reference.label: target})


def test_random_weights_are_the_same_in_every_build(vgg_16):
    # What tf.set_random_seed before building fixes: the draws of a seeded graph repeat.
    second = _reference_graph(NETWORKS["vgg_16"], "vgg_16/conv5/conv5_3", guided=False)
    with second.graph.as_default(), tf.Session() as session:
        session.run(tf.global_variables_initializer())
        fc8 = [v for v in tf.global_variables() if v.op.name == "vgg_16/fc8/weights"][0]
        ours = session.run(fc8)
    with vgg_16.plain.graph.as_default():
        fc8 = [v for v in tf.global_variables() if v.op.name == "vgg_16/fc8/weights"][0]
        np.testing.assert_array_equal(vgg_16.plain.session.run(fc8), ours)


@pytest.mark.parametrize("name", ["vgg_16", "resnet_v1_50"])
def test_cam_weights_by_the_spatial_mean_of_the_plain_gradient(name, request):
    network = request.getfixturevalue(name)
    for target in network.targets:
        out = _explain(network, target)
        assert out["targets"][0] == target
        activations, grads = _reference_run(network.plain, network, target,
                                            [network.plain.activations, network.plain.layer_grad])
        np.testing.assert_allclose(out["A"], activations, rtol=1e-4,
                                   atol=1e-5 * np.abs(activations).max())

        def cam(alpha):
            return np.maximum((alpha * activations).sum(-1), 0)
        expected = cam(grads.mean(axis=(1, 2), keepdims=True))
        assert expected.max() > 0
        np.testing.assert_allclose(out["cam_lowres"], expected, rtol=1e-4,
                                   atol=1e-4 * expected.max())
        # ∂y/∂A must vary in space here: α averaged over rows or columns only gives another map.
        for axis in (1, 2):
            one_axis = cam(grads.mean(axis=axis, keepdims=True))
            assert np.abs(one_axis - expected).max() > 0.05 * expected.max(), (target, axis)


@pytest.mark.parametrize("name", ["vgg_16", "resnet_v1_50"])
def test_gbp_equals_the_tests_own_guided_backprop(name, request):
    network = request.getfixturevalue(name)
    for target in network.targets:
        gbp = _explain(network, target)["gbp"]
        expected = _reference_run(network.guided, network, target, network.guided.input_grad)
        plain = _reference_run(network.plain, network, target, network.plain.input_grad)
        scale = np.abs(expected).max()
        assert scale > 0
        assert np.abs(plain - expected).max() > 0.1 * scale, "guided and plain must differ here"
        # The toolkit's forward pass fuses conv + bias/BatchNorm + ReLU and its backward pass
        # folds BatchNorm into the conv filters: it rounds differently, so a gate within
        # rounding of 0 may flip. Such flips stay rare and small: measured 0.014% of the peak
        # in both of .ci/run's regimes; 0.3% keeps a 20x margin.
        np.testing.assert_allclose(gbp, expected, atol=3e-3 * scale)
        off = ~np.isclose(gbp, expected, rtol=1e-4, atol=1e-4 * scale)
        assert off.mean() < 1e-3, off.mean()


def test_vgg_cam_uses_plain_gradients_through_fc_relus(vgg_16):
    explained = vgg_16.explained
    with explained.graph.as_default():
        naive_grad = tf.gradients(  # everything under the override: fc6/fc7 guided
            tf.reduce_sum(tf.gather(explained.logits, explained.targets, axis=1, batch_dims=1)),
            explained.activations)[0]
    for target in vgg_16.targets:
        cam, activations, naive = vgg_16.session.run(
            [explained.cam_lowres, explained.activations, naive_grad],
            {explained.images: vgg_16.photo, explained.labels: [target]})
        grads = _reference_run(vgg_16.plain, vgg_16, target, vgg_16.plain.layer_grad)
        expected = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * activations).sum(-1), 0)
        # Measured 3.6e-10 (1.3e-6 relative) in both regimes: rtol 1e-4 keeps a 75x margin,
        # far below the naive α's error.
        np.testing.assert_allclose(cam, expected, rtol=1e-4, atol=1e-5 * expected.max())
        naive_cam = np.maximum((naive.mean(axis=(1, 2), keepdims=True) * activations).sum(-1), 0)
        alpha, naive_alpha = grads.mean(axis=(1, 2)), naive.mean(axis=(1, 2))
        error = np.abs(naive_alpha - alpha).max() / np.abs(alpha).max()
        print("class %d: naive guided alpha differs by %.1f%% of max |alpha|" % (target, 100 * error))
        assert error > 0.05
        assert not np.allclose(naive_cam, expected, rtol=1e-2)


def test_relus_between_the_layer_and_the_logits_are_found(vgg_16):
    from guided_gradcam.graph import relus_between

    toy = build_explanation_graph(SlimSource(TOY, 3))
    assert len(relus_between(toy.activations, toy.logits)) == 1  # the hidden dense layer's
    vgg = vgg_16.explained  # the default layer, conv5_3
    assert len(relus_between(vgg.activations, vgg.logits)) == 2, "fc6's and fc7's"
    for network in ("mobilenet_v1_075", "resnet_v1_50"):
        graph = build_explanation_graph(SlimSource(NETWORKS[network], 1000))
        found = relus_between(graph.activations, graph.logits)
        assert found == [], (network, found)
