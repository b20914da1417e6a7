"""Gradient-weighted attention: R = I; R ← R + mean_heads((∇A_l ⊙ A_l)⁺) · R layer by layer;
the read-out token's row over the patch tokens (`core.attention`)."""
from guided_gradcam.methods.base import ATTENTION, CamMethod


def relevance(probabilities, gradients):
    from guided_gradcam.core.attention import gradient_weighted_attention
    return gradient_weighted_attention(probabilities, gradients)


METHOD = CamMethod("gradattention", "Gradient-weighted attention",
                   "Chefer, Gur & Wolf, ICCV 2021", 10, needs=ATTENTION,
                   relevance=relevance)
