"""HiResCAM: L_ij = ReLU(Σ_k g^k_ij A^k_ij)."""
from guided_gradcam.methods.base import CamMethod, weighted_sum


def lowres(activations, grads):
    return weighted_sum(grads, activations)


METHOD = CamMethod("hirescam", "HiResCAM", "Draelos & Carin, arXiv 2011.08891", 4, lowres)
