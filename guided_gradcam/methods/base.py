"""What a CAM method is: a name, a title, its paper, what it needs, and its map.

A method is one module of this package that defines `METHOD = CamMethod(...)`; the package
finds it (`guided_gradcam.methods`). This module, the registry and every method's metadata
import no TensorFlow, so the command line checks `--methods` before TF loads: a method's map
function imports TF when the explanation graph calls it.
"""
import dataclasses
from typing import Callable, Tuple

# What a method's map is computed from: the Grad-CAM layer's activations A and the plain
# gradient g = ∂y^c/∂A of the explanation graph's one session run; or a transformer's attention
# probabilities A_l [B, heads, N, N] and their plain gradients (`core.attention`), whose
# `lowres(probabilities, gradients)` (lists, in layer order) is a [B, N, N] relevance matrix.
ACTIVATIONS_AND_GRADIENTS = "activations and gradients"
ATTENTION = "attention probabilities and their gradients"


@dataclasses.dataclass(frozen=True)
class CamMethod:
    name: str  # the --methods name; npz keys and PNG names derive from it
    title: str  # on panels and figures
    reference: str  # the paper
    rank: int  # position in listings and in the graph's stack of maps
    lowres: Callable  # (A, g: [B, h, w, K] tensors) → the map [B, h, w], in the graph (needs
    #                   ATTENTION: (probabilities, gradients) → relevance [B, N, N])
    needs: str = ACTIVATIONS_AND_GRADIENTS
    npz_keys: Tuple[str, str, str] = None  # (lowres, cam, guided); default <name>_lowres, …

    def __post_init__(self):
        if self.npz_keys is None:
            object.__setattr__(self, "npz_keys",
                               (self.name + "_lowres", self.name, "guided_" + self.name))


def mean_over_space(tensor):
    """[B, h, w, K] → [B, 1, 1, K]: a channel's spatial mean."""
    import tensorflow.compat.v1 as tf
    return tf.reduce_mean(tensor, axis=[1, 2], keepdims=True)


def weighted_sum(weights, activations):
    """ReLU(Σ_k w_k A^k) for per-channel weights [B, 1, 1, K], or per-pixel ones [B, h, w, K].
    tf.maximum, not tf.nn.relu: every Relu op of the graph belongs to the network (and gets
    its override)."""
    import tensorflow.compat.v1 as tf
    return tf.maximum(tf.reduce_sum(weights * activations, axis=3), 0.0)
