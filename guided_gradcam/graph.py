"""The explanation graph: one forward pass, the plain gradient for Grad-CAM and the guided one
for GBP, fused in-graph so a single `session.run` returns every map of a batch. It knows no
model format: a `ModelSource` places the model's ops, `heads` finds y^c.

The network's ops are created under the GuidedRelu override. GBP's ∂y^c/∂x is guided. Grad-CAM's
∂y^c/∂A must be the plain gradient: where ReLUs lie between A and the logits (VGG's fc6/fc7), it
is built in a second backward pass over that tail inside `plain_gradients()`, which makes the
very same override gradient functions emit the ordinary ReLU gradient; elsewhere (MobileNet,
ResNet) the one backward pass to the input passes A with nothing guided on the way.
"""
import dataclasses

import tensorflow.compat.v1 as tf

from guided_gradcam import channel_maps
from guided_gradcam.core import tf_compat  # noqa: F401  (slim.batch_norm; quiets tf-slim's warning)
from guided_gradcam.core import activations as activations_report
from guided_gradcam.methods import GRADCAM, REGISTRY
from guided_gradcam.methods.base import ACTIVATIONS_AND_GRADIENTS, ATTENTION
from guided_gradcam.core.attention import AttentionMaps
from guided_gradcam.explanation import MethodMaps
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.core.graph_paths import ancestor_ops, ops_between, reads
from guided_gradcam.core.guided_relu import OVERRIDE_MAP, guided_override, plain_gradients
from guided_gradcam.core import region_head
from guided_gradcam.core.heads import SEGMENTATION, Head, find_head
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
    target_scores: tf.Tensor  # [B]: y^c, the explained score per image
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
    methods: dict  # {method: MethodMaps of batch tensors}: the in-graph ones, gradcam included
    tail_reads_input: bool  # the scores read the input beside A (a skip around the layer)
    eigen_smooth: bool  # every map is the first principal component of w ⊙ A, not its sum
    unguided: dict  # {activation: count}: what GBP passes with its ordinary gradient
    region: tf.Tensor = None  # segmentation: float32 [B, H', W'] fed with each image's region
    # The Grad-CAM layer as the model has it (core.tokens): `activations` is a view of
    # `layer_tensor` ([B, T + h·w, K] tokens: the T leading ones dropped, the rest as the
    # (h, w) `grid`); for a 4-D layer the same tensor, tokens and grid None. Feeding
    # `layer_tensor` reruns the model's tail on modified layer values.
    layer_tensor: tf.Tensor = None
    tokens: int = None
    grid: tuple = None
    layer_description: str = None  # the layer for a report line, with its token view
    # Why the attention methods' maps are missing (% methods), where the model has none.
    attention_error: str = None


def upsample_and_normalise(lowres, height, width):
    """[B, h, w] → [B, H, W]: bilinear with half-pixel centres, as PIL's (tf.compat.v1's
    tf.image.resize samples at corner-aligned positions and would shift the map up and to the
    left), each map divided by its max (its peak is exactly 1); an all-zero map stays zero,
    never NaN. Where h and w are known, as two products with the interpolation matrices
    (`channel_maps.bilinear_matrix`, the same weights): on a CPU ~2x faster than
    ResizeBilinear for 16 maps of 7x7 to 224x224."""
    if lowres.shape[1:3].is_fully_defined():
        rows = tf.constant(channel_maps.bilinear_matrix(height, lowres.shape[1]), tf.float32)
        columns = tf.constant(channel_maps.bilinear_matrix(width, lowres.shape[2]).T,
                              tf.float32)
        upsampled = tf.matmul(tf.matmul(rows[None], lowres), columns[None])
    else:
        upsampled = tf.raw_ops.ResizeBilinear(images=lowres[..., None], size=(height, width),
                                              half_pixel_centers=True)[..., 0]
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


def _single_maps(lowres, gbp, height, width, name, names=None):
    """MethodMaps of one [B, h, w] map: upsampled, normalised, multiplied by GBP; its ops named
    `names` (lowres, cam, guided), by default `<name>_lowres` and `<name>`."""
    lowres_name, cam_name, guided_name = names or (name + "_lowres", name, None)
    lowres = tf.identity(lowres, name=lowres_name)
    cam = tf.identity(upsample_and_normalise(lowres, height, width), name=cam_name)
    return MethodMaps(lowres, cam, tf.multiply(gbp, cam[..., None], name=guided_name))


def _method_maps(activations, grads, gbp, height, width, eigen_smooth):
    """{method: MethodMaps} of every in-graph method, from (A, g): upsampled, normalised and
    multiplied by GBP. Each has its own ops, so a run computes only the methods it fetches.
    Grad-CAM's keep the names the graph has always given them."""
    return {name: _single_maps(method.lowres(activations, grads, eigen_smooth), gbp, height,
                               width, name,
                               ("cam_lowres", "cam", "guided_gradcam") if name == GRADCAM else None)
            for name, method in REGISTRY.items() if method.needs == ACTIVATIONS_AND_GRADIENTS}


def _attention_maps(attention, grads, gbp, height, width):
    """{method: MethodMaps} of the attention methods (`core.attention`), upsampled, normalised
    and guided as the others; {} where the model has no attention maps."""
    if attention.error or any(gradient is None for gradient in grads):
        return {}
    return {name: _single_maps(attention.lowres(method.relevance(attention.probabilities,
                                                                 grads)), gbp, height, width, name)
            for name, method in REGISTRY.items() if method.needs == ATTENTION}


def build_explanation_graph(source, layer=None, input_size=None, imagenet_background=False,
                            eigen_smooth=False, tokens=None, grid=None):
    """Places `source`'s model (a `sources.base.ModelSource`) in a new graph under the guided
    override and builds every map of the paper on top of it.

    layer: a layer name, tensor or op name; None → the source's default layer.
    input_size: (height, width) where the model allows another size than its own.
    imagenet_background: 1001 scores are ImageNet's with a background class first, which is
    never the predicted class (the source says so itself for slim checkpoints).
    eigen_smooth: every method's map is the first principal component of its weighted
    activations w ⊙ A instead of their sum (pytorch-grad-cam's eigen_smooth).
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
        region = None
        if head.task == SEGMENTATION:  # y^c: the pixels' scores summed over a fed region
            head, region = region_head.sum_over_region(head)
            layer = layer or region_head.default_layer(model.layers, net_input, head)
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
        target_scores = tf.gather(head.explained, targets, axis=1, batch_dims=1,
                                  name="target_scores")
        objective = tf.reduce_sum(target_scores)
        attention = AttentionMaps(find_attention_probabilities(path), path, view,
                                  (height, width))
        layer_grads, gbp, attention_grads = _gradients(
            objective, view.layer_tensor, net_input, head.scores, layer, attention.probabilities)
        grads = view.to_grid(layer_grads)  # a token layer's gradient, viewed as A is
        # The counterfactual map negates g for every method: regions speaking against c.
        sign = tf.where(counterfactual, -1.0, 1.0)
        methods = _method_maps(activations, sign * grads, gbp, height, width, eigen_smooth)
        methods.update(_attention_maps(
            attention, [g if g is None else sign * g for g in attention_grads], gbp, height,
            width))
        gradcam = methods[GRADCAM]
        _check_all_placeholders_fed(
            [targets, head.scores, gbp, *(t for maps in methods.values() for t in maps)],
            {images.op, labels.op, counterfactual.op}, model.feeds, model.scope)

    return ExplanationGraph(
        graph=graph, images=images, labels=labels, counterfactual=counterfactual,
        net_input=net_input, targets=targets, target_scores=target_scores, logits=head.scores,
        activations=activations,
        tail_reads_input=reads(head.explained, net_input, view.layer_tensor),
        eigen_smooth=bool(eigen_smooth),
        cam_lowres=gradcam.lowres, cam=gradcam.cam, gbp=gbp, guided_gradcam=gradcam.guided,
        layer=layer, layer_names=tuple({**model.layers, **model.token_layers}), head=head,
        model=model, unguided=unguided, methods=methods, background_logits=background,
        region=region, layer_tensor=view.layer_tensor, tokens=view.tokens, grid=view.grid,
        layer_description=view.describe(),
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
