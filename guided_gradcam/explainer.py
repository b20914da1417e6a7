"""The Python API: `GuidedGradCam` owns one graph and one session; `explain` is one run.

    from guided_gradcam import GuidedGradCam, load_photo
    with GuidedGradCam("mobilenet_v1_075") as explainer:
        explanation, = explainer.explain_photos([load_photo("cat.jpg")], labels=["tiger cat"])
        explanation.cam, explanation.gbp, explanation.guided_gradcam
"""
import sys

from guided_gradcam.core.tf_startup import quiet_tensorflow_import

quiet_tensorflow_import()  # the API is as quiet as the CLI, also imported directly
import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

from guided_gradcam import channel_maps, forward_passes, segmentation, smoothing
from guided_gradcam.core import heads
from guided_gradcam.errors import GuidedGradCamError, first_line
from guided_gradcam.explanation import (  # noqa: F401 (Explanation: also the API's)
    Explanation, MethodMaps, probabilities_of)
from guided_gradcam.methods import GRADCAM, REGISTRY, parse_methods
from guided_gradcam.methods.base import MASKED_INPUTS
from guided_gradcam.methods.scorecam import DEFAULT_CHANNELS
from guided_gradcam.graph import PREDICTED_CLASS, build_explanation_graph
from guided_gradcam.images import fit_to_network
from guided_gradcam.regions import RegionChoice
from guided_gradcam.labels import LabelSpace, read_labels_file, read_synsets
from guided_gradcam.zoo.networks import DEFAULT_NETWORK
from guided_gradcam.sources import open_source


def session_config():
    """One op at a time, each on every core: TF's intra-op pool already spreads a conv over all
    cores, and letting independent ops run side by side (VGG's two backward passes over fc6)
    oversubscribed them: up to 1.4x slower and erratic on 2 cores, no gain elsewhere."""
    return tf.ConfigProto(inter_op_parallelism_threads=1)


class GuidedGradCam:
    """Grad-CAM, Guided Backprop and Guided Grad-CAM for one model.

    model: a TF-Slim network name (see `NETWORKS`); a path to a `.keras` / `.h5` file, a
    SavedModel folder, a frozen `.pb` GraphDef or a TF1 `.meta` graph; an in-memory Keras model;
    or a `sources.base.ModelSource`. input / output / feeds name tensors of graph formats
    (feeds: {placeholder name: value}); preprocess: a `preprocessing.PREPROCESSINGS` name
    (default: the network's own, 'raw' for models); labels_file: one class name per line, or
    'imagenet'; methods: the Grad-CAM family members `explain` computes by default.
    trust_model: run a model that would do more than compute (file or Python ops, Keras
    `Lambda` layers), which is refused by default (`model_safety`): a model file is a program.
    batch_size: inputs per run of Score-CAM's masked inputs and Ablation-CAM's tail passes.
    score_cam_channels: Score-CAM masks only this many channels of largest variance (Faster
    Score-CAM); None: every channel. aug_smooth, eigen_smooth: the smoothing options of
    pytorch-grad-cam, for every method (`smoothing`, `methods.base.principal_projection`).
    tokens, grid: a token layer's leading tokens T and patch grid (h, w), where the model
    cannot tell them (`core.tokens`; a transformer's layers are found and shaped without).
    """

    def __init__(self, model=DEFAULT_NETWORK, checkpoint=None, layer=None,
                 checkpoints_dir=None, download=True,
                 input_size=None, progress=sys.stderr, *, input=None, output=None, feeds=None,
                 signature=None, preprocess=None, labels_file=None, methods=("gradcam",),
                 trust_model=False, batch_size=16, score_cam_channels=DEFAULT_CHANNELS,
                 aug_smooth=False, eigen_smooth=False, tokens=None, grid=None):
        self.methods = parse_methods(methods)  # explain's default
        self.trust_model = bool(trust_model)
        if int(batch_size) < 1 or (score_cam_channels is not None and int(score_cam_channels) < 1):
            raise GuidedGradCamError("batch_size and score_cam_channels must be at least 1")
        self.batch_size = int(batch_size)
        self.score_cam_channels = score_cam_channels and int(score_cam_channels)
        self.aug_smooth = bool(aug_smooth)
        self._progress = progress
        self.source = open_source(
            model, checkpoint=checkpoint, checkpoints_dir=checkpoints_dir, download=download,
            progress=progress, input=input, output=output, feeds=feeds, signature=signature,
            preprocess=preprocess, input_size=input_size, trust_model=trust_model)
        # ImageNet's names for a model only when asked; with 1001 scores, logit 0 is background.
        self._graph = build_explanation_graph(self.source, layer, input_size,
                                              imagenet_background=labels_file == "imagenet",
                                              eigen_smooth=eigen_smooth, tokens=tokens,
                                              grid=grid)
        self.eigen_smooth = self._graph.eigen_smooth
        self._check_available(self.methods)
        g = self._graph
        self.task = g.head.task
        self.pixel_task = g.head.pixel_task  # segmentation: each pixel's task
        num_scores = g.head.scores.shape[-1]
        explainable = g.head.explained.shape[-1]
        classes = explainable - g.background_logits
        names = self.source.class_names
        if labels_file is not None:
            names = read_labels_file(labels_file, classes)
        elif g.head.task == heads.REGRESSION:
            names = names or ("value",)
        names = names or tuple("class %d" % index for index in range(classes))
        self.labels = LabelSpace(explainable, names, g.background_logits,
                                 wnids=read_synsets(labels_file))
        self._short_names = tuple(self.labels.name(i) for i in range(len(self.labels)))
        self.num_scores = num_scores
        self.checkpoint = getattr(self.source, "checkpoint", None)
        self.layer = g.layer
        self.layer_description = g.layer_description  # with a token layer's T and grid
        self.layer_names = g.layer_names
        self.unguided_activations = dict(g.unguided)  # {activation: count} GBP passes as is
        self.input_size = tuple(g.images.shape.as_list()[1:3])
        self.channels = g.images.shape.as_list()[3]
        self._session = tf.Session(graph=g.graph, config=session_config())
        g.model.restore(self._session)
        g.graph.finalize()  # nothing may add ops per batch
        self.images_run = 0  # through the network by explain and forward: a run's throughput
        self._buffers = forward_passes.Buffers()  # the passes' batch arrays, kept between calls

    @property
    def spec(self):
        """The TF-Slim NetworkSpec (slim networks only)."""
        return getattr(self.source, "spec", None)

    # -- running ------------------------------------------------------------------------------
    def explain(self, images, labels=None, counterfactual=False, methods=None, *, feeds=None,
                region=None, mask=None, background=None):
        """Explains a batch of network inputs (uint8 (B, H, W, C)) in one session run.

        labels: None (each image's top-1 class), one label for all images, or one per image
        (None entries mean top-1). A label is a class index or a class name.
        methods: the CAM methods to compute besides Grad-CAM, whose maps are always computed
        (`guided_gradcam.methods.METHODS`); default: the explainer's `methods`.
        feeds: extra {tensor: value} for this run, e.g. randomised weights
        (`evaluation.randomisation`).
        Segmentation models (`segmentation`): y^c sums class c's per-pixel scores over a region:
        `region` a box (x0, y0, x1, y1) in input pixels or `mask` an (H, W) array (non-zero: in
        the region), one for all images or a list of one per image; default: the pixels
        predicted as c. Without a label, c is the class of the largest predicted area, leaving
        out class `background`. Images with an empty region raise `EmptyRegionError`.
        """
        methods = parse_methods(methods or self.methods)
        images = self._checked_images(images)
        g = self._graph
        counterfactual = bool(counterfactual)
        feeds = {**g.model.feeds, **(feeds or {})}
        labels = self._logit_indices(labels, len(images))
        targeted = None
        if g.region is not None:  # the class and its region need the prediction first
            targeted = self._region_targets(images, labels, region, mask, background, feeds)
            labels, feeds = targeted.labels, {**feeds, g.region: targeted.regions}
        elif region is not None or mask is not None:
            raise GuidedGradCamError("a region or mask needs a segmentation model, whose output "
                                     "is (batch, height, width, classes)")
        batch = self._maps({g.images: images}, labels, counterfactual, methods, feeds)
        if self.aug_smooth:
            batch["maps"] = self._augmentation_smoothed(batch, counterfactual, methods, feeds)
        targets, scores, gbp, maps = batch["targets"], batch["scores"], batch["gbp"], batch["maps"]
        cam_lowres, cam, guided = maps[GRADCAM]
        offset = self.labels.offset
        if targeted is None:
            logits, probabilities = scores[:, offset:], probabilities_of(self.task, scores, offset)
        else:  # each class's Σ_R z and mean probability over the region
            logits = segmentation.region_scores(scores, self.pixel_task, targeted.regions)
            probabilities = targeted.probabilities
        return [
            Explanation(
                label=int(targets[b]) - offset, logits=logits[b],
                probabilities=None if probabilities is None else probabilities[b],
                cam_lowres=cam_lowres[b], cam=cam[b], gbp=gbp[b], guided_gradcam=guided[b],
                image=images[b], counterfactual=bool(counterfactual), task=self.task,
                class_names=self._short_names,
                methods={method: MethodMaps(*(m[b] for m in maps[method])) for method in methods},
                **segmentation.explanation_fields(targeted, b))
            for b in range(len(images))
        ]

    def _region_targets(self, images, labels, region, mask, background, feeds):
        """The segmentation.RegionTargets of a batch, from one forward pass."""
        g = self._graph
        masks = segmentation.input_masks(len(images), self.input_size, region, mask)
        scores = self._run(g.logits, {g.images: images, **feeds})
        return segmentation.choose_targets(
            self.pixel_probabilities(scores), self.pixel_task, labels, masks, self.input_size,
            None if background is None else self.labels.resolve(background), self.labels.name)

    def largest_classes(self, images, background=None, feeds=None):
        """A segmentation model's default class per image (uint8 (B, H, W, C) network inputs):
        the one with the largest predicted area, `background` left out."""
        targets = self._region_targets(images, np.full(len(images), -1), None, None, background,
                                       feeds or {})
        return [int(label) for label in targets.labels]

    def pixel_probabilities(self, scores):
        """A segmentation model's [B, H', W', K] probabilities of its raw scores [B, H', W', C]."""
        flat = probabilities_of(self.pixel_task, scores.reshape(-1, scores.shape[-1]))
        return flat.reshape(scores.shape[:3] + flat.shape[-1:])

    def _maps(self, inputs, labels, counterfactual, methods, feeds):
        """One batch's {targets, scores, gbp, net_input, maps: {method: MethodMaps of [B, ...]
        arrays}} from one session run, plus the forward passes of the gradient-free methods.
        inputs: {images placeholder: uint8} or {net_input: preprocessed inputs}."""
        g = self._graph
        feed = {**inputs, g.labels: labels, g.counterfactual: counterfactual, **feeds}
        in_graph = [GRADCAM] + [m for m in methods if m != GRADCAM and REGISTRY[m].in_graph]
        passes = [m for m in methods if not REGISTRY[m].in_graph]
        self._check_available(in_graph)
        fetches = {"targets": g.targets, "scores": g.logits, "gbp": g.gbp,
                   "net_input": g.net_input,
                   "maps": {method: tuple(g.methods[method]) for method in in_graph}}
        if passes:
            fetches.update(target_scores=g.target_scores, activations=g.activations,
                           layer_values=g.layer_tensor)
        batch = self._run(fetches, feed)
        self.images_run += len(labels)
        batch["maps"] = {method: MethodMaps(*maps) for method, maps in batch["maps"].items()}
        for method in passes:
            batch["maps"][method] = self._maps_from_passes(REGISTRY[method], batch,
                                                           counterfactual, feeds)
        return batch

    def _check_available(self, methods):
        """One error line for an attention method asked of a model without attention."""
        missing = [m for m in methods if REGISTRY[m].in_graph and m not in self._graph.methods]
        if missing:
            raise GuidedGradCamError(self._graph.attention_error % ", ".join(missing))

    def _maps_from_passes(self, method, batch, counterfactual, feeds):
        """A gradient-free method's MethodMaps: scores of its forward passes → weights → maps."""
        g = self._graph
        arguments = (self._run, g, batch["net_input"], batch["activations"], batch["targets"],
                     self.batch_size)
        # A segmentation image's passes are scored over its own region, the main run's.
        image_feeds = {g.region: feeds[g.region]} if g.region in feeds else {}
        feeds = {tensor: value for tensor, value in feeds.items() if tensor not in image_feeds}
        if method.needs == MASKED_INPUTS:
            scores = forward_passes.masked_input_scores(
                *arguments, channels=self.score_cam_channels, feeds=feeds,
                progress=self._progress, image_feeds=image_feeds, buffers=self._buffers)
        else:
            scores = forward_passes.ablated_scores(*arguments[:3], batch["layer_values"],
                                                   *arguments[4:], feeds=feeds,
                                                   progress=self._progress,
                                                   image_feeds=image_feeds,
                                                   buffers=self._buffers)
        self.images_run += int(np.isfinite(scores).sum())  # one pass per evaluated channel
        weights = method.score_weights(scores, batch["target_scores"], counterfactual)
        return MethodMaps(*channel_maps.weighted_maps(weights, batch["activations"],
                                                      batch["gbp"], g.eigen_smooth))

    def _augmentation_smoothed(self, batch, counterfactual, methods, feeds):
        """{method: MethodMaps} averaged over `smoothing.AUGMENTATIONS`, for the class explained
        on the input itself."""
        g = self._graph
        lowres = {method: [maps.lowres] for method, maps in batch["maps"].items()}
        cams = {method: [maps.cam] for method, maps in batch["maps"].items()}
        for flip, brightness in smoothing.AUGMENTATIONS[1:]:
            augmented = smoothing.augment(batch["net_input"], flip, brightness)
            flipped = feeds if g.region not in feeds else {  # a flipped input's region too
                **feeds, g.region: segmentation.flipped_regions(feeds[g.region], flip)}
            maps = self._maps({g.net_input: augmented}, batch["targets"], counterfactual,
                              methods, flipped)["maps"]
            for method, (method_lowres, method_cam, _) in maps.items():
                lowres[method].append(smoothing.restore(method_lowres, flip))
                cams[method].append(smoothing.restore(method_cam, flip))
        return {method: MethodMaps(*smoothing.average(lowres[method], cams[method], batch["gbp"]))
                for method in lowres}

    def network_inputs(self, images):
        """The preprocessed network inputs, float32 (B, H, W, C), of uint8 images: where 0 is
        the preprocessing's neutral value (occluded, deleted pixels)."""
        g = self._graph
        return self._run(g.net_input, {g.images: self._checked_images(images)})

    def forward(self, net_inputs, feeds=None, class_regions=None):
        """(y, probabilities) of preprocessed inputs (`network_inputs`, modified), one column
        per class (a background logit left out): y^c, the score each map explains (before
        softmax / sigmoid; binary: [−z, z]), and the probabilities `Explanation` reports (None
        for regression). Nothing but the forward pass runs. Segmentation: class c's y = Σ_R z^c
        and mean probability over its region `class_regions[c]` ({class: (H', W')} at the
        output's resolution: an explanation's `output_region`), else over the whole output."""
        g = self._graph
        feed = {g.net_input: net_inputs, **g.model.feeds, **(feeds or {})}
        self.images_run += len(net_inputs)
        if g.region is not None:
            scores = self._run(g.logits, feed)
            return segmentation.scores_over_class_regions(
                scores, self.pixel_probabilities(scores), self.pixel_task, class_regions)
        explained, scores = self._run([g.head.explained, g.logits], feed)
        offset = self.labels.offset
        return explained[:, offset:], probabilities_of(self.task, scores, offset)

    def _run(self, fetches, feed):
        try:
            return self._session.run(fetches, feed)
        except tf.errors.OpError as error:
            raise GuidedGradCamError("the model failed to run: %s" % first_line(error)) from None

    def _checked_images(self, images):
        images = np.asarray(images, dtype=np.uint8)
        expected = self.input_size + (self.channels,)
        if images.ndim == 3 and self.channels == 1 and images.shape[1:] == self.input_size:
            images = images[..., None]
        if images.ndim != 4 or images.shape[1:] != expected:
            raise GuidedGradCamError(
                "images must be uint8 (B, %d, %d, %d); got shape %s"
                % (expected + (images.shape,)))
        return images

    # The graph and session, for the evaluation's weight randomisation.
    graph = property(lambda self: self._graph, doc="The ExplanationGraph.")
    session = property(lambda self: self._session, doc="The explainer's tf.Session.")

    def fit(self, photo):
        """(network input, crop box): the photo centre-cropped to the input's aspect, resized;
        gray (H, W, 1) for a 1-channel model."""
        return fit_to_network(photo, *self.input_size, channels=self.channels)

    def explain_photos(self, photos, labels=None, counterfactual=False, methods=None, *,
                       region=None, mask=None, background=None):
        """Like `explain`, for photos of any size (uint8 (H, W, 3) each); a segmentation
        model's `region` box and `mask` (an array or an image file) are in photo pixels, the
        same for every photo, taken through its crop and resize (`regions.RegionChoice`)."""
        fitted = [self.fit(photo) for photo in photos]
        choice = RegionChoice(region, mask, note=self._note)
        masks = [choice.input_mask(np.shape(photo), box, self.input_size)
                 for photo, (_, box) in zip(photos, fitted)] if choice else None
        return self.explain(np.stack([network_input for network_input, _ in fitted]), labels,
                            counterfactual, methods, mask=masks, background=background)

    def _note(self, message):
        if self._progress is not None:
            self._progress.write("note: %s\n" % message)
            self._progress.flush()

    def _logit_indices(self, labels, batch_size):
        if labels is None or isinstance(labels, (str, int, np.integer)):
            labels = [labels] * batch_size
        if len(labels) != batch_size:
            raise GuidedGradCamError("%d labels for %d images" % (len(labels), batch_size))
        return np.array([
            PREDICTED_CLASS if label is None else self.labels.resolve(label) + self.labels.offset
            for label in labels
        ], dtype=np.int32)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
