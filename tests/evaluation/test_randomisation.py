"""Weight randomisation for the sanity checks (evaluation.randomisation), on the real MobileNet
V1 0.75, a small Keras 3 model with BatchNorm saved as .keras, and a TF 1 .meta graph with ref
variables.

What the network reads is found here independently of the module: the ReadVariableOp outputs
that ops on the input-to-logits path consume, and each block's activation (the last path op
in its scope). Feeding a block must change exactly what the network reads of that block, leave
every layer before it bit-identical and change every one from it on; the explainer itself must
give the original maps again afterwards.
"""
import collections

import keras
import numpy as np
import pytest
import tensorflow.compat.v1 as tf
import tf_slim as slim

from guided_gradcam import GuidedGradCam, load_photo
from guided_gradcam.evaluation.randomisation import (
    Weight, cascading_steps, independent_steps, random_value, randomised_feeds, weight_blocks)
from guided_gradcam.core.graph_paths import ops_between
from guided_gradcam.core.tf_eager import eager

MOBILENET_BLOCKS = (["MobilenetV1/Conv2d_0"]
                    + ["MobilenetV1/Conv2d_%d_%s" % (i, kind) for i in range(1, 14)
                       for kind in ("depthwise", "pointwise")]
                    + ["MobilenetV1/Logits/Conv2d_1c_1x1"])
BATCH_NORM = ("gamma", "beta", "moving_mean", "moving_variance")
SIZE = 16


@pytest.fixture(scope="module")
def mobilenet(explainer, cat_dog_path):
    photo = explainer.fit(load_photo(str(cat_dog_path)))[0][None]
    return explainer, weight_blocks(explainer), photo


def _path(explainer):
    return ops_between(explainer.graph.net_input, explainer.graph.logits)


def _reads(explainer):
    """{variable name: the ReadVariableOp outputs that ops on the path consume}."""
    reads = collections.defaultdict(set)
    for op in _path(explainer):
        for tensor in op.inputs:
            if tensor.op.type == "ReadVariableOp":
                reads[tensor.op.inputs[0].op.name].add(tensor)
    return reads


def _activations(explainer, blocks):
    """Each block's activation: the output of the last op on the path in its scope."""
    last = {}
    for op in _path(explainer):
        for block in blocks:
            if op.name.startswith(block.name + "/"):
                last[block.name] = op.outputs[0]
    return [last[block.name] for block in blocks]


# -- blocks ----------------------------------------------------------------------------------------

def test_slim_blocks_are_layers_in_graph_order_batchnorm_with_its_conv(mobilenet):
    explainer, blocks, _ = mobilenet
    assert [block.name for block in blocks] == MOBILENET_BLOCKS
    for block in blocks[:-1]:
        kernel = "depthwise_weights" if block.name.endswith("depthwise") else "weights"
        assert sorted(w.name for w in block.weights) == sorted(
            [block.name + "/" + kernel] + [block.name + "/BatchNorm/" + v for v in BATCH_NORM])
    assert sorted(w.name for w in blocks[-1].weights) == [
        "MobilenetV1/Logits/Conv2d_1c_1x1/biases", "MobilenetV1/Logits/Conv2d_1c_1x1/weights"]
    # Graph order, found from the ops themselves: each block's first op on the path comes
    # after the previous block's.
    path = _path(explainer)
    first = [min(i for i, op in enumerate(path) if op.name.startswith(block.name + "/"))
             for block in blocks]
    assert first == sorted(first)


def test_every_variable_is_in_exactly_one_block_fed_through_all_its_reads(mobilenet):
    explainer, blocks, _ = mobilenet
    graph = explainer.graph.graph
    handles = [op for op in graph.get_operations() if op.type == "VarHandleOp"]
    counts = collections.Counter(w.name for block in blocks for w in block.weights)
    assert counts == collections.Counter(op.name for op in handles)  # each exactly once
    assert len(handles) == 137
    reads = _reads(explainer)
    originals = explainer.session.run({name: sorted(ts, key=str)[0] for name, ts in reads.items()})
    for block in blocks:
        for weight in block.weights:
            every_read = {c.outputs[0] for c in graph.get_operation_by_name(weight.name)
                          .outputs[0].consumers() if c.type == "ReadVariableOp"}
            assert len(every_read) >= 2  # slim reads each variable several times
            assert set(weight.tensors) == every_read
            assert reads[weight.name] <= every_read
            np.testing.assert_array_equal(weight.value, originals[weight.name])


# -- what a block's feeds change -------------------------------------------------------------------

def test_a_blocks_feeds_change_exactly_its_weights_and_the_layers_from_it_on(mobilenet):
    explainer, blocks, photo = mobilenet
    g = explainer.graph
    reads = _reads(explainer)
    read_tensors = {t: name for name, ts in reads.items() for t in ts}
    fetches = {"reads": {t.name: t for t in read_tensors}, "acts": _activations(explainer, blocks)}
    feed = {g.images: photo}
    original = explainer.session.run(fetches, feed)
    for index, block in enumerate(blocks):
        mine = {w.name: w for w in block.weights}
        run = explainer.session.run(fetches, {**feed, **randomised_feeds(blocks, [index])})
        for tensor, name in read_tensors.items():
            seen = run["reads"][tensor.name]
            if name in mine:
                np.testing.assert_array_equal(seen, random_value(mine[name]))
                assert not np.array_equal(seen, original["reads"][tensor.name])
            else:
                np.testing.assert_array_equal(seen, original["reads"][tensor.name])
        for later, (before, after) in enumerate(zip(original["acts"], run["acts"])):
            if later < index:
                np.testing.assert_array_equal(after, before, err_msg=blocks[later].name)
            else:
                assert not np.array_equal(after, before), (block.name, blocks[later].name)


def test_cascading_steps_cover_the_top_blocks_and_independent_steps_one(mobilenet):
    _, blocks, _ = mobilenet
    n = len(blocks)

    def tensors(indices):
        return {t for i in indices for w in blocks[i].weights for t in w.tensors}
    cascading = cascading_steps(blocks)
    assert [label for label, _ in cascading] == MOBILENET_BLOCKS[::-1]
    for k, (label, indices) in enumerate(cascading, start=1):
        assert sorted(indices) == list(range(n - k, n))
        assert set(randomised_feeds(blocks, indices)) == tensors(range(n - k, n))
    independent = independent_steps(blocks)
    assert [label for label, _ in independent] == MOBILENET_BLOCKS[::-1]
    for (label, indices), index in zip(independent, reversed(range(n))):
        assert indices == (index,) and label == blocks[index].name
        assert set(randomised_feeds(blocks, indices)) == tensors([index])


# -- the random values ------------------------------------------------------------------------------

def test_random_values_are_deterministic_finite_and_keep_shape_and_sign(mobilenet):
    _, blocks, _ = mobilenet
    everything = range(len(blocks))
    feeds, again = randomised_feeds(blocks, everything), randomised_feeds(blocks, everything)
    other_seed = randomised_feeds(blocks, everything, seed=1)
    for index, block in enumerate(blocks):
        alone = randomised_feeds(blocks, [index])  # the same whatever else is randomised
        for weight in block.weights:
            for tensor in weight.tensors:
                value = feeds[tensor]
                assert value.dtype == np.float32 and value.shape == weight.value.shape
                assert np.isfinite(value).all()
                np.testing.assert_array_equal(value, again[tensor])
                np.testing.assert_array_equal(value, alone[tensor])
                np.testing.assert_array_equal(value, random_value(weight, 0))
                assert not np.array_equal(value, other_seed[tensor]), weight.name
                assert not np.array_equal(value, weight.value), weight.name
                if weight.value.min() > 0:
                    assert value.min() > 0, weight.name
    variances = [w for block in blocks for w in block.weights if "moving_variance" in w.name]
    assert all(random_value(w).min() > 0 for w in variances)
    # A weight keeps its scale: std within the truncated normal's (0.88 σ) of the original's.
    kernel = blocks[-2].weights[0]
    assert 0.7 < random_value(kernel).std() / kernel.value.std() < 1.1


def test_the_evaluators_randomiser_draws_by_its_seed(mobilenet):
    """sanity.Randomiser, as the evaluator builds it: each step feeds the randomised block's
    weights random_value(weight, seed), bit-identical for one seed and other values for
    another seed, and every other weight its original value."""
    from guided_gradcam.evaluation.metrics.sanity import Randomiser

    explainer, blocks, _ = mobilenet
    runs = [list(Randomiser(explainer, seed, modes=("independent",)).steps())
            for seed in (0, 0, 1)]
    assert [len(steps) for steps in runs] == [len(blocks)] * 3
    for step, ((_, _, name, first), (_, _, _, again), (_, _, _, other)) in enumerate(zip(*runs)):
        index = len(blocks) - 1 - step  # from the top down
        assert name == blocks[index].name
        for weight in blocks[index].weights:
            for tensor in weight.tensors:
                np.testing.assert_array_equal(first[tensor], random_value(weight, 0))
                np.testing.assert_array_equal(again[tensor], first[tensor])
                np.testing.assert_array_equal(other[tensor], random_value(weight, 1))
                assert not np.array_equal(other[tensor], first[tensor]), weight.name
        for block in blocks[:index] + blocks[index + 1:]:
            for weight in block.weights:
                for tensor in weight.tensors:
                    np.testing.assert_array_equal(other[tensor], weight.value)


def test_random_value_of_constant_zero_and_spread_positive_tensors():
    ones = random_value(Weight("a/BatchNorm/gamma", (), np.ones(1000, np.float32)))
    assert ones.min() > 0 and np.unique(ones).size > 100  # a constant still changes
    zeros = random_value(Weight("a/biases", (), np.zeros(1000, np.float32)))
    assert zeros.min() < 0 < zeros.max()  # all zero is no sign to keep
    spread = np.linspace(0.01, 3.0, 1000, dtype=np.float32)  # 2σ reaches below zero
    assert random_value(Weight("a/BatchNorm/moving_variance", (), spread)).min() > 0
    kernel = Weight("a/weights", (), np.random.default_rng(0).normal(0.3, 2.0, 5000))
    value = random_value(kernel, seed=3)
    mean, sigma = kernel.value.mean(), kernel.value.std()  # the tensor's own
    assert 1.95 * sigma < np.abs(value - mean).max() <= 2 * sigma * (1 + 1e-6)  # truncated
    assert abs(value.mean() - mean) < 0.05 * sigma
    assert random_value(Weight("b/weights", (), kernel.value), seed=3).tolist() != value.tolist()


# -- explaining with randomised weights -------------------------------------------------------------

def _assert_same_maps(actual, expected):
    for a, e in zip(actual, expected):
        for field in ("logits", "cam_lowres", "cam", "gbp", "guided_gradcam"):
            np.testing.assert_array_equal(getattr(a, field), getattr(e, field), err_msg=field)


def _assert_randomised_maps(randomised, original):
    for r, o in zip(randomised, original):
        for field in ("logits", "cam_lowres", "cam", "gbp", "guided_gradcam"):
            assert np.isfinite(getattr(r, field)).all(), field
        assert not np.array_equal(r.logits, o.logits)
        assert np.abs(r.gbp).max() > 0 and not np.array_equal(r.gbp, o.gbp)


def test_slim_maps_with_all_blocks_randomised_are_finite_and_the_explainer_is_untouched(
        mobilenet):
    explainer, blocks, photo = mobilenet
    original = explainer.explain(photo, 282)
    feeds = randomised_feeds(blocks, range(len(blocks)))
    _assert_randomised_maps(explainer.explain(photo, 282, feeds=feeds), original)
    top = randomised_feeds(blocks, cascading_steps(blocks)[0][1])
    assert not np.array_equal(explainer.explain(photo, 282, feeds=top)[0].cam, original[0].cam)
    _assert_same_maps(explainer.explain(photo, 282), original)
    stored = explainer.session.run([w.tensors[0] for block in blocks for w in block.weights])
    for value, weight in zip(stored, [w for block in blocks for w in block.weights]):
        np.testing.assert_array_equal(value, weight.value)


# -- a Keras 3 model with BatchNorm, and a TF 1 graph with ref variables ----------------------------

@pytest.fixture(scope="module")
def keras_path(tmp_path_factory):
    """conv1 → bn1 (random moving statistics, variances spread so that 2σ reaches below 0) →
    relu → features → pooling → scores, saved as .keras."""
    path = str(tmp_path_factory.mktemp("keras") / "small.keras")
    rng = np.random.default_rng(0)
    with eager():
        keras.utils.set_random_seed(5)
        inputs = keras.Input((SIZE, SIZE, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
        x = keras.layers.BatchNormalization(name="bn1")(x)
        x = keras.layers.ReLU(name="relu1")(x)
        x = keras.layers.Conv2D(6, 3, activation="relu", name="features")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        model = keras.Model(inputs, keras.layers.Dense(4, name="scores")(x), name="small")
        bn = model.get_layer("bn1")
        bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.2, 8), rng.normal(0, 0.5, 8),
                        np.linspace(0.01, 3.0, 8)])  # gamma, beta, mean, variance
        model.save(path)
    return path


@pytest.fixture(scope="module")
def keras_explainers(keras_path):
    with GuidedGradCam(keras_path, preprocess="unit") as first, \
            GuidedGradCam(keras_path, preprocess="unit") as second:
        yield first, second


def test_keras_blocks_are_keras_layers_and_randomise_to_finite_maps(keras_explainers):
    explainer, second = keras_explainers
    blocks = weight_blocks(explainer)
    assert [block.name for block in blocks] == ["conv1", "bn1", "features", "scores"]
    assert [len(block.weights) for block in blocks] == [2, 4, 2, 2]
    # Another explainer of the same file: the same weights, the same random values.
    others = weight_blocks(second)
    for block, other in zip(blocks, others):
        for weight, twin in zip(block.weights, other.weights):
            assert weight.name == twin.name
            np.testing.assert_array_equal(random_value(weight, 4), random_value(twin, 4))
    images = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)
    original = explainer.explain(images, [0, 1])
    conv1 = explainer.graph.model.layers["conv1"]
    before = explainer.session.run(conv1, {explainer.graph.images: images})
    for label, indices in independent_steps(blocks):
        feeds = randomised_feeds(blocks, indices)
        _assert_randomised_maps(explainer.explain(images, [0, 1], feeds=feeds), original)
        after = explainer.session.run(conv1, {explainer.graph.images: images, **feeds})
        assert np.array_equal(after, before) == (label != "conv1"), label
    _assert_randomised_maps(
        explainer.explain(images, [0, 1], feeds=randomised_feeds(blocks, range(4))), original)
    _assert_same_maps(explainer.explain(images, [0, 1]), original)


@pytest.fixture(scope="module")
def meta_path(tmp_path_factory):
    """A TF 1 graph with ref variables (VariableV2 read through Identity), saved as .meta."""
    prefix = str(tmp_path_factory.mktemp("meta") / "model")
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="input")
        with tf.variable_scope("", use_resource=False):
            net = slim.conv2d(images, 4, [3, 3], normalizer_fn=slim.batch_norm,
                              normalizer_params={"is_training": False}, scope="conv1")
            net = slim.conv2d(net, 6, [3, 3], stride=2, activation_fn=tf.nn.relu6, scope="conv2")
            net = tf.reduce_mean(net, [1, 2])
            slim.fully_connected(net, 3, activation_fn=None, scope="logits")
        assert {v.op.type for v in tf.global_variables()} == {"VariableV2"}
        with tf.Session() as session:
            tf.set_random_seed(0)
            session.run(tf.global_variables_initializer())
            tf.train.Saver().save(session, prefix)
    return prefix + ".meta"


def test_ref_variables_are_fed_through_their_read_identity(meta_path):
    images = np.random.default_rng(2).integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.uint8)
    with GuidedGradCam(meta_path, input="input:0", output="logits/BiasAdd",
                       preprocess="unit") as explainer:
        blocks = weight_blocks(explainer)
        assert [block.name for block in blocks] == ["conv1", "conv2", "logits"]
        assert sorted(w.name for w in blocks[0].weights) == [
            "conv1/BatchNorm/beta", "conv1/BatchNorm/moving_mean",
            "conv1/BatchNorm/moving_variance", "conv1/weights"]
        for weight in (w for block in blocks for w in block.weights):
            assert [t.op.name for t in weight.tensors] == ["model/%s/read" % weight.name]
        original = explainer.explain(images, 0)
        for _, indices in cascading_steps(blocks):
            _assert_randomised_maps(
                explainer.explain(images, 0, feeds=randomised_feeds(blocks, indices)), original)
        _assert_same_maps(explainer.explain(images, 0), original)
