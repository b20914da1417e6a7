"""The model's head: which score is y^c, the score before softmax or sigmoid (as the paper asks).

The output's activation is found in the graph, walking back through Identity ops, never by an
op name such as BiasAdd (a one-unit Dense ends in AddV2 in Keras 3; MobileNet's Softmax reads
a Reshape):

- Softmax (or LogSoftmax) → classification: y^c is its input, the logits.
- Sigmoid, one unit → binary: class 1 explains the logit z, class 0 explains −z.
- Sigmoid, several units → multi-label: class c explains z_c.
- no activation, one unit → regression: y itself; several units → classification on the raw
  scores.
- a 4-D output (batch, height, width, classes) → segmentation: the same per pixel (`pixel_task`;
  one raw channel is a binary foreground logit); `core.region_head` sums it over a region.
"""
import dataclasses

import tensorflow.compat.v1 as tf

from guided_gradcam.core.graph_paths import skip_identities
from guided_gradcam.core.tasks import (  # noqa: F401
    BINARY, CLASSIFICATION, MULTILABEL, REGRESSION, SEGMENTATION)
from guided_gradcam.errors import GuidedGradCamError


@dataclasses.dataclass
class Head:
    task: str
    scores: tf.Tensor  # [B, C]: the raw scores (logits, z, or y)
    explained: tf.Tensor  # [B, K]: y^c of each explainable class c (binary: [−z, z])
    activation: str  # the bypassed activation op's type, or "" for a linear head
    pixel_task: str = None  # segmentation: the task of each pixel's scores (classification,
    #                         binary or multilabel); scores and explained are then per pixel


def _as_columns(tensor):
    return tensor[:, None] if tensor.shape.ndims == 1 else tensor  # (batch,) → (batch, 1)


def find_head(output):
    """The Head of a model whose output tensor is `output`."""
    # A 4-D output after a ReLU is a feature map, not per-pixel scores.
    if output.dtype.is_floating and output.shape.ndims == 4 and skip_identities(
            output).op.type not in ("Relu", "Relu6"):
        return _pixel_head(output)
    if not output.dtype.is_floating or output.shape.ndims not in (1, 2):
        raise GuidedGradCamError(
            "output %s of shape %s is not a score: expected (batch, classes) or, per pixel, "
            "(batch, height, width, classes) floats; name the scores with --output"
            % (output.name, output.shape))
    units = 1 if output.shape.ndims == 1 else output.shape[-1]
    if units is None:
        raise GuidedGradCamError("output %s has an unknown number of classes" % output.name)
    source = skip_identities(output)
    activation = source.op.type
    if activation in ("Softmax", "LogSoftmax"):
        scores = _as_columns(source.op.inputs[0])
        return Head(CLASSIFICATION, scores, scores, activation)
    if activation == "Sigmoid":
        scores = _as_columns(source.op.inputs[0])
        if units == 1:
            return Head(BINARY, scores, tf.concat([-scores, scores], axis=1), activation)
        return Head(MULTILABEL, scores, scores, activation)
    output = _as_columns(output)
    if units == 1:
        return Head(REGRESSION, output, output, "")
    return Head(CLASSIFICATION, output, output, "")


def _pixel_head(output):
    """A segmentation Head: [B, H', W', C] scores, explained [B, H', W', K] per pixel."""
    units = output.shape[-1]
    if units is None:
        raise GuidedGradCamError("output %s has an unknown number of classes" % output.name)
    source = skip_identities(output)
    activation = source.op.type
    if activation in ("Softmax", "LogSoftmax", "Sigmoid"):
        scores = source.op.inputs[0]
    else:
        scores, activation = output, ""
    if units == 1 and activation != "Softmax":  # one sigmoid or raw channel: the foreground
        return Head(SEGMENTATION, scores, tf.concat([-scores, scores], axis=-1), activation,
                    BINARY)
    task = MULTILABEL if activation == "Sigmoid" else CLASSIFICATION
    return Head(SEGMENTATION, scores, scores, activation, task)
