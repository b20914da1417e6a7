"""Guided-backpropagation gradients for Relu and Relu6, registered once per process.

A network built inside `guided_override(graph)` has every Relu/Relu6 op tagged with our gradient
names (TF stores them in the op's `_gradient_op_type` attr). Which gradient `tf.gradients` then
builds is decided when the gradient graph is *constructed*: guided by default, and the ordinary
ReLU gradient inside `plain_gradients()`. That is how Grad-CAM gets the plain ∂y/∂A from the very
forward ops whose guided gradients give GBP: one forward pass serves both.
"""
import contextlib
import threading

import tensorflow.compat.v1 as tf

from guided_gradcam.core import lean_gradients
from guided_gradcam.core.gradient_registry import register_once

GUIDED_RELU = "GuidedGradCamRelu"
GUIDED_RELU6 = "GuidedGradCamRelu6"
OVERRIDE_MAP = {"Relu": GUIDED_RELU, "Relu6": GUIDED_RELU6}

_state = threading.local()


def _plain_mode():
    return getattr(_state, "plain", False)


@contextlib.contextmanager
def plain_gradients():
    """Gradients constructed inside this block treat guided ReLUs as ordinary ReLUs."""
    previous = _plain_mode()
    _state.plain = True
    try:
        yield
    finally:
        _state.plain = previous


# Both gradients gate on the op's output, as TF's own ReLU gradient does (out > 0 exactly where
# in > 0; 0 < out < 6 exactly where 0 < in < 6): with no backward op reading the pre-activation,
# grappler may fuse the forward Conv2D + BiasAdd/BatchNorm + ReLU into one kernel.
def _guided_relu_grad(op, grad):
    features = op.outputs[0]
    if _plain_mode():
        return tf.raw_ops.ReluGrad(gradients=grad, features=features)
    # Pass only where the incoming gradient and the forward input are both positive: the
    # ordinary gate applied to the positive part of the incoming gradient (two fused ops).
    return tf.raw_ops.ReluGrad(gradients=tf.maximum(grad, 0.0), features=features)


def _guided_relu6_grad(op, grad):
    features = op.outputs[0]
    if _plain_mode():
        return tf.raw_ops.Relu6Grad(gradients=grad, features=features)
    # Relu6Grad's gate is 0 < input < 6: ReLU6 is flat above 6, so that gate closes too.
    return tf.raw_ops.Relu6Grad(gradients=tf.maximum(grad, 0.0), features=features)


register_once(__name__, {GUIDED_RELU: "_guided_relu_grad",
                         GUIDED_RELU6: "_guided_relu6_grad"})


# An imported swish/silu is IdentityN(x·σ(x), x) tagged with the CustomGradient-N of the graph
# it was traced in, which this graph does not know: tf.gradients would fail on it. IdentityN's
# stock gradient instead differentiates through the explicit Mul and Sigmoid: the same value.
IMPORTED_CUSTOM_GRADIENTS = {"IdentityN": "IdentityN"}


@contextlib.contextmanager
def guided_override(graph=None):
    """Ops created in this block get guided gradients for Relu and Relu6 (and the lean
    BatchNorm and Conv2D gradients of `lean_gradients`, which change no value)."""
    graph = graph or tf.get_default_graph()
    with graph.gradient_override_map(
            {**OVERRIDE_MAP, **lean_gradients.OVERRIDE_MAP, **IMPORTED_CUSTOM_GRADIENTS}):
        yield


def unguided_relu_ops(graph):
    """Relu/Relu6 ops of `graph` that do NOT carry the guided override (should be empty)."""
    missing = []
    for op in graph.get_operations():
        if op.type in OVERRIDE_MAP:
            try:
                tagged = op.get_attr("_gradient_op_type").decode()
            except ValueError:
                tagged = None
            if tagged != OVERRIDE_MAP[op.type]:
                missing.append(op.name)
    return missing
