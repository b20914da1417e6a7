"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): w_k = (y^c − y^c_k) / y^c, where y^c_k is the
class score with channel k of A set to zero; L = ReLU(Σ_k w_k A^k). Only the network's tail
after A runs per channel: the ablated A is fed in place of the layer's output.

y^c is the score before softmax, as for every map here. The weights are invariant to the
score's sign and scale, so explaining −y^c would give the same map: the counterfactual map
negates the weights instead (channels whose removal raises the score), as Grad-CAM's negates
its gradient. A score of exactly 0 gives weight 0."""
import numpy as np

from guided_gradcam.methods.base import ABLATED_ACTIVATIONS, CamMethod


def score_weights(scores, target_scores, counterfactual):
    """w [B, K] from the ablated scores y^c_k [B, K] and the image's own y^c [B]."""
    score = target_scores[:, None].astype(np.float64)
    drops = score - scores
    weights = np.divide(drops, score, out=np.zeros_like(drops), where=score != 0)
    return (-weights if counterfactual else weights).astype(np.float32)


METHOD = CamMethod("ablationcam", "Ablation-CAM", "Desai & Ramaswamy, WACV 2020", 6,
                   needs=ABLATED_ACTIVATIONS, score_weights=score_weights)
