"""Token layers ([batch, tokens, channels], a transformer's) as Grad-CAM layers.

A layer of N tokens is T leading tokens (class, distillation, register tokens) and an h x w grid
of patch tokens, N = T + h·w. The grid comes from the model: the patch embedding's spatial
output (the 4-D tensor a Reshape on the path turns into h·w tokens), else the input size and a
patch size dividing it, else a square; `tokens` / `grid` override where the model cannot tell.
The leading tokens are dropped and the rest reshaped to [B, h, w, D] in the graph: the CAM
methods see the 4-D activations they know. The gradient is taken w.r.t. the model's own token
tensor and viewed the same way (the reshaped view is not on the path to the score).

The default layer of a transformer is the last token layer whose patch tokens still reach the
score. Under a class-token readout (`x[:, 0]`) a token reaches the class token only through an
attention, so that is the input of the last attention (the last block's first LayerNorm):
after it, patch tokens never reach the score and their gradient is identically zero. Under a
pooled readout (the mean of the tokens) every token reaches it: the last block's output.
"""
import dataclasses
import math
from typing import Optional, Tuple

import tensorflow.compat.v1 as tf

from guided_gradcam.core.graph_paths import ancestor_ops, ops_between, skip_identities
from guided_gradcam.core.tensor_names import select_layer
from guided_gradcam.errors import GuidedGradCamError

MAX_LEADING_TOKENS = 16  # the most leading tokens guessed without --tokens (CLS + registers)
POOLED = None  # Readout.token of a readout over all tokens


@dataclasses.dataclass(frozen=True)
class LayerView:
    """The Grad-CAM layer as the CAM methods see it: [B, h, w, K] activations, a view of the
    model's `layer_tensor` ([B, h, w, K] itself, or [B, N, K] tokens)."""
    name: str
    layer_tensor: object  # tf.Tensor: the model's own tensor (what gradients are taken of)
    activations: object  # tf.Tensor [B, h, w, K]
    tokens: Optional[int] = None  # leading tokens dropped; None for a 4-D layer
    grid: Optional[Tuple[int, int]] = None  # (h, w) of the patch tokens; None for a 4-D layer
    note: Optional[str] = None  # why the layer's maps will be empty, where the graph shows it

    def to_grid(self, tensor):
        """A tensor shaped like `layer_tensor` (its gradient) → viewed like `activations`."""
        if self.tokens is None:
            return tensor
        return patch_grid_view(tensor, self.tokens, self.grid)

    def describe(self):
        """'block1_norm1 (17 tokens: 1 leading dropped, 4x4 patch grid)'; the name alone for a
        4-D layer."""
        if self.tokens is None:
            return self.name
        return "%s (%d tokens: %d leading dropped, %dx%d patch grid%s)" % (
            self.name, self.tokens + self.grid[0] * self.grid[1], self.tokens, *self.grid,
            "; " + self.note if self.note else "")


def patch_grid_view(tokens_tensor, leading, grid):
    """[B, T + h·w, D] → [B, h, w, D]: the leading tokens dropped, the rest row by row."""
    channels = tokens_tensor.shape[-1]
    return tf.reshape(tokens_tensor[:, leading:], [-1, grid[0], grid[1], channels])


@dataclasses.dataclass(frozen=True)
class Readout:
    """How the tokens reach the score: one token (`token`: its index, the class token's 0) or
    all of them (`token` is POOLED: a mean, a sum, a flatten)."""
    token: Optional[int]


def find_readout(path):
    """The Readout of the ops on the path to the score: the last op there that turns tokens
    [B, N, D] into [B, D]; None when tokens never meet the score that way."""
    for op in reversed(path):
        tokens = [t for t in op.inputs if t.shape.ndims == 3]
        if not tokens or not op.outputs or op.outputs[0].shape.ndims != 2:
            continue
        source = skip_identities(tokens[0])
        if op.type in ("StridedSlice", "GatherV2", "Squeeze", "Reshape") and (
                op.type != "Reshape" or source.shape[1] == 1):
            return Readout(_selected_token(op if source.shape[1] != 1 else source.op))
        return Readout(POOLED)
    return None


def _selected_token(op):
    """The token index a StridedSlice / Slice / Gather picks on axis 1 (0 where unreadable)."""
    index_input = {"StridedSlice": 1, "Slice": 1, "GatherV2": 1}.get(op.type)
    if index_input is None:
        return 0
    value = tf.get_static_value(op.inputs[index_input])
    if value is None:
        return 0
    value = value.reshape(-1)
    return int(value[1] if op.type in ("StridedSlice", "Slice") and value.size > 1 else value[0])


def find_attention_probabilities(path):
    """The attention probabilities on the path, in graph order: Softmax outputs of shape
    [B, heads, N, N] (Keras' MultiHeadAttention, tf-keras', hand-written attention)."""
    found = []
    for op in path:
        if op.type != "Softmax":
            continue
        shape = op.outputs[0].shape
        if shape.ndims == 4 and shape[2] is not None and shape[2] == shape[3]:
            found.append(op.outputs[0])
    return found


def spatial_patch_grid(tensor):
    """(h, w) of the patch embedding above `tensor`: the last 4-D [B, h, w, C] tensor that a
    Reshape among its ancestors flattens to [B, h·w, C]; None where there is none."""
    ancestors = ancestor_ops([tensor])
    grids = []
    for op in tensor.graph.get_operations():
        if op not in ancestors or op.type != "Reshape":
            continue
        source, shape = op.inputs[0].shape, op.outputs[0].shape
        if (source.ndims == 4 and shape.ndims == 3 and None not in source[1:3]
                and shape[1] == source[1] * source[2]):
            grids.append((int(source[1]), int(source[2])))
    return grids[-1] if grids else None


def token_shape(name, count, patch_grid, input_size, tokens=None, grid=None):
    """(T, (h, w)) of a layer of `count` tokens. `tokens` / `grid` (the user's) win; else the
    patch embedding's grid, then the input size over a patch size, then a square. Raises one
    GuidedGradCamError where no shape fits."""
    if grid is not None:
        leading = count - grid[0] * grid[1]
        if leading < 0 or (tokens is not None and tokens != leading):
            raise GuidedGradCamError(
                "layer %s has %d tokens: %s; the tokens are T leading ones and an h x w grid, "
                "T + h·w = %d" % (name, count, _given(tokens, grid), count))
        return leading, tuple(grid)
    leading_range = [tokens] if tokens is not None else range(MAX_LEADING_TOKENS + 1)
    # The patch embedding's grid with any T; else the input size over a patch size, then a
    # square, each with the fewest leading tokens (for a square input the two are one guess:
    # the fewest T of either).
    embedding, by_input = _patch_embedding_grid(patch_grid), _input_grid(input_size)
    if input_size[0] == input_size[1]:
        rest = [(leading, guess) for leading in leading_range for guess in (by_input,
                                                                            _square_grid)]
    else:
        rest = [(leading, guess) for guess in (by_input, _square_grid)
                for leading in leading_range]
    guesses = [(leading, embedding) for leading in leading_range] + rest
    for leading, guess in guesses:
        if 0 <= leading < count:
            found = guess(count - leading)
            if found:
                return leading, found
    raise GuidedGradCamError(
        "layer %s has %d tokens, which no T leading tokens and h x w grid of its model explain "
        "%s; pass --grid HxW (and --tokens T)" % (name, count, "with " + _given(tokens, None)
                                                   if tokens is not None else "by themselves"))


def _given(tokens, grid):
    parts = [] if tokens is None else ["--tokens %d" % tokens]
    parts += [] if grid is None else ["--grid %dx%d" % tuple(grid)]
    return " and ".join(parts)


def _patch_embedding_grid(grid):
    return lambda patches: grid if grid and grid[0] * grid[1] == patches else None


def _input_grid(input_size):
    """The grid of a patch size p dividing both sides of the input: (H/p, W/p)."""
    height, width = input_size

    def guess(patches):
        if patches < 2:
            return None
        for patch in range(1, min(height, width) + 1):
            if height % patch == 0 and width % patch == 0 and (
                    (height // patch) * (width // patch) == patches):
                return height // patch, width // patch
        return None
    return guess


def _square_grid(patches):
    side = math.isqrt(patches)
    return (side, side) if side >= 2 and side * side == patches else None


def token_layer_view(name, tensor, input_size, tokens=None, grid=None):
    """The LayerView of a token layer [B, N, D]."""
    count = tensor.shape[1]
    if count is None or tensor.shape[2] is None:
        raise GuidedGradCamError("token layer %s has shape %s: its token count and channels "
                                 "must be known" % (name, tensor.shape))
    leading, grid = token_shape(name, int(count), spatial_patch_grid(tensor), input_size,
                                tokens, grid)
    return LayerView(name, tensor, patch_grid_view(tensor, leading, grid), leading, grid)


def default_token_layer(placed, path, input_size):
    """The default layer of a transformer (module docstring); None for a model without
    attention probabilities on its path, or without a token layer that fits."""
    attention = find_attention_probabilities(path)
    readout = find_readout(path)
    if not attention or readout is None or not placed.token_layers:
        return None
    on_path = set(path)
    candidates = []
    for name, tensor in placed.token_layers.items():
        if tensor.op not in on_path:
            continue
        try:
            token_layer_view(name, tensor, input_size)
        except GuidedGradCamError:
            continue
        candidates.append(name)
    if readout.token is POOLED:  # the last residual sum (a block's output), else the last
        sums = [name for name in candidates if _is_residual_sum(placed.token_layers[name])]
        return (sums or candidates or [None])[-1]
    feeding = ancestor_ops([attention[-1]])  # a class-token readout: the last attention's input
    candidates = [name for name in candidates if placed.token_layers[name].op in feeding]
    return candidates[-1] if candidates else None


def _unreachable_patch_tokens(tensor, path):
    """The note for a token layer after the last attention under a class-token readout, whose
    patch tokens never reach the score (their gradient is zero); None otherwise."""
    attention = find_attention_probabilities(path)
    readout = find_readout(path)
    if not attention or readout is None or readout.token is POOLED:
        return None
    if tensor.op in ancestor_ops([attention[-1]]):
        return None
    return ("its patch tokens never reach the score, read from token %d after the last "
            "attention: its maps are zero" % readout.token)


def _is_residual_sum(tensor):
    """x + f(x) of tokens: one summand computed from the other (a LayerNorm's final sum,
    x·s + (β − μ·s), is not)."""
    op = skip_identities(tensor).op
    if op.type not in ("Add", "AddV2") or len(op.inputs) != 2:
        return False
    first, second = op.inputs
    return (first.shape.ndims == second.shape.ndims == 3
            and (first.op in ancestor_ops([second]) or second.op in ancestor_ops([first])))


def select_layer_view(placed, graph, name, net_input, scores, tokens=None, grid=None):
    """The Grad-CAM layer's LayerView: `name` (a 4-D layer or a token layer), or the model's
    default (a transformer's default token layer, else its default 4-D layer)."""
    input_size = tuple(net_input.shape.as_list()[1:3])
    path = ops_between(net_input, scores) if placed.token_layers else []
    if name is None:
        name = default_token_layer(placed, path, input_size)
    name, tensor = select_layer(placed, graph, name)
    if tensor.shape.ndims == 3:
        view = token_layer_view(name, tensor, input_size, tokens, grid)
        return dataclasses.replace(view, note=_unreachable_patch_tokens(tensor, path))
    if tokens is not None or grid is not None:
        raise GuidedGradCamError("--tokens and --grid are for token layers (batch, tokens, "
                                 "channels); layer %s is 4-D %s" % (name, tensor.shape))
    return LayerView(name, tensor, tensor)
