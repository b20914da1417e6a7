"""Attention rollout: R = Π_l (0.5 I + 0.5 mean_heads A_l), rows normalised; the read-out
token's row over the patch tokens. The same for every class (`core.attention`)."""
from guided_gradcam.methods.base import ATTENTION, CamMethod


def relevance(probabilities, gradients):
    from guided_gradcam.core.attention import rollout
    return rollout(probabilities, gradients)


METHOD = CamMethod("rollout", "Attention rollout", "Abnar & Zuidema, ACL 2020", 9,
                   needs=ATTENTION, relevance=relevance, class_score=False)
