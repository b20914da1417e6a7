"""Grad-CAM: w_k = mean_ij g^k_ij, L = ReLU(Σ_k w_k A^k). The paper's map: its npz keys are
the explanation's own (`cam_lowres`, `cam`, `guided_gradcam`), always filled."""
from guided_gradcam.methods.base import CamMethod, mean_over_space


def weights(activations, grads):
    return mean_over_space(grads)


METHOD = CamMethod("gradcam", "Grad-CAM", "Selvaraju et al., arXiv 1610.02391", 0, weights,
                   npz_keys=("cam_lowres", "cam", "guided_gradcam"))
