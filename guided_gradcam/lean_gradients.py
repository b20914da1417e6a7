"""Gradients equal to TensorFlow's own, computed with less work, for the explanation graph.

Inference-mode FusedBatchNorm is affine: y = γ (x − μ) / √(σ² + ε) + β with fixed μ, σ², so
∂y/∂x = γ / √(σ² + ε) per channel. TF's stock gradient runs FusedBatchNormGradV3, which reads x
and reduces the whole tensor for ∂/∂γ and ∂/∂β in the same kernel. Here ∂/∂x is a multiply that
does not read x, and ∂/∂γ, ∂/∂β are separate ops that a run prunes unless it fetches them. With
nothing in the backward pass reading the pre-BatchNorm tensor (the ReLU gradients gate on their
outputs), grappler can fuse Conv2D + BatchNorm + ReLU6 of the forward pass into one kernel.

A Conv2D whose VALID kernel covers its whole input (VGG's fc6, 7×7×512×4096 on a 7×7 map; the
1×1 convs on 1×1 maps after it) is a fully connected layer: its gradients are one MatMul each,
which runs 3-6x faster than Conv2DBackpropInput on that shape. Other convs keep the stock ops.
"""
import tensorflow.compat.v1 as tf

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.gradient_registry import register_once

INFERENCE_BATCH_NORM = "GuidedGradCamInferenceBatchNorm"
CONV2D = "GuidedGradCamConv2D"
OVERRIDE_MAP = {
    "FusedBatchNorm": INFERENCE_BATCH_NORM,
    "FusedBatchNormV2": INFERENCE_BATCH_NORM,
    "FusedBatchNormV3": INFERENCE_BATCH_NORM,
    "Conv2D": CONV2D,
}


def _inference_batch_norm_grad(op, grad_y, *unused_grads):
    if op.get_attr("is_training"):
        raise GuidedGradCamError(
            "%s normalises with batch statistics (is_training=True): explanations need the "
            "inference-mode network, where each image is explained on its own" % op.name)
    x, gamma, _, mean, variance = op.inputs[:5]
    data_format = op.get_attr("data_format").decode()
    # Broadcast per-channel vectors along the channel axis of NHWC/NDHWC or NCHW/NCDHW.
    channel_shape = [-1] + [1] * (len(data_format) - 2) if data_format.startswith("NC") else [-1]
    reduce_axes = [axis for axis, letter in enumerate(data_format) if letter != "C"]
    inv_std = tf.reshape(tf.math.rsqrt(variance + op.get_attr("epsilon")), channel_shape)
    grad_x = grad_y * (tf.reshape(gamma, channel_shape) * inv_std)
    grad_gamma = tf.reduce_sum(grad_y * (x - tf.reshape(mean, channel_shape)) * inv_std, reduce_axes)
    grad_beta = tf.reduce_sum(grad_y, reduce_axes)
    return grad_x, grad_gamma, grad_beta, None, None


def _is_fully_connected(op):
    """A VALID, NHWC, unstrided, undilated conv whose kernel spans its whole (static) input."""
    x, kernel = op.inputs
    return (op.get_attr("padding") == b"VALID" and op.get_attr("data_format") == b"NHWC"
            and list(op.get_attr("strides")) == [1, 1, 1, 1]
            and list(op.get_attr("dilations")) == [1, 1, 1, 1]
            and x.shape[1:3].is_fully_defined()
            and x.shape[1:3].as_list() == kernel.shape[0:2].as_list())


def _conv2d_grad(op, grad):
    x, kernel = op.inputs
    if _is_fully_connected(op):
        out_channels = tf.shape(kernel)[3]
        grad_rows = tf.reshape(grad, [-1, out_channels])  # [B, C_out]
        grad_x = tf.matmul(grad_rows, tf.reshape(kernel, [-1, out_channels]), transpose_b=True)
        grad_kernel = tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), grad_rows, transpose_a=True)
        return tf.reshape(grad_x, tf.shape(x)), tf.reshape(grad_kernel, tf.shape(kernel))
    # Any other conv: the very ops of TF's own Conv2D gradient.
    attrs = {name: op.get_attr(name) for name in (
        "strides", "padding", "explicit_paddings", "use_cudnn_on_gpu", "data_format", "dilations")}
    x_shape, kernel_shape = tf.shape_n([x, kernel])
    return (tf.raw_ops.Conv2DBackpropInput(
                input_sizes=x_shape, filter=kernel, out_backprop=grad, **attrs),
            tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=kernel_shape, out_backprop=grad, **attrs))


register_once(__name__, {INFERENCE_BATCH_NORM: "_inference_batch_norm_grad",
                         CONV2D: "_conv2d_grad"})
