"""The guided gradients, pinned by hand-computed values, and the override's coverage."""
import functools
import importlib

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from conftest import ancestor_ops

from guided_gradcam.core import guided_relu
from guided_gradcam.graph import build_explanation_graph
from guided_gradcam.sources.slim import SlimSource
from guided_gradcam.zoo.networks import NETWORKS

# Forward inputs around both gates (0 and 6) and upstream gradients of both signs.
FEATURES = np.array([-1.0, 0.0, 0.5, 0.5, 3.0, 6.0, 7.0, 5.99], np.float32)
UPSTREAM = np.array([1.0, 1.0, -1.0, 2.0, 2.0, 1.0, 3.0, -0.5], np.float32)


def _gradient(activation, guided, plain=False):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.constant(FEATURES)
        if guided:
            with guided_relu.guided_override(graph):
                y = activation(x)
        else:
            y = activation(x)
        if plain:
            with guided_relu.plain_gradients():
                grad = tf.gradients(y, x, grad_ys=tf.constant(UPSTREAM))[0]
        else:
            grad = tf.gradients(y, x, grad_ys=tf.constant(UPSTREAM))[0]
        with tf.Session(graph=graph) as session:
            return session.run(grad)


def test_guided_relu_passes_only_positive_gradient_at_positive_input():
    expected = np.array([0, 0, 0, 2, 2, 1, 3, 0], np.float32)
    np.testing.assert_array_equal(_gradient(tf.nn.relu, guided=True), expected)


def test_guided_relu6_also_closes_at_and_above_six():
    expected = np.array([0, 0, 0, 2, 2, 0, 0, 0], np.float32)
    np.testing.assert_array_equal(_gradient(tf.nn.relu6, guided=True), expected)


@pytest.mark.parametrize("activation", [tf.nn.relu, tf.nn.relu6])
def test_plain_mode_gives_tensorflows_own_gradient(activation):
    ordinary = _gradient(activation, guided=False)
    np.testing.assert_array_equal(_gradient(activation, guided=True, plain=True), ordinary)
    # The ordinary gradient lets negative upstream values through: the guided one must not.
    assert (ordinary < 0).any()


def test_registration_survives_reimport_and_several_graphs():
    importlib.reload(guided_relu)  # registers again: must not raise KeyError
    np.testing.assert_array_equal(
        _gradient(tf.nn.relu6, guided=True), np.array([0, 0, 0, 2, 2, 0, 0, 0], np.float32))


def test_a_misspelt_override_is_detected():
    # gradient_override_map never validates op type names: our coverage check must notice.
    graph = tf.Graph()
    with graph.as_default(), graph.gradient_override_map({"ReLU": guided_relu.GUIDED_RELU}):
        tf.nn.relu(tf.constant([1.0]), name="misspelt")
    assert guided_relu.unguided_relu_ops(graph) == ["misspelt"]


@functools.lru_cache(maxsize=None)
def _explanation_graph(network):
    return build_explanation_graph(
        SlimSource(NETWORKS[network], 1001 if "mobilenet" in network else 1000))


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_relu_of_every_network_carries_the_override(network):
    graph = _explanation_graph(network).graph
    relus = [op for op in graph.get_operations() if op.type in guided_relu.OVERRIDE_MAP]
    expected = {"mobilenet_v1": 27, "mobilenet_v1_075": 27, "vgg_16": 15,
                "resnet_v1_50": 49, "resnet_v1_101": 100}[network]
    assert len(relus) == expected
    assert guided_relu.unguided_relu_ops(graph) == []


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_backward_pass_never_reads_a_pre_activation(network):
    # What lets grappler fuse Conv2D + BiasAdd/BatchNorm + ReLU of the forward pass: within a
    # run's ops, each BatchNorm and ReLU input is read by that forward op alone.
    explanation = _explanation_graph(network)
    run_ops = ancestor_ops([explanation.logits, explanation.cam, explanation.gbp,
                          explanation.guided_gradcam])
    forward = [op for op in run_ops if op.type in ("FusedBatchNormV3", "Relu", "Relu6")]
    assert len(forward) > 10
    for op in forward:
        readers = [c.name for c in op.inputs[0].consumers() if c in run_ops]
        assert readers == [op.name], "%s's input is read by %s" % (op.name, readers)
