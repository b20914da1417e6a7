"""Maps from a transformer's attention probabilities A_l [B, heads, N, N] (found on the path to
the score by `core.tokens`) and their plain gradients ∇A_l = ∂y^c/∂A_l of the explanation's one
backward pass, in the graph:

- attention rollout (Abnar & Zuidema, ACL 2020): R = Π_l Â_l, the last layer's on the left,
  Â_l = 0.5 I + 0.5 mean_heads A_l with its rows normalised to sum 1; class-agnostic;
- gradient-weighted attention (Chefer, Gur & Wolf, ICCV 2021, "Generic Attention-model
  Explainability"): R = I, then layer by layer R ← R + Ā_l R with Ā_l = mean_heads((∇A_l ⊙
  A_l)⁺); class-specific.

The map is the read-out token's row of R over the patch tokens (the class token's row; for a
pooled readout, the mean of all rows), on the patch grid of `core.tokens`.
"""
import tensorflow.compat.v1 as tf

from guided_gradcam.core.tokens import (
    POOLED, find_readout, spatial_patch_grid, token_shape)
from guided_gradcam.errors import GuidedGradCamError

NO_ATTENTION = ("the model has no attention probabilities (a softmax over [batch, heads, tokens, "
                "tokens]) between its input and its scores: %s need a transformer")


def _identity(probabilities):
    return tf.eye(probabilities.shape[-1], dtype=probabilities.dtype)[None]  # [1, N, N]


def rollout(probabilities, gradients=None):
    """[B, N, N]: Π_l (0.5 I + 0.5 mean_heads A_l), rows normalised. `gradients` unused: the
    rollout is the same for every class."""
    del gradients
    relevance = None
    for layer in probabilities:
        mixed = 0.5 * _identity(layer) + 0.5 * tf.reduce_mean(layer, axis=1)
        mixed = mixed / tf.reduce_sum(mixed, axis=2, keepdims=True)
        relevance = mixed if relevance is None else tf.matmul(mixed, relevance)
    return relevance


def gradient_weighted_attention(probabilities, gradients):
    """[B, N, N]: R = I; R ← R + mean_heads((∇A_l ⊙ A_l)⁺) · R, layer by layer. tf.maximum,
    not tf.nn.relu: every Relu op of the graph is the network's (and gets its override)."""
    relevance = _identity(probabilities[0])
    for layer, gradient in zip(probabilities, gradients):
        weighted = tf.reduce_mean(tf.maximum(gradient * layer, 0.0), axis=1)
        relevance = relevance + tf.matmul(weighted, relevance)
    return relevance


class AttentionMaps:
    """The attention methods' low-resolution maps of one explanation graph.

    probabilities: the attention tensors of the path (all of the last one's token count N);
    `error` says why there are no maps (no attention, a token count no grid explains)."""

    def __init__(self, probabilities, path, view, input_size):
        self.probabilities, self.error = [], None
        self.leading = self.grid = self.token = None
        if not probabilities:
            self.error = NO_ATTENTION
            return
        count = probabilities[-1].shape[-1]
        self.probabilities = [layer for layer in probabilities if layer.shape[-1] == count]
        try:
            if view.tokens is not None and view.tokens + view.grid[0] * view.grid[1] == count:
                self.leading, self.grid = view.tokens, view.grid  # the layer's, as the user set
            else:
                self.leading, self.grid = token_shape(
                    "attention", int(count), spatial_patch_grid(self.probabilities[-1]),
                    input_size)
        except GuidedGradCamError as error:
            self.error = "%s (for the attention maps %%s)" % str(error).replace("%", "%%")
            return
        readout = find_readout(path)
        self.token = POOLED if readout is None else readout.token

    def lowres(self, relevance):
        """[B, N, N] relevance → [B, h, w]: the read-out token's row over the patch tokens."""
        row = (tf.reduce_mean(relevance, axis=1) if self.token is POOLED
               else relevance[:, self.token])
        return tf.reshape(row[:, self.leading:], [-1, self.grid[0], self.grid[1]])

    def message(self, methods):
        """The one-line error for asking `methods` of a model without these maps."""
        return self.error % ", ".join(methods)
