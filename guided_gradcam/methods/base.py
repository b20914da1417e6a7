"""What a CAM method is: a name, a title, its paper, what it needs, and how its channels are
weighted.

Every method's map is L = ReLU(Σ_k w_k A^k) from its weights w (per channel [B, 1, 1, K], or
per pixel [B, h, w, K]) and the Grad-CAM layer's activations A; the Eigen methods, and every
method under eigen smoothing, take the first principal component of w ⊙ A instead of the sum.
The methods differ in where w comes from (`needs`):
- the activations and the plain gradient g = ∂y^c/∂A of the explanation's one session run
  (`weights(A, g)`, in the graph: the Grad-CAM family, the Eigen methods);
- the class scores of masked inputs (Score-CAM) or of ablated activations run through the
  network's tail (Ablation-CAM): `score_weights(...)`, numpy, after forward passes the
  explainer runs in batches.

A method is one module of this package that defines `METHOD = CamMethod(...)`; the package
finds it (`guided_gradcam.methods`). This module, the registry and every method's metadata
import no TensorFlow, so the command line checks `--methods` before TF loads: a method's
weight function imports TF when the explanation graph calls it.
"""
import dataclasses
from typing import Callable, Tuple

ACTIVATIONS_AND_GRADIENTS = "activations and gradients"  # weights(A, g) in the graph
MASKED_INPUTS = "masked inputs"  # one forward pass per (image, channel): the input ⊙ A^k's mask
ABLATED_ACTIVATIONS = "ablated activations"  # one tail pass per (image, channel): A, A^k = 0
# A transformer's attention probabilities A_l [B, heads, N, N] and their plain gradients
# (`core.attention`): `relevance(probabilities, gradients)` (lists, in layer order) → [B, N, N].
ATTENTION = "attention probabilities and their gradients"
IN_GRAPH = (ACTIVATIONS_AND_GRADIENTS, ATTENTION)


@dataclasses.dataclass(frozen=True)
class CamMethod:
    name: str  # the --methods name; npz keys and PNG names derive from it
    title: str  # on panels and figures
    reference: str  # the paper
    rank: int  # position in listings and in the graph's stack of maps
    weights: Callable = None  # (A, g: [B, h, w, K] tensors) → w, in the graph (IN_GRAPH needs)
    needs: str = ACTIVATIONS_AND_GRADIENTS
    projection: bool = False  # the map is w ⊙ A's first principal component, not its sum
    class_score: bool = True  # False: the map does not depend on the class (no counterfactual)
    score_weights: Callable = None  # numpy: (scores [B, K], score [B], counterfactual) → w [B, K]
    relevance: Callable = None  # ATTENTION: (probabilities, gradients) → [B, N, N], in the graph
    npz_keys: Tuple[str, str, str] = None  # (lowres, cam, guided); default <name>_lowres, …

    def __post_init__(self):
        if self.npz_keys is None:
            object.__setattr__(self, "npz_keys",
                               (self.name + "_lowres", self.name, "guided_" + self.name))

    @property
    def in_graph(self):
        return self.needs in IN_GRAPH

    def lowres(self, activations, grads, eigen_smooth=False):
        """The map [B, h, w] of an in-graph method, from A and g."""
        return combine(self.weights(activations, grads), activations,
                       self.projection or eigen_smooth)


def mean_over_space(tensor):
    """[B, h, w, K] → [B, 1, 1, K]: a channel's spatial mean."""
    import tensorflow.compat.v1 as tf
    return tf.reduce_mean(tensor, axis=[1, 2], keepdims=True)


def combine(weights, activations, projection=False):
    """ReLU(Σ_k w_k A^k), or ReLU of the first principal component of w ⊙ A (`projection`).
    tf.maximum, not tf.nn.relu: every Relu op of the graph belongs to the network (and gets
    its override)."""
    import tensorflow.compat.v1 as tf
    weighted = weights * activations
    if projection:
        return tf.maximum(principal_projection(weighted), 0.0)
    return tf.maximum(tf.reduce_sum(weighted, axis=3), 0.0)


def weighted_sum(weights, activations):
    """ReLU(Σ_k w_k A^k) for per-channel weights [B, 1, 1, K], or per-pixel ones [B, h, w, K]."""
    return combine(weights, activations)


def principal_projection(weighted):
    """[B, h, w, K] → [B, h, w]: each pixel's projection on the first principal component of
    the h·w × K matrix of its image, centred over the pixels (as Eigen-CAM, Muhammad & Yeasin
    2020, and pytorch-grad-cam's get_2d_projection), found by the eigendecomposition of the
    smaller of its two Gram matrices. A singular vector's sign is arbitrary: it
    is chosen so that the projection correlates positively with Σ_k of the same matrix, the map
    it stands for (0 correlation keeps the solver's sign)."""
    import tensorflow.compat.v1 as tf
    shape = tf.shape(weighted)
    pixels = tf.reshape(weighted, [shape[0], shape[1] * shape[2], shape[3]])
    centred = pixels - tf.reduce_mean(pixels, axis=1, keepdims=True)
    num_pixels = weighted.shape[1] * weighted.shape[2] if weighted.shape[1:3].is_fully_defined() \
        else None
    if num_pixels is not None and weighted.shape[3] is not None and weighted.shape[3] < num_pixels:
        # The first right singular vector v1 is the top eigenvector of the K × K covariance.
        _, vectors = tf.linalg.eigh(tf.matmul(centred, centred, transpose_a=True))
        projection = tf.einsum("bpk,bk->bp", centred, vectors[:, :, -1])
    else:
        # Centred = U S Vᵀ: the projection on v1 is s1 u1, from the hw × hw Gram matrix U S² Uᵀ
        # (3-5x cheaper than an SVD for MobileNet's 49 x 768 and VGG's 196 x 512).
        values, vectors = tf.linalg.eigh(tf.matmul(centred, centred, transpose_b=True))
        projection = vectors[:, :, -1] * tf.sqrt(tf.maximum(values[:, -1:], 0.0))
    channel_sum = tf.reduce_sum(pixels, axis=2)
    # The projection is centred already: Σ_p proj_p · Σ_k X_pk is its covariance with the sum.
    agreement = tf.reduce_sum(projection * channel_sum, axis=1, keepdims=True)
    projection *= tf.where(agreement < 0.0, -tf.ones_like(agreement), tf.ones_like(agreement))
    return tf.reshape(projection, shape[:3])
