"""LayerCAM: L_ij = ReLU(Σ_k ReLU(g^k_ij) A^k_ij)."""
from guided_gradcam.methods.base import CamMethod, weighted_sum


def lowres(activations, grads):
    import tensorflow.compat.v1 as tf
    return weighted_sum(tf.maximum(grads, 0.0), activations)


METHOD = CamMethod("layercam", "LayerCAM", "Jiang et al., IEEE TIP 2021", 3, lowres)
