"""LayerCAM: L_ij = ReLU(Σ_k ReLU(g^k_ij) A^k_ij)."""
from guided_gradcam.methods.base import CamMethod


def weights(activations, grads):
    import tensorflow.compat.v1 as tf
    return tf.maximum(grads, 0.0)


METHOD = CamMethod("layercam", "LayerCAM", "Jiang et al., IEEE TIP 2021", 3, weights)
