"""The Grad-CAM family: class activation maps from the layer's activations A and the plain
gradient g = ∂y^c/∂A, for a whole batch in-graph (A, g: [B, h, w, K] → map [B, h, w]).

Every method needs only what the explanation graph's one session run already has, so all of
them come at almost no cost. A counterfactual explanation negates g for every method.
"""
import tensorflow.compat.v1 as tf

from guided_gradcam.method_names import METHODS


def _weighted_sum(weights, activations):
    """ReLU(Σ_k w_k A^k) for per-image, per-channel weights [B, 1, 1, K]. tf.maximum, not
    tf.nn.relu: every Relu op of the graph belongs to the network (and gets its override)."""
    return tf.maximum(tf.reduce_sum(weights * activations, axis=3), 0.0)


def gradcam(activations, grads):
    """Grad-CAM (Selvaraju et al., arXiv 1610.02391): w_k = mean_ij g^k_ij,
    L = ReLU(Σ_k w_k A^k)."""
    return _weighted_sum(tf.reduce_mean(grads, axis=[1, 2], keepdims=True), activations)


def gradcampp(activations, grads):
    """Grad-CAM++ (Chattopadhay et al., arXiv 1710.11063), closed form for an exponential score:
    a^k_ij = (g^k_ij)² / (2 (g^k_ij)² + Σ_ab A^k_ab (g^k_ij)³), 0 where the denominator is 0;
    w_k = Σ_ij a^k_ij ReLU(g^k_ij); L = ReLU(Σ_k w_k A^k)."""
    squared = tf.square(grads)
    activation_sums = tf.reduce_sum(activations, axis=[1, 2], keepdims=True)  # Σ_ab A^k_ab
    denominator = 2.0 * squared + activation_sums * squared * grads
    alphas = tf.math.divide_no_nan(squared, denominator)  # 0 where the denominator is 0
    weights = tf.reduce_sum(alphas * tf.maximum(grads, 0.0), axis=[1, 2], keepdims=True)
    return _weighted_sum(weights, activations)


def xgradcam(activations, grads):
    """XGrad-CAM (Fu et al., arXiv 2008.02312): w_k = Σ_ij (A^k_ij / Σ_ab A^k_ab) g^k_ij, 0 for
    an all-zero channel; L = ReLU(Σ_k w_k A^k)."""
    activation_sums = tf.reduce_sum(activations, axis=[1, 2], keepdims=True)
    weights = tf.reduce_sum(tf.math.divide_no_nan(activations, activation_sums) * grads,
                            axis=[1, 2], keepdims=True)
    return _weighted_sum(weights, activations)


def layercam(activations, grads):
    """LayerCAM (Jiang et al., IEEE TIP 2021): L_ij = ReLU(Σ_k ReLU(g^k_ij) A^k_ij)."""
    return tf.maximum(tf.reduce_sum(tf.maximum(grads, 0.0) * activations, axis=3), 0.0)


def hirescam(activations, grads):
    """HiResCAM (Draelos & Carin, arXiv 2011.08891): L_ij = ReLU(Σ_k g^k_ij A^k_ij)."""
    return tf.maximum(tf.reduce_sum(grads * activations, axis=3), 0.0)


FUNCTIONS = {name: globals()[name] for name in METHODS}  # each method's function, by name
