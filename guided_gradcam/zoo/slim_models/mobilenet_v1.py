"""MobileNet V1 (Howard et al., arXiv 1704.04861) in TF-Slim.

Scopes and variable names follow the official TF-Slim checkpoints, so those checkpoints (and the
ones `guided_gradcam.zoo.convert_tfjs` writes) restore into this graph unchanged:
`MobilenetV1/Conv2d_0/weights`, `MobilenetV1/Conv2d_<k>_depthwise/depthwise_weights`,
`MobilenetV1/Conv2d_<k>_pointwise/weights`, `.../BatchNorm/{beta,gamma,moving_mean,moving_variance}`,
`MobilenetV1/Logits/Conv2d_1c_1x1/{weights,biases}`.
"""
import tensorflow.compat.v1 as tf
import tf_slim as slim

from guided_gradcam.core import tf_compat  # noqa: F401  (slim.batch_norm needs the shim)

# (stride, base depth) of the 13 depthwise-separable layers after Conv2d_0 (3x3/2, depth 32).
SEPARABLE_LAYERS = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
)
STEM_DEPTH = 32
MIN_DEPTH = 8


def mobilenet_v1_arg_scope(batch_norm_decay=0.9997, batch_norm_epsilon=0.001):
    """Inference arg scope: every conv is followed by BatchNorm (with gamma) and ReLU6."""
    batch_norm_params = {
        "center": True,
        "scale": True,
        "decay": batch_norm_decay,
        "epsilon": batch_norm_epsilon,
        "is_training": False,
    }
    with slim.arg_scope(
        [slim.conv2d, slim.separable_conv2d],
        weights_initializer=tf.truncated_normal_initializer(stddev=0.09),
        activation_fn=tf.nn.relu6,
        normalizer_fn=slim.batch_norm,
        padding="SAME",
    ):
        with slim.arg_scope([slim.batch_norm], **batch_norm_params) as scope:
            return scope


def mobilenet_v1(images, num_classes=1001, depth_multiplier=1.0, scope="MobilenetV1"):
    """Builds MobileNet V1 for inference. Returns (logits [B, num_classes], end_points).

    End points hold each layer's post-ReLU6 output under its scope name ('Conv2d_0',
    'Conv2d_1_depthwise', 'Conv2d_1_pointwise', ..., 'Conv2d_13_pointwise'), then 'AvgPool_1a',
    'Logits' and 'Predictions'. The pooling is global, so any input size works.
    """
    def depth(base):
        return max(int(base * depth_multiplier), MIN_DEPTH)

    end_points = {}
    with tf.variable_scope(scope, "MobilenetV1", [images]):
        net = slim.conv2d(images, depth(STEM_DEPTH), [3, 3], stride=2, scope="Conv2d_0")
        end_points["Conv2d_0"] = net
        for index, (stride, base_depth) in enumerate(SEPARABLE_LAYERS, start=1):
            name = "Conv2d_%d_depthwise" % index
            net = slim.separable_conv2d(
                net, None, [3, 3], depth_multiplier=1, stride=stride, scope=name)
            end_points[name] = net
            name = "Conv2d_%d_pointwise" % index
            net = slim.conv2d(net, depth(base_depth), [1, 1], stride=1, scope=name)
            end_points[name] = net

        with tf.variable_scope("Logits"):
            net = tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="AvgPool_1a")
            end_points["AvgPool_1a"] = net
            # Dropout is the identity at inference; the official graph's dropout has no variables.
            logits = slim.conv2d(
                net, num_classes, [1, 1], activation_fn=None, normalizer_fn=None,
                biases_initializer=tf.zeros_initializer(), scope="Conv2d_1c_1x1")
            logits = tf.squeeze(logits, [1, 2], name="SpatialSqueeze")
        end_points["Logits"] = logits
        end_points["Predictions"] = tf.nn.softmax(logits, name="Predictions")
    return logits, end_points
