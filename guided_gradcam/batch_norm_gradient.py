"""The gradient of inference-mode FusedBatchNorm, as a per-channel scale.

At inference BatchNorm is affine: y = γ (x − μ) / √(σ² + ε) + β with fixed μ, σ², so
∂y/∂x = γ / √(σ² + ε) per channel. TF's stock gradient runs FusedBatchNormGradV3, which reads x
and reduces the whole tensor for ∂/∂γ and ∂/∂β in the same kernel. Here ∂/∂x is a multiply that
does not read x, and ∂/∂γ, ∂/∂β are separate ops that a run prunes unless it fetches them. With
nothing in the backward pass reading the pre-BatchNorm tensor (the ReLU gradients gate on their
outputs), grappler can fuse Conv2D + BatchNorm + ReLU6 of the forward pass into one kernel.
"""
import sys

import tensorflow.compat.v1 as tf

from guided_gradcam.errors import GuidedGradCamError

INFERENCE_BATCH_NORM = "GuidedGradCamInferenceBatchNorm"
OVERRIDE_MAP = {op_type: INFERENCE_BATCH_NORM
                for op_type in ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")}


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


def _register_once():
    # Same reload-safe registration as guided_relu: tf.RegisterGradient refuses a second call.
    try:
        tf.RegisterGradient(INFERENCE_BATCH_NORM)(
            lambda op, *grads, mod=__name__: sys.modules[mod]._inference_batch_norm_grad(op, *grads))
    except KeyError:
        pass


_register_once()
