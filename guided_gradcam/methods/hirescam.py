"""HiResCAM: L_ij = ReLU(Σ_k g^k_ij A^k_ij)."""
from guided_gradcam.methods.base import CamMethod


def weights(activations, grads):
    return grads


METHOD = CamMethod("hirescam", "HiResCAM", "Draelos & Carin, arXiv 2011.08891", 4, weights)
