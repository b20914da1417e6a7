"""The explanation graph: one forward pass, the plain gradient for Grad-CAM and the guided one
for GBP, fused in-graph so a single `session.run` returns every map of a batch. It knows no
model format: a `ModelSource` places the model's ops, `heads` finds y^c.

The network's ops are created under the GuidedRelu override. GBP's ∂y^c/∂x is guided. Grad-CAM's
∂y^c/∂A must be the plain gradient: where ReLUs lie between A and the logits (VGG's fc6/fc7), it
is built in a second backward pass over that tail inside `plain_gradients()`, which makes the
very same override gradient functions emit the ordinary ReLU gradient; elsewhere (MobileNet,
ResNet) the one backward pass to the input passes A with nothing guided on the way.
"""
import collections
import dataclasses

import tensorflow.compat.v1 as tf

from guided_gradcam.core import tf_compat  # noqa: F401  (slim.batch_norm; quiets tf-slim's warning)
from guided_gradcam.core import activations as activations_report
from guided_gradcam.methods import GRADCAM, REGISTRY
from guided_gradcam.methods.base import ACTIVATIONS_AND_GRADIENTS, ATTENTION
from guided_gradcam.core.attention import AttentionMaps
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.core.graph_paths import ancestor_ops, ops_between
from guided_gradcam.core.guided_relu import OVERRIDE_MAP, guided_override, plain_gradients
from guided_gradcam.core.heads import Head, find_head
from guided_gradcam.sources.base import PlacedModel
from guided_gradcam.core.tokens import find_attention_probabilities, select_layer_view

PREDICTED_CLASS = -1  # a label of -1 explains the image's top-1 logit


@dataclasses.dataclass
class ExplanationGraph:
    graph: tf.Graph
    images: tf.Tensor  # uint8 [B, H, W, C] placeholder: fitted photos (RGB, or gray for C = 1)
    labels: tf.Tensor  # int32 [B] placeholder: explained column per image, or PREDICTED_CLASS
    counterfactual: tf.Tensor  # bool scalar, default False: explain -∂y^c/∂A instead
    net_input: tf.Tensor  # float32 [B, H, W, C]: the preprocessed input; feeding it skips
    #                       the preprocessing (occluded or masked inputs for the evaluation)
    targets: tf.Tensor  # int32 [B]: the column of `head.explained` explained per image
    logits: tf.Tensor  # [B, C]: the model's raw scores (pre-softmax/sigmoid), `head.scores`
    activations: tf.Tensor  # [B, h, w, K]: A, the Grad-CAM layer's output
    cam_lowres: tf.Tensor  # [B, h, w]: ReLU(Σ_k α_k A^k), unnormalised
    cam: tf.Tensor  # [B, H, W]: cam_lowres upsampled bilinearly, divided by its max
    gbp: tf.Tensor  # [B, H, W, C]: guided ∂y^c/∂(preprocessed input)
    guided_gradcam: tf.Tensor  # [B, H, W, C]: gbp ⊙ cam
    layer: str
    layer_names: tuple  # every named layer usable as the Grad-CAM layer
    head: Head
    model: PlacedModel  # feeds, restore
    background_logits: int  # leading scores that are never the predicted class
    family: "FamilyMaps"  # the Grad-CAM family's other members; gradcam's are the fields above
    methods: dict  # {method: MethodMaps of batch tensors}, gradcam included
    unguided: dict  # {activation: count}: what GBP passes with its ordinary gradient
    # The Grad-CAM layer as the model has it (core.tokens): `activations` is a view of
    # `layer_tensor` ([B, T + h·w, K] tokens: the T leading ones dropped, the rest as the
    # (h, w) `grid`); for a 4-D layer the same tensor, tokens and grid None. Feeding
    # `layer_tensor` reruns the model's tail on modified layer values.
    layer_tensor: tf.Tensor = None
    tokens: int = None
    grid: tuple = None
    layer_description: str = None  # the layer for a report line, with its token view
    # The attention methods' maps (core.attention), methods on the last axis as in `family`
    # (their own stack: their grid need not be the layer's); None where the model has none,
    # and `attention_error` % methods says why.
    attention: "FamilyMaps" = None
    attention_error: str = None


class MethodMaps(collections.namedtuple("MethodMaps", "lowres cam guided")):
    """One CAM method's maps of one image: (h, w) unnormalised, (H, W) upsampled and divided by
    its max, and (H, W, C) = gbp ⊙ cam (its guided version)."""


class FamilyMaps(collections.namedtuple("FamilyMaps", "methods lowres cam guided")):
    """The Grad-CAM family's other members for a batch, method on the last axis (in `methods`'
    order): [B, h, w, M], [B, H, W, M], [B, H, W, C, M]."""


def _upsample_and_normalise(lowres, height, width):
    """[B, h, w, M] → [B, H, W, M]: bilinear with half-pixel centres, as PIL's (tf.compat.v1's
    tf.image.resize samples at corner-aligned positions and would shift the map up and to the
    left), each map divided by its max (its peak is exactly 1); an all-zero map stays zero,
    never NaN."""
    upsampled = tf.raw_ops.ResizeBilinear(images=lowres, size=(height, width),
                                          half_pixel_centers=True)
    return tf.math.divide_no_nan(upsampled, tf.reduce_max(upsampled, axis=[1, 2], keepdims=True))


def relus_between(start, end):
    """The Relu/Relu6 ops on a path from tensor `start` to tensor `end`."""
    return sorted(op.name for op in ops_between(start, end) if op.type in OVERRIDE_MAP)


def _explained_targets(head, labels, background):
    """The explained column per image: its label, or its top-1 among the non-background."""
    predicted = background + tf.argmax(
        head.explained[:, background:], axis=1, output_type=tf.int32)
    return tf.where(labels >= 0, labels, predicted, name="targets")


def _gradients(objective, activations, net_input, scores, layer, attention=()):
    """(g = the plain ∂y/∂A, GBP = the guided ∂y/∂x, [the plain ∂y/∂A_l of each attention
    probabilities tensor]) of the objective."""
    attention = list(attention)
    if relus_between(activations, scores) or any(relus_between(a, scores) for a in attention):
        # ReLUs between A and the logits (VGG's fc6/fc7) would be guided: build ∂y/∂A in a
        # second backward pass over the tail, with the plain ReLU gradient.
        with plain_gradients():
            grads, *attention_grads = tf.gradients(objective, [activations] + attention)
        gbp = tf.gradients(objective, net_input)[0]
    else:
        # Nothing guided lies between A and the logits: ∂y/∂A of the single backward pass to
        # the input is the plain gradient.
        grads, gbp, *attention_grads = tf.gradients(objective,
                                                    [activations, net_input] + attention)
    if grads is None or gbp is None:
        raise GuidedGradCamError(
            "the output does not depend on %s" % ("layer %r" % layer if grads is None
                                                  else "the input"))
    return grads, gbp, attention_grads


def _method_maps(activations, grads, gbp, height, width):
    """(Grad-CAM's MethodMaps, the other methods' FamilyMaps): each method's map from (A, g),
    upsampled, normalised and multiplied by GBP. Grad-CAM's, always fetched, are built alone;
    the others side by side on a last axis, one resize and one product for all of them (a run
    that fetches none of them computes none)."""
    cam_lowres = tf.identity(REGISTRY[GRADCAM].lowres(activations, grads), name="cam_lowres")
    cam = _upsample_and_normalise(cam_lowres[..., None], height, width)
    guided_gradcam = tf.multiply(gbp, cam, name="guided_gradcam")
    gradcam = MethodMaps(cam_lowres, tf.squeeze(cam, 3, name="cam"), guided_gradcam)
    family = [name for name in REGISTRY
              if name != GRADCAM and REGISTRY[name].needs == ACTIVATIONS_AND_GRADIENTS]
    family_lowres = tf.stack([REGISTRY[name].lowres(activations, grads) for name in family],
                             axis=3, name="family_lowres")
    family_cam = tf.identity(_upsample_and_normalise(family_lowres, height, width),
                             name="family_cam")
    family_guided = tf.multiply(gbp[..., None], family_cam[:, :, :, None, :],
                                name="family_guided")
    return gradcam, FamilyMaps(tuple(family), family_lowres, family_cam, family_guided)


def _attention_family(attention, grads, gbp, height, width):
    """The attention methods' FamilyMaps (`core.attention`), upsampled, normalised and guided
    as the family's; None where the model has no attention maps."""
    if attention.error or any(gradient is None for gradient in grads):
        return None
    names = tuple(name for name in REGISTRY if REGISTRY[name].needs == ATTENTION)
    lowres = tf.stack([attention.lowres(REGISTRY[name].lowres(attention.probabilities, grads))
                       for name in names], axis=3, name="attention_lowres")
    cam = tf.identity(_upsample_and_normalise(lowres, height, width), name="attention_cam")
    guided = tf.multiply(gbp[..., None], cam[:, :, :, None, :], name="attention_guided")
    return FamilyMaps(names, lowres, cam, guided)


def build_explanation_graph(source, layer=None, input_size=None, imagenet_background=False,
                            tokens=None, grid=None):
    """Places `source`'s model (a `sources.base.ModelSource`) in a new graph under the guided
    override and builds every map of the paper on top of it.

    layer: a layer name, tensor or op name; None → the source's default layer.
    input_size: (height, width) where the model allows another size than its own.
    imagenet_background: 1001 scores are ImageNet's with a background class first, which is
    never the predicted class (the source says so itself for slim checkpoints).
    tokens, grid: a token layer's leading tokens and (h, w) patch grid, where the model cannot
    tell them (`core.tokens`).
    """
    height, width, channels = source.check_input_size(input_size)
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.uint8, [None, height, width, channels], name="images")
        labels = tf.placeholder(tf.int32, [None], name="labels")
        counterfactual = tf.placeholder_with_default(False, [], name="counterfactual")

        net_input = tf.identity(source.preprocessing(tf.cast(images, tf.float32)),
                                name="net_input")
        with guided_override(graph):
            model = source.place(net_input)
        head = find_head(model.output)
        view = select_layer_view(model, graph, layer, net_input, head.scores, tokens, grid)
        layer, activations = view.name, view.activations
        path = ops_between(net_input, head.scores)
        unguided = {**activations_report.ordinary_activations(path),
                    **activations_report.unguide_non_activation_relus(path)}

        background = model.background_logits or int(
            imagenet_background and head.explained.shape[-1] == 1001)
        targets = _explained_targets(head, labels, background)
        # Images of a batch are independent at inference (BatchNorm uses moving statistics), so
        # the gradient of Σ_b y_b^{c_b} w.r.t. image b is ∂y_b^{c_b}/∂x_b: one backward pass.
        objective = tf.reduce_sum(tf.gather(head.explained, targets, axis=1, batch_dims=1))
        attention = AttentionMaps(find_attention_probabilities(path), path, view,
                                  (height, width))
        layer_grads, gbp, attention_grads = _gradients(
            objective, view.layer_tensor, net_input, head.scores, layer, attention.probabilities)
        grads = view.to_grid(layer_grads)  # a token layer's gradient, viewed as A is
        # The counterfactual map negates g for every method: regions speaking against c.
        signed_grads = tf.where(counterfactual, -1.0, 1.0) * grads
        gradcam, family_maps = _method_maps(activations, signed_grads, gbp, height, width)
        # Per method, for graph-level work (the explainer fetches the stacks).
        methods = {GRADCAM: gradcam}
        attention_maps = _attention_family(
            attention, [g if g is None else tf.where(counterfactual, -1.0, 1.0) * g
                        for g in attention_grads],
            gbp, height, width)
        for stack in (family_maps, attention_maps or FamilyMaps((), None, None, None)):
            for index, method in enumerate(stack.methods):
                methods[method] = MethodMaps(*(maps[..., index] for maps in stack[1:]))
        _check_all_placeholders_fed(
            [targets, head.scores, gbp, *gradcam, *family_maps[1:]],
            {images.op, labels.op, counterfactual.op}, model.feeds, model.scope)

    return ExplanationGraph(
        graph=graph, images=images, labels=labels, counterfactual=counterfactual,
        net_input=net_input, targets=targets, logits=head.scores, activations=activations,
        cam_lowres=gradcam.lowres, cam=gradcam.cam, gbp=gbp, guided_gradcam=gradcam.guided,
        layer=layer, layer_names=tuple({**model.layers, **model.token_layers}), head=head,
        model=model, unguided=unguided, family=family_maps, methods=methods,
        background_logits=background, layer_tensor=view.layer_tensor, tokens=view.tokens,
        grid=view.grid, layer_description=view.describe(), attention=attention_maps,
        attention_error=attention.error or "the score has no gradient w.r.t. the model's "
        "attention probabilities (a stop_gradient?): %s need one")


def _check_all_placeholders_fed(fetches, ours, feeds, scope):
    fed = {getattr(tensor, "op", None) for tensor in feeds}
    unfed = sorted(op.name[len(scope):] if op.name.startswith(scope) else op.name
                   for op in ancestor_ops(fetches)
                   if op.type == "Placeholder" and op not in ours and op not in fed)
    if unfed:
        raise GuidedGradCamError(
            "the model needs placeholders that nothing feeds: %s; pass --feed NAME=VALUE"
            % ", ".join(unfed))
