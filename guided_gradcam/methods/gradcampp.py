"""Grad-CAM++, closed form for an exponential score: a^k_ij = (g^k_ij)² / (2 (g^k_ij)² +
Σ_ab A^k_ab (g^k_ij)³), 0 where the denominator is 0; w_k = Σ_ij a^k_ij ReLU(g^k_ij);
L = ReLU(Σ_k w_k A^k) (`base.combine`)."""
from guided_gradcam.methods.base import CamMethod


def weights(activations, grads):
    import tensorflow.compat.v1 as tf
    squared = tf.square(grads)
    activation_sums = tf.reduce_sum(activations, axis=[1, 2], keepdims=True)  # Σ_ab A^k_ab
    denominator = 2.0 * squared + activation_sums * squared * grads
    alphas = tf.math.divide_no_nan(squared, denominator)  # 0 where the denominator is 0
    return tf.reduce_sum(alphas * tf.maximum(grads, 0.0), axis=[1, 2], keepdims=True)


METHOD = CamMethod("gradcampp", "Grad-CAM++", "Chattopadhay et al., arXiv 1710.11063", 1,
                   weights)
