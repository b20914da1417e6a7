"""EigenGrad-CAM (pytorch-grad-cam's EigenGradCAM): Eigen-CAM on A ⊙ g, so class-specific: the
projection of A ⊙ g (h·w × K, centred over the pixels) on its first principal component, after
ReLU, its sign chosen so that the map correlates positively with Σ_k A^k g^k."""
from guided_gradcam.methods.base import CamMethod


def weights(activations, grads):
    return grads


METHOD = CamMethod("eigengradcam", "EigenGrad-CAM",
                   "Muhammad & Yeasin's Eigen-CAM on A ⊙ ∂y/∂A (pytorch-grad-cam)", 8, weights,
                   projection=True)
