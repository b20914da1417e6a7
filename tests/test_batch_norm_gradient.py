"""The lean inference-mode BatchNorm gradient: the same values as TF's own, fewer reads."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from guided_gradcam import batch_norm_gradient  # noqa: F401  (registers the gradient)
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.guided_relu import guided_override

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 5, 4, 3)).astype(np.float32)
UPSTREAM = RNG.normal(size=X.shape).astype(np.float32)
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

        if overridden:
            with guided_override(graph):
                y = batch_norm()
        else:
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
    np.testing.assert_allclose(grad_x, UPSTREAM * GAMMA / np.sqrt(VARIANCE + 1e-3), rtol=1e-6)


def test_training_mode_batch_norm_is_refused():
    with pytest.raises(GuidedGradCamError, match="is_training=True"):
        _gradients(overridden=True, is_training=True)
