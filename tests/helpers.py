"""Helpers shared by several test modules (test modules import from here, never from each
other): the toy network whose gradients the tests write out by hand, bilinear upsampling with
half-pixel centres written out in numpy, and guided ReLU / ReLU6 of the tests' own
(`tf.custom_gradient`, eager), for references that share no code with the toolkit's override."""
import numpy as np
import tensorflow as tf2
import tensorflow.compat.v1 as tf

from guided_gradcam.zoo.networks import NetworkSpec


def _toy_weights():
    rng = np.random.default_rng(7)
    return (rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
            rng.normal(size=(4, 6)).astype(np.float32),
            rng.normal(size=(6, 3)).astype(np.float32))


KERNEL, W_HIDDEN, W_LOGITS = _toy_weights()


def toy_build(images, num_classes):
    features = tf.nn.relu(tf.nn.conv2d(images, KERNEL, strides=2, padding="SAME"))
    pre_hidden = tf.matmul(tf.reduce_mean(features, axis=[1, 2]), W_HIDDEN)
    logits = tf.matmul(tf.nn.relu(pre_hidden), W_LOGITS[:, :num_classes])
    return logits, {"features": features}


TOY = NetworkSpec(
    name="toy", build=toy_build, preprocess=lambda rgb: rgb / 255.0, preprocessing_name="/255",
    input_size=(8, 8), default_layer="features", logits_variable="", archive="",
    checkpoint_name="")


def toy_images(seed, count):
    return np.random.default_rng(seed).integers(0, 256, size=(count, 8, 8, 3)).astype(np.uint8)


def bilinear_half_pixel(image, height, width):
    """Bilinear upsampling with pixel centres at (i + 0.5), edges clamped, written out."""
    def weights(size_in, size_out):
        source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, size_in - 1)
        matrix = np.zeros((size_out, size_in))
        matrix[np.arange(size_out), low] += 1 - (source - low)
        matrix[np.arange(size_out), high] += source - low
        return matrix
    return weights(image.shape[0], height) @ image @ weights(image.shape[1], width).T


@tf2.custom_gradient
def guided_relu(x):
    def grad(dy):
        return dy * tf2.cast(dy > 0, dy.dtype) * tf2.cast(x > 0, dy.dtype)
    return tf2.nn.relu(x), grad


@tf2.custom_gradient
def guided_relu6(x):
    def grad(dy):
        return dy * tf2.cast(dy > 0, dy.dtype) * tf2.cast((x > 0) & (x < 6), dy.dtype)
    return tf2.nn.relu6(x), grad
