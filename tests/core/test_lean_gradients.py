"""The lean BatchNorm and Conv2D gradients: the same values as TF's own, with less work."""
import contextlib

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from conftest import ancestor_ops

from guided_gradcam.core import lean_gradients  # noqa: F401  (registers the gradients)
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.core.guided_relu import guided_override

X, UPSTREAM = np.random.default_rng(0).normal(size=(2, 2, 5, 4, 3)).astype(np.float32)
GAMMA = np.array([1.5, -0.5, 2.0], np.float32)  # a negative scale flips the gradient's sign
BETA = np.array([0.1, 0.2, -0.3], np.float32)
MEAN = np.array([0.5, -1.0, 0.0], np.float32)
VARIANCE = np.array([2.0, 0.25, 1.0], np.float32)


def _gradients(overridden, is_training=False):
    graph = tf.Graph()
    with graph.as_default():
        x, gamma, beta = tf.constant(X), tf.constant(GAMMA), tf.constant(BETA)

        def batch_norm():
            return tf.nn.fused_batch_norm(
                x, gamma, beta, mean=None if is_training else MEAN,
                variance=None if is_training else VARIANCE, epsilon=1e-3,
                is_training=is_training)[0]

        with guided_override(graph) if overridden else contextlib.nullcontext():
            y = batch_norm()
        assert y.op.type == "FusedBatchNormV3"
        grads = tf.gradients(y, [x, gamma, beta], grad_ys=tf.constant(UPSTREAM))
        with tf.Session() as session:
            return session.run(grads)


def test_equals_tensorflows_own_gradient_for_input_scale_and_offset():
    ours, stock = _gradients(overridden=True), _gradients(overridden=False)
    for mine, theirs in zip(ours, stock):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_input_gradient_is_the_hand_computed_per_channel_scale():
    grad_x = _gradients(overridden=True)[0]
    # A float32 product of three roundings: measured 1.6e-7 relative; 1e-5 keeps a 60x margin.
    np.testing.assert_allclose(grad_x, UPSTREAM * GAMMA / np.sqrt(VARIANCE + 1e-3), rtol=1e-5)


def test_training_mode_batch_norm_is_refused():
    with pytest.raises(GuidedGradCamError, match="is_training=True"):
        _gradients(overridden=True, is_training=True)


def _conv_gradients(overridden, x_shape, kernel_shape, **conv_args):
    rng = np.random.default_rng(1)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.constant(rng.normal(size=x_shape).astype(np.float32))
        kernel = tf.constant(rng.normal(size=kernel_shape).astype(np.float32))
        with guided_override(graph) if overridden else contextlib.nullcontext():
            y = tf.nn.conv2d(x, kernel, **conv_args)
        upstream = tf.constant(rng.normal(size=y.shape.as_list()).astype(np.float32))
        grads = tf.gradients(y, [x, kernel], grad_ys=upstream)
        with tf.Session() as session:
            return session.run(grads), [op.type for op in graph.get_operations()]


@pytest.mark.parametrize("x_shape, kernel_shape, conv_args, fully_connected", [
    ((3, 7, 7, 5), (7, 7, 5, 4), dict(strides=1, padding="VALID"), True),   # like VGG's fc6
    ((3, 1, 1, 6), (1, 1, 6, 4), dict(strides=1, padding="VALID"), True),   # like fc7, fc8
    ((2, 9, 8, 3), (3, 3, 3, 4), dict(strides=2, padding="SAME"), False),
    ((2, 7, 7, 3), (7, 7, 3, 4), dict(strides=1, padding="SAME"), False),   # padded: not FC
])
def test_conv2d_gradient_equals_tensorflows_own(x_shape, kernel_shape, conv_args, fully_connected):
    (ours, our_ops), (stock, _) = (_conv_gradients(overridden, x_shape, kernel_shape, **conv_args)
                                   for overridden in (True, False))
    for mine, theirs in zip(ours, stock):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4)
    assert ("Conv2DBackpropInput" not in our_ops) == fully_connected


def _conv_batch_norm_gradients(overridden, depthwise, also_read_conv_output=False,
                               arithmetic=False):
    """∂/∂x and ∂/∂kernel through conv → inference BatchNorm, and the ops behind ∂/∂x.
    arithmetic: the BatchNorm as Keras 3 freezes it, conv · k + (β − μ k) with
    k = γ / √(σ² + ε), instead of one FusedBatchNorm op."""
    rng = np.random.default_rng(2)
    channels = 6
    graph = tf.Graph()
    with graph.as_default():
        x = tf.constant(rng.normal(size=(2, 8, 7, 3)).astype(np.float32))
        shape = (3, 3, 3, 2) if depthwise else (3, 3, 3, channels)  # depthwise: multiplier 2
        kernel = tf.constant(rng.normal(size=shape).astype(np.float32))
        gamma, beta, mean = (tf.constant(rng.normal(size=channels).astype(np.float32))
                             for _ in range(3))
        variance = tf.constant(rng.uniform(0.2, 2.0, channels).astype(np.float32))
        with guided_override(graph) if overridden else contextlib.nullcontext():
            conv = (tf.nn.depthwise_conv2d(x, kernel, [1, 2, 2, 1], "SAME") if depthwise
                    else tf.nn.conv2d(x, kernel, 2, "SAME"))
            if arithmetic:
                factor = gamma * tf.math.rsqrt(variance + 1e-3)
                y = conv * factor + (beta - mean * factor)
                assert y.op.inputs[0].op.type == "Mul"
            else:
                y = tf.nn.fused_batch_norm(conv, gamma, beta, mean, variance, 1e-3,
                                           is_training=False)[0]
            if also_read_conv_output:  # a second path into the conv: nothing may be folded
                y = y + conv
        upstream = tf.constant(rng.normal(size=y.shape.as_list()).astype(np.float32))
        grads = tf.gradients(y, [x, kernel], grad_ys=upstream)
        activation_products = [
            op.name for op in ancestor_ops([grads[0]])
            if op.type == "Mul" and op.outputs[0].shape.as_list() == conv.shape.as_list()]
        with tf.Session() as session:
            return session.run(grads), activation_products


@pytest.mark.parametrize("arithmetic", [False, True], ids=["fused", "keras3_arithmetic"])
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("also_read_conv_output", [False, True])
def test_batch_norm_factor_folded_into_the_conv_filter(depthwise, also_read_conv_output,
                                                       arithmetic):
    (ours, our_products), (stock, _) = (
        _conv_batch_norm_gradients(overridden, depthwise, also_read_conv_output, arithmetic)
        for overridden in (True, False))
    for mine, theirs in zip(ours, stock):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4)
    # Folded, the input gradient never multiplies an activation-sized tensor by the factor;
    # with a second path into the conv, the product must stay (the gradients are summed).
    assert bool(our_products) == also_read_conv_output, our_products


def _tile_gradient(overridden, x_shape, multiples, known_batch=True):
    """∂/∂x of tf.tile (Keras's nearest UpSampling2D repeats by it), with an upstream gradient,
    and the int32 Transposes behind it."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=x_shape).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, x_shape if known_batch else (None,) + x_shape[1:])
        with guided_override(graph) if overridden else contextlib.nullcontext():
            y = tf.tile(x, multiples)
        upstream_shape = [n * m for n, m in zip(x_shape, multiples)]
        upstream = tf.constant(rng.normal(size=upstream_shape).astype(np.float32))
        grad = tf.gradients(y, x, grad_ys=upstream)[0]
        int_transposes = [op.name for op in ancestor_ops([grad])
                          if op.type == "Transpose" and op.get_attr("T") == tf.int32]
        assert grad.shape.as_list() == list(x.shape.as_list())
        with tf.Session() as session:
            return session.run(grad, {x: values}), int_transposes


@pytest.mark.parametrize("x_shape, multiples, known_batch", [
    ((2, 3, 4, 5), (1, 2, 3, 1), False),  # UpSampling2D's repeat, batch unknown
    ((2, 3), (3, 2), True),
])
def test_tile_gradient_equals_tensorflows_own_without_an_int32_transpose(x_shape, multiples,
                                                                          known_batch):
    """TF's Tile gradient transposes an int32 [2, rank] tensor: oneDNN takes it and logs an
    error line on CPUs without AVX-512 (tests/cli: no such line). Ours sums the same tiles."""
    (ours, our_transposes), (stock, stock_transposes) = (
        _tile_gradient(overridden, x_shape, multiples, known_batch) for overridden in (True, False))
    assert stock_transposes and not our_transposes, (stock_transposes, our_transposes)
    np.testing.assert_array_equal(ours, stock)  # the same sums, in the same order
