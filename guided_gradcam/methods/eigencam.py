"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): the projection of A (h·w × K, centred over the
pixels) on its first principal component, after ReLU; the component's sign is chosen so that
the map correlates positively with Σ_k A^k (`base.principal_projection`). It uses no gradient
and no class score: every class, and a counterfactual run, get the same map."""
from guided_gradcam.methods.base import CamMethod


def weights(activations, grads):
    import tensorflow.compat.v1 as tf
    return tf.ones_like(activations[:, :1, :1, :])  # w ⊙ A = A


METHOD = CamMethod("eigencam", "Eigen-CAM", "Muhammad & Yeasin, IJCNN 2020, arXiv 2008.00299",
                   7, weights, projection=True, class_score=False)
