"""A segmentation model's y^c: its per-pixel scores z^c summed over a region R,
y^c = Σ_ij R_ij z^c_ij (pytorch-grad-cam's SemanticSegmentationTarget).

R is a placeholder at the output's resolution that the explainer feeds with each image's
region; its default, the whole output, keeps forward passes that know nothing of regions
running. Once R is summed in, `head.explained` is [B, K] as for a classifier, so the targets,
target scores, gradients and every method's forward passes work unchanged.
"""
import dataclasses

import tensorflow.compat.v1 as tf

from guided_gradcam.core.graph_paths import ops_between


def sum_over_region(head):
    """(head with `explained` [B, K] = Σ_R of its per-pixel explained scores, the region
    placeholder float32 [B, H', W'])."""
    pixels = head.explained
    region = tf.placeholder_with_default(tf.ones_like(pixels[..., 0]),
                                         pixels.shape[:3], name="region")
    explained = tf.reduce_sum(region[..., None] * pixels, axis=[1, 2], name="region_scores")
    return dataclasses.replace(head, explained=explained), region


def default_layer(layers, net_input, head):
    """The last spatial layer up to the per-pixel classifier's input: the classifier's own
    layer (and what follows it) maps features to classes; a CAM weighs the features. None
    when no layer lies there."""
    features = classifier_input(head.scores, net_input)
    before = set(ops_between(net_input, features)) if features is not net_input else set()
    spatial = [name for name, tensor in layers.items()
               if tensor.op in before and (tensor.shape[1] or 2) * (tensor.shape[2] or 2) > 1]
    return spatial[-1] if spatial else None


RESIZES = ("ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea")


def classifier_input(scores, net_input):
    """The 4-D tensor the per-pixel classifier reads: back from the scores through a resize to
    the output size (DeepLab's), the bias (BiasAdd or Add of a 4-D tensor and a constant) and
    the convolution."""
    tensor = scores
    while tensor is not net_input and tensor.op.type in RESIZES + ("BiasAdd", "Add", "AddV2"):
        spatial = [t for t in tensor.op.inputs if t.shape.ndims == 4]
        if len(spatial) != 1:
            return tensor
        tensor = spatial[0]
    if tensor is not net_input and tensor.op.type == "Conv2D":
        tensor = tensor.op.inputs[0]
    return tensor
