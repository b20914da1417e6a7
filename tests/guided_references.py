"""Guided ReLU and ReLU6 of the tests' own (`tf.custom_gradient`, eager), for references that
share no code with the toolkit's override."""
import tensorflow as tf2


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
