"""XGrad-CAM: w_k = Σ_ij (A^k_ij / Σ_ab A^k_ab) g^k_ij, 0 for an all-zero channel;
L = ReLU(Σ_k w_k A^k) (`base.combine`)."""
from guided_gradcam.methods.base import CamMethod


def weights(activations, grads):
    import tensorflow.compat.v1 as tf
    activation_sums = tf.reduce_sum(activations, axis=[1, 2], keepdims=True)
    return tf.reduce_sum(tf.math.divide_no_nan(activations, activation_sums) * grads,
                         axis=[1, 2], keepdims=True)


METHOD = CamMethod("xgradcam", "XGrad-CAM", "Fu et al., arXiv 2008.02312", 2, weights)
