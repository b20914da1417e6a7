"""The explanation graph: one forward pass, the plain gradient for Grad-CAM and the guided one
for GBP, fused in-graph so a single `session.run` returns every map of a batch.

The network's ops are created under the GuidedRelu override. GBP's ∂y^c/∂x is guided. Grad-CAM's
∂y^c/∂A must be the plain gradient: where ReLUs lie between A and the logits (VGG's fc6/fc7), it
is built in a second backward pass over that tail inside `plain_gradients()`, which makes the
very same override gradient functions emit the ordinary ReLU gradient; elsewhere (MobileNet,
ResNet) the one backward pass to the input passes A with nothing guided on the way.
"""
import dataclasses

import tensorflow.compat.v1 as tf

from guided_gradcam import tf_compat  # noqa: F401  (slim.batch_norm; quiets tf-slim's warning)
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.guided_relu import OVERRIDE_MAP, guided_override, plain_gradients

PREDICTED_CLASS = -1  # a label of -1 explains the image's top-1 logit


@dataclasses.dataclass
class ExplanationGraph:
    graph: tf.Graph
    images: tf.Tensor  # uint8 [B, H, W, 3] placeholder: fitted RGB photos
    labels: tf.Tensor  # int32 [B] placeholder: logit index per image, or PREDICTED_CLASS
    counterfactual: tf.Tensor  # bool scalar, default False: explain -∂y^c/∂A instead
    targets: tf.Tensor  # int32 [B]: the logit index explained per image
    logits: tf.Tensor  # [B, num_logits]
    activations: tf.Tensor  # [B, h, w, K]: A, the Grad-CAM layer's output
    cam_lowres: tf.Tensor  # [B, h, w]: ReLU(Σ_k α_k A^k), unnormalised
    cam: tf.Tensor  # [B, H, W]: cam_lowres upsampled bilinearly, divided by its max
    gbp: tf.Tensor  # [B, H, W, 3]: guided ∂y^c/∂(preprocessed input)
    guided_gradcam: tf.Tensor  # [B, H, W, 3]: gbp ⊙ cam
    layer: str
    layer_names: tuple  # every end point usable as the Grad-CAM layer


def relus_between(start, end):
    """The Relu/Relu6 ops on a path from tensor `start` to tensor `end`."""
    downstream, frontier = set(), [start.op]
    while frontier:
        op = frontier.pop()
        for output in op.outputs:
            for consumer in output.consumers():
                if consumer not in downstream:
                    downstream.add(consumer)
                    frontier.append(consumer)
    upstream, frontier = set(), [end.op]
    while frontier:
        op = frontier.pop()
        for tensor in op.inputs:
            if tensor.op not in upstream:
                upstream.add(tensor.op)
                frontier.append(tensor.op)
    between = (downstream & upstream) | {end.op}
    return sorted(op.name for op in between if op.type in OVERRIDE_MAP)


def build_explanation_graph(spec, num_logits, layer=None, input_size=None, background_logits=0):
    """Builds `spec`'s network and its explanation tensors in a new graph.

    background_logits: leading logits that are never a predicted class (1 for the official
    1001-class slim checkpoints, whose logit 0 is "background").
    """
    height, width = spec.check_input_size(input_size)
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.uint8, [None, height, width, 3], name="images")
        labels = tf.placeholder(tf.int32, [None], name="labels")
        counterfactual = tf.placeholder_with_default(False, [], name="counterfactual")

        net_input = tf.identity(spec.preprocess(tf.cast(images, tf.float32)), name="net_input")
        with guided_override(graph):
            logits, end_points = spec.build(net_input, num_logits)

        layer_names = tuple(name for name, t in end_points.items() if t.shape.ndims == 4)
        layer = layer or spec.default_layer
        if layer not in layer_names:
            raise GuidedGradCamError(
                "unknown layer %r for %s; valid layers: %s"
                % (layer, spec.name, ", ".join(layer_names)))
        activations = end_points[layer]

        predicted = background_logits + tf.argmax(
            logits[:, background_logits:], axis=1, output_type=tf.int32)
        targets = tf.where(labels >= 0, labels, predicted, name="targets")
        # Images of a batch are independent at inference (BatchNorm uses moving statistics), so
        # the gradient of Σ_b y_b^{c_b} w.r.t. image b is ∂y_b^{c_b}/∂x_b: one backward pass.
        target_logits = tf.gather(logits, targets, axis=1, batch_dims=1)
        objective = tf.reduce_sum(target_logits)

        if relus_between(activations, logits):
            # ReLUs between A and the logits (VGG's fc6/fc7) would be guided: build ∂y/∂A in
            # a second backward pass over the tail, with the plain ReLU gradient.
            with plain_gradients():
                grads = tf.gradients(objective, activations)[0]
            gbp = tf.gradients(objective, net_input)[0]
        else:
            # Nothing guided lies between A and the logits: ∂y/∂A of the single backward pass
            # to the input is the plain gradient.
            grads, gbp = tf.gradients(objective, [activations, net_input])

        sign = tf.where(counterfactual, -1.0, 1.0)
        alpha = tf.reduce_mean(sign * grads, axis=[1, 2], keepdims=True)  # [B, 1, 1, K]
        # tf.maximum, not tf.nn.relu: every Relu op of the graph belongs to the network.
        cam_lowres = tf.maximum(tf.reduce_sum(alpha * activations, axis=3), 0.0, name="cam_lowres")

        # Half-pixel centres, as PIL's bilinear: tf.compat.v1's tf.image.resize samples at
        # corner-aligned positions and would shift the map up and to the left.
        upsampled = tf.raw_ops.ResizeBilinear(
            images=cam_lowres[..., None], size=(height, width), half_pixel_centers=True)
        peak = tf.reduce_max(upsampled, axis=[1, 2, 3], keepdims=True)
        cam = tf.math.divide_no_nan(upsampled, peak)  # an all-zero map stays zero, never NaN
        guided_gradcam = tf.multiply(gbp, cam, name="guided_gradcam")
        cam = tf.squeeze(cam, 3, name="cam")

    return ExplanationGraph(
        graph=graph, images=images, labels=labels, counterfactual=counterfactual,
        targets=targets, logits=logits, activations=activations, cam_lowres=cam_lowres,
        cam=cam, gbp=gbp, guided_gradcam=guided_gradcam, layer=layer, layer_names=layer_names)
