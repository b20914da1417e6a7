"""Gradients equal to TensorFlow's own, computed with less work, for the explanation graph.

Inference-mode FusedBatchNorm is affine: y = γ (x − μ) / √(σ² + ε) + β with fixed μ, σ², so
∂y/∂x = γ / √(σ² + ε) per channel. TF's stock gradient runs FusedBatchNormGradV3, which reads x
and reduces the whole tensor for ∂/∂γ and ∂/∂β in the same kernel. Here ∂/∂x is a multiply that
does not read x, and ∂/∂γ, ∂/∂β are separate ops that a run prunes unless it fetches them. With
nothing in the backward pass reading the pre-BatchNorm tensor (the ReLU gradients gate on their
outputs), grappler can fuse Conv2D + BatchNorm + ReLU6 of the forward pass into one kernel.

That per-channel factor is folded into the conv before it when the BatchNorm reads a conv's
output: Conv2DBackpropInput(dy · k, W) = Conv2DBackpropInput(dy, W · k), where W · k scales the
filter (a few thousand numbers) instead of the activation gradient (millions). The conv's
gradient finds dy and k in a per-graph table keyed by the exact tensor the BatchNorm gradient
returned, so any other path into the conv (a sum of gradients) keeps the plain product.

Keras 3 freezes an inference BatchNorm into plain arithmetic, conv · k + b (Mul, AddV2), and
tf-keras keeps FusedBatchNormV3. The Mul of a conv's output by a per-channel factor that does not
depend on the input gets the same fold: its gradient records (dy, k) for the conv before it.
Every other Mul keeps TensorFlow's own gradient.

Tile (Keras's nearest UpSampling2D repeats by it) keeps TensorFlow's gradient, the upstream
gradient summed over the tiles, but builds the interleaved shape [m0, s0, m1, s1, ...] by a
Pack along axis 1 instead of TF's int32 Transpose: oneDNN takes that Transpose and, on a CPU
without AVX-512, logs an error line ("oneDNN supports DT_INT32 only on platforms with AVX-512")
during GBP. The summed axes are a constant where the input's rank is known.

A Conv2D whose VALID kernel covers its whole input (VGG's fc6, 7×7×512×4096 on a 7×7 map; the
1×1 convs on 1×1 maps after it) is a fully connected layer: its gradients are one MatMul each,
which runs 3-6x faster than Conv2DBackpropInput on that shape. Other convs keep the stock ops.
"""
import weakref

import tensorflow.compat.v1 as tf
from tensorflow.python.ops import array_grad  # TF's own Tile gradient, for IndexedSlices
from tensorflow.python.ops import math_grad  # TF's own Mul gradient, which _mul_grad extends

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.core.gradient_registry import register_once

INFERENCE_BATCH_NORM = "GuidedGradCamInferenceBatchNorm"
CONV2D = "GuidedGradCamConv2D"
DEPTHWISE_CONV2D = "GuidedGradCamDepthwiseConv2D"
MUL = "GuidedGradCamMul"
TILE = "GuidedGradCamTile"
OVERRIDE_MAP = {
    "Mul": MUL,
    "Tile": TILE,
    "FusedBatchNorm": INFERENCE_BATCH_NORM,
    "FusedBatchNormV2": INFERENCE_BATCH_NORM,
    "FusedBatchNormV3": INFERENCE_BATCH_NORM,
    "Conv2D": CONV2D,
    "DepthwiseConv2dNative": DEPTHWISE_CONV2D,
}

# {graph: {name of a BatchNorm input gradient: (its upstream gradient, per-channel factor)}}
_BATCH_NORM_FACTORS = weakref.WeakKeyDictionary()


def _folded_factor(grad):
    """(upstream gradient, per-channel factor k) if grad is a BatchNorm's dy · k, else None."""
    return _BATCH_NORM_FACTORS.get(grad.graph, {}).get(grad.name)


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
    inv_std = tf.math.rsqrt(variance + op.get_attr("epsilon"))
    factor = gamma * inv_std  # ∂y/∂x per channel
    grad_x = grad_y * tf.reshape(factor, channel_shape)
    _BATCH_NORM_FACTORS.setdefault(grad_x.graph, {})[grad_x.name] = (grad_y, factor)
    normalized = (x - tf.reshape(mean, channel_shape)) * tf.reshape(inv_std, channel_shape)
    grad_gamma = tf.reduce_sum(grad_y * normalized, reduce_axes)
    grad_beta = tf.reduce_sum(grad_y, reduce_axes)
    return grad_x, grad_gamma, grad_beta, None, None


def _depends_on_a_placeholder(tensor, memo):
    """Whether `tensor` varies with any fed value (the images): a BatchNorm factor does not."""
    op = tensor.op
    if op not in memo:
        memo[op] = op.type in ("Placeholder", "PlaceholderWithDefault") or any(
            _depends_on_a_placeholder(t, memo) for t in op.inputs)
    return memo[op]


def _mul_grad(op, grad):
    """TF's Mul gradient; for conv output · per-channel constant, also the conv's fold."""
    stock = math_grad._MulGrad(op, grad)
    for conv_side, factor_side in ((0, 1), (1, 0)):
        conv, factor = op.inputs[conv_side], op.inputs[factor_side]
        if (conv.op.type in ("Conv2D", "DepthwiseConv2dNative") and conv.shape.ndims == 4
                and conv.shape[-1] is not None and op.outputs[0].shape.ndims == 4
                and factor.shape.is_fully_defined() and factor.shape.ndims >= 1
                and factor.shape.num_elements() == conv.shape[-1]
                and factor.shape[:-1].num_elements() == 1
                and not _depends_on_a_placeholder(factor, {})):
            grad_conv = grad * factor  # the stock value: factor broadcasts along channels
            _BATCH_NORM_FACTORS.setdefault(grad_conv.graph, {})[grad_conv.name] = (
                grad, tf.reshape(factor, [-1]))
            grads = list(stock)
            grads[conv_side] = grad_conv
            return tuple(grads)
    return stock


def _tile_grad(op, grad):
    """TF's Tile gradient, Σ over the tiles of grad reshaped to [m0, s0, m1, s1, ...], with no
    int32 Transpose (the module docstring); TF's own for sparse gradients or an unknown rank."""
    x, multiples = op.inputs
    if isinstance(grad, tf.IndexedSlices) or x.shape.ndims is None:
        return array_grad._TileGrad(op, grad)
    shape = tf.shape(x, out_type=multiples.dtype)
    split_shape = tf.reshape(tf.stack([multiples, shape], axis=1), [-1])  # m0, s0, m1, s1, ...
    input_grad = tf.reduce_sum(tf.reshape(grad, split_shape), list(range(0, 2 * x.shape.ndims, 2)))
    input_grad.set_shape(x.shape)
    return input_grad, None


def _is_fully_connected(op):
    """A VALID, NHWC, unstrided, undilated conv whose kernel spans its whole (static) input."""
    x, kernel = op.inputs
    return (op.get_attr("padding") == b"VALID" and op.get_attr("data_format") == b"NHWC"
            and list(op.get_attr("strides")) == [1, 1, 1, 1]
            and list(op.get_attr("dilations")) == [1, 1, 1, 1]
            and x.shape[1:3].is_fully_defined()
            and x.shape[1:3].as_list() == kernel.shape[0:2].as_list())


def _input_gradient_operands(kernel, grad, depthwise=False):
    """(filter, out_backprop) for the input gradient: a following BatchNorm's factor folded
    into the filter, else the plain pair. The factor runs over the conv's output channels: a
    Conv2D filter's last axis [.., C_in, C_out]; a depthwise filter's last two [.., C_in, M],
    whose output channel c·M + m is the row-major order of (C_in, M)."""
    folded = _folded_factor(grad)
    if folded is None:
        return kernel, grad
    grad_y, factor = folded
    if depthwise:
        factor = tf.reshape(factor, tf.shape(kernel)[2:])
    return kernel * factor, grad_y


def _conv2d_grad(op, grad):
    x, kernel = op.inputs
    input_kernel, input_grad = _input_gradient_operands(kernel, grad)
    if _is_fully_connected(op):
        out_channels = tf.shape(kernel)[3]
        grad_rows = tf.reshape(grad, [-1, out_channels])  # [B, C_out]
        grad_x = tf.matmul(tf.reshape(input_grad, [-1, out_channels]),
                           tf.reshape(input_kernel, [-1, out_channels]), transpose_b=True)
        grad_kernel = tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), grad_rows, transpose_a=True)
        return tf.reshape(grad_x, tf.shape(x)), tf.reshape(grad_kernel, tf.shape(kernel))
    # Any other conv: the very ops of TF's own Conv2D gradient.
    attrs = {name: op.get_attr(name) for name in (
        "strides", "padding", "explicit_paddings", "use_cudnn_on_gpu", "data_format", "dilations")}
    x_shape, kernel_shape = tf.shape_n([x, kernel])
    return (tf.raw_ops.Conv2DBackpropInput(
                input_sizes=x_shape, filter=input_kernel, out_backprop=input_grad, **attrs),
            tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=kernel_shape, out_backprop=grad, **attrs))


def _depthwise_conv2d_grad(op, grad):
    """TF's own DepthwiseConv2dNative gradient ops, with a following BatchNorm folded in."""
    x, kernel = op.inputs
    input_kernel, input_grad = _input_gradient_operands(kernel, grad, depthwise=True)
    attrs = {name: op.get_attr(name) for name in (
        "strides", "padding", "explicit_paddings", "data_format", "dilations")}
    x_shape, kernel_shape = tf.shape_n([x, kernel])
    return (tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
                input_sizes=x_shape, filter=input_kernel, out_backprop=input_grad, **attrs),
            tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
                input=x, filter_sizes=kernel_shape, out_backprop=grad, **attrs))


register_once(__name__, {MUL: "_mul_grad",
                         TILE: "_tile_grad",
                         INFERENCE_BATCH_NORM: "_inference_batch_norm_grad",
                         CONV2D: "_conv2d_grad",
                         DEPTHWISE_CONV2D: "_depthwise_conv2d_grad"})
