"""One photo's evaluation: every map of each evaluated class, measured against the model itself
(occlusion, deletion / insertion), against ground-truth boxes, and against randomised weights.

    photo → explain (each class, and its counterfactual) → maps ─┬─ occlusion Δ: Spearman ρ
                                                                 ├─ deletion / insertion AUC
                                                                 ├─ Grad-CAM boxes, map peaks vs VOC
                                                                 └─ maps under random weights

Every forward pass goes through `GuidedGradCam.forward` on preprocessed inputs, `batch_size` at
a time: the occluded copies serve all classes at once, and the curve points of all maps and both
modes are packed into as few runs as the batch size allows.

A 3-channel map (GBP, the guided maps) becomes one map as max_c |x_c| (`similarity.single_channel`)
for the rank correlation, the pixel order and the peak. A counterfactual map shows what speaks
*against* the class: its faithfulness is ρ with −Δ, and its deletion curve should rise.
"""
import dataclasses

import numpy as np

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation import boxes as gt_boxes
from guided_gradcam.evaluation import deletion_insertion, faithfulness, similarity
from guided_gradcam.explainer import TopClass
from guided_gradcam.evaluation.localization import box_to_photo, gradcam_box

METRICS = ("faithfulness", "deletion", "localisation", "sanity")
CURVE_MODES = ("deletion", "insertion")


@dataclasses.dataclass(frozen=True)
class Settings:
    metrics: tuple = METRICS
    methods: tuple = ("gradcam",)  # the Grad-CAM family members measured besides today's maps
    patch: int = faithfulness.DEFAULT_PATCH
    stride: int = faithfulness.DEFAULT_STRIDE
    step: int = deletion_insertion.DEFAULT_STEP
    batch_size: int = 32
    seed: int = 0  # of the random weights
    randomisation: tuple = ("cascading", "independent")  # the sanity checks' modes
    tolerance: float = 15.0  # pointing game, in photo pixels
    # What deletion sets the pixels to and what insertion starts from: deletion_insertion.BASELINES
    deletion_baseline: str = deletion_insertion.DEFAULT_BASELINES["deletion"]
    insertion_baseline: str = deletion_insertion.DEFAULT_BASELINES["insertion"]

    @property
    def baselines(self):
        return {"deletion": self.deletion_baseline, "insertion": self.insertion_baseline}


@dataclasses.dataclass
class ClassResult:
    """The measurements of one (photo, class)."""
    class_index: int
    class_name: str
    probability: float  # None for regression
    faithfulness: dict = dataclasses.field(default_factory=dict)  # map → ρ with occlusion
    deletion: dict = dataclasses.field(default_factory=dict)  # map → AUC
    insertion: dict = dataclasses.field(default_factory=dict)  # map → AUC
    curves: dict = dataclasses.field(default_factory=dict)  # (map, mode) → scores per point
    # mode → the class's score of that mode's baseline image alone (what deletion ends on and
    # insertion starts from), and of the photo ("photo"): the curves' scale
    baseline_scores: dict = dataclasses.field(default_factory=dict)
    pointing: dict = dataclasses.field(default_factory=dict)  # map → hit (ground-truth classes)
    sanity: list = dataclasses.field(default_factory=list)  # SanityRow per step and map


@dataclasses.dataclass
class SanityRow:
    mode: str  # cascading or independent
    step: int  # 1 = the top block
    block: str  # the block randomised at this step (cascading: and all above it)
    map: str
    spearman_abs: float
    spearman_signed: float
    ssim: float
    hog: float


@dataclasses.dataclass
class PhotoResult:
    path: str
    stem: str
    classes: list = dataclasses.field(default_factory=list)  # ClassResult
    top5: list = dataclasses.field(default_factory=list)  # TopClass
    localisation: dict = dataclasses.field(default_factory=dict)  # top1 / top5 → correct
    crop: tuple = None  # the photo's box that became the network input
    fractions: np.ndarray = None  # of pixels changed at each curve point
    explanations: list = dataclasses.field(default_factory=list)  # of each evaluated class
    error: str = None
    notes: list = dataclasses.field(default_factory=list)  # one line each, said once per photo
    warnings: list = dataclasses.field(default_factory=list)  # numbers that may mislead
    baselines: dict = dataclasses.field(default_factory=dict)  # mode → baseline name (measured)
    box_file: str = None  # the VOC file read for the photo; None without (or without --boxes)


def map_names(methods=("gradcam",), counterfactual=True):
    """The maps measured, in report order."""
    names = dict.fromkeys(["gradcam", "gbp", "guided_gradcam"])  # Grad-CAM's are always there
    for method in methods:
        names.update(dict.fromkeys([method, "guided_" + method]))
    return list(names) + (["counterfactual", "guided_counterfactual"] if counterfactual else [])


def maps_of(explanation, counterfactual=None):
    """{map name: array} of one explanation (and its counterfactual)."""
    maps = {"gradcam": explanation.cam, "gbp": explanation.gbp,
            "guided_gradcam": explanation.guided_gradcam}
    for method in explanation.methods:
        maps[method], maps["guided_" + method] = explanation.maps(method)[1:]
    if counterfactual is not None:
        maps["counterfactual"] = counterfactual.cam
        maps["guided_counterfactual"] = counterfactual.guided_gradcam
    return maps


def absolute(saliency):
    return similarity.single_channel(saliency)[0]


def _scores(explainer, inputs, feeds=None):
    """The score the curves follow: probabilities (softmax; sigmoid for binary and multi-label
    models), y itself for regression."""
    y, probabilities = explainer.forward(inputs, feeds)
    return y if probabilities is None else probabilities


def occlusion_deltas(explainer, net_input, classes, patch, stride, batch_size):
    """(Δ (N, len(classes)), positions): y^c(image) − y^c(occluded) for every patch position;
    each batch of occluded copies serves every class."""
    height, width = net_input.shape[:2]
    positions = faithfulness.occlusion_positions(height, width, patch, stride)
    reference = explainer.forward(net_input[None])[0][0, classes]
    scores = np.concatenate([
        explainer.forward(faithfulness.occluded(net_input, positions[start:start + batch_size],
                                                patch))[0][:, classes]
        for start in range(0, len(positions), batch_size)])
    return reference[None, :] - scores, positions


def curve_scores(explainer, net_input, curves, step, batch_size, baselines=None):
    """Deletion / insertion: curves = [(pixel order, mode, class index)] → scores (len(curves),
    points). The points of all curves, one after another, fill runs of exactly batch_size.
    baselines: {mode: image} (`deletion_insertion.baseline`), by default 0 for deletion and
    the blur for insertion (`deletion_insertion.curve_inputs`)."""
    num_points = len(deletion_insertion.step_fractions(net_input.shape[0] * net_input.shape[1],
                                                       step))
    baselines = dict(baselines or {})
    baselines.setdefault("deletion", np.zeros_like(net_input))
    baselines.setdefault("insertion", deletion_insertion.blurred(net_input))
    total = len(curves) * num_points
    classes = np.repeat([c for _, _, c in curves], num_points)
    scores = np.empty(total)
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        pieces = []
        for curve in range(start // num_points, (stop - 1) // num_points + 1):
            order, mode, _ = curves[curve]
            offset = curve * num_points
            pieces.append(deletion_insertion.curve_inputs(
                net_input, order, step, mode, max(start, offset) - offset,
                min(stop, offset + num_points) - offset, baseline=baselines[mode]))
        batch = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        scores[start:stop] = _scores(explainer, batch)[np.arange(stop - start),
                                                       classes[start:stop]]
    return scores.reshape(len(curves), num_points)


class Evaluator:
    """Measures the maps of `explainer` (a GuidedGradCam) photo by photo."""

    def __init__(self, explainer, settings=Settings(), boxes_dir=None):
        unknown = sorted(set(settings.metrics) - set(METRICS))
        if unknown:
            raise GuidedGradCamError("unknown metric %s; choose from %s"
                                     % (", ".join(unknown), ", ".join(METRICS)))
        for mode, name in settings.baselines.items():
            if name not in deletion_insertion.BASELINES:
                raise GuidedGradCamError("unknown %s baseline %r; choose from %s" % (
                    mode, name, ", ".join(deletion_insertion.BASELINES)))
        self.explainer = explainer
        self.settings = settings
        self.boxes_dir = boxes_dir
        # Counterfactual maps are measured by the metrics that know what to expect of them.
        self.counterfactual = explainer.task != "regression" and bool(
            {"faithfulness", "deletion"} & set(settings.metrics))
        self._randomiser = None
        if "sanity" in settings.metrics:
            from guided_gradcam.evaluation.sanity import Randomiser  # TF-side; only when asked
            self._randomiser = Randomiser(explainer, settings.seed, settings.randomisation)

    @property
    def blocks(self):
        return self._randomiser.block_names if self._randomiser else ()

    def evaluate(self, photo, path="", stem="", labels=None):
        """PhotoResult of one photo (uint8 (H, W, 3)); labels: classes to evaluate (indices or
        names; default the top-1), joined by the ground-truth classes when boxes are given."""
        settings, explainer = self.settings, self.explainer
        network_input, crop = explainer.fit(photo)
        result = PhotoResult(path, stem, crop=crop)
        # The predicted classes need the forward pass only; each class's maps come below.
        net_input = explainer.network_inputs(network_input[None])[0]
        probabilities = explainer.forward(net_input[None])[1]
        if probabilities is not None:
            order = np.argsort(-probabilities[0], kind="stable")[:5]  # ties: the first, as argmax
            result.top5 = [TopClass(int(c), float(probabilities[0, c]), explainer.labels.name(c))
                           for c in order]
        predicted = [c.index for c in result.top5]
        classes = [explainer.labels.resolve(label) for label in labels or []] or (
            predicted[:1] or [0])  # regression: its one output
        truth = self._ground_truth(stem, result)
        if truth is not None:
            classes += [c for c in {**truth[0], **truth[1]} if c not in classes]
        box_classes = ([c for c in predicted if c not in classes]
                       if truth is not None and "localisation" in settings.metrics else [])
        explanations = self._explain(network_input, classes + box_classes)
        counterfactuals = (self._explain(network_input, classes, counterfactual=True)
                           if self.counterfactual else [None] * len(classes))
        result.explanations = explanations[:len(classes)]
        maps = [maps_of(e, cf) for e, cf in zip(explanations, counterfactuals)]
        for explanation in result.explanations:
            probability = (None if explanation.probabilities is None
                           else float(explanation.probabilities[explanation.label]))
            result.classes.append(ClassResult(explanation.label, explanation.class_name,
                                              probability))
        if {"faithfulness", "deletion"} & set(settings.metrics):
            self._note_zero_maps(result, counterfactuals)

        if "faithfulness" in settings.metrics:
            self._faithfulness(net_input, classes, maps, result)
        if "deletion" in settings.metrics:
            self._deletion_insertion(net_input, maps, result)
        if truth is not None and "localisation" in settings.metrics:
            cams = {e.label: e.cam for e in explanations}
            self._localisation(cams, maps, truth, predicted, crop, result)
        if self._randomiser is not None:
            self._sanity(network_input, classes, maps, result)
        return result

    def _note_zero_maps(self, result, counterfactuals):
        """A note for each all-zero Grad-CAM map (as inference.py gives): it ranks no pixels,
        so its numbers and its guided version's are NaN, `-` in the summary."""
        for explanation, counterfactual in zip(result.explanations, counterfactuals):
            subject = ("y" if explanation.task == "regression"
                       else self.explainer.labels.describe(explanation.label))
            for mode, meaning, e in (("", "no positive evidence for", explanation),
                                     ("counterfactual ", "nothing speaks against",
                                      counterfactual)):
                if e is not None and not e.cam_lowres.any():
                    result.notes.append(
                        "%s: the %sGrad-CAM map of %s is all zero: %s it at layer %s; its "
                        "numbers and its guided map's are NaN (- in the summary)" % (
                            result.path, mode, subject, meaning, self.explainer.layer))

    def _explain(self, network_input, classes, counterfactual=False):
        explanations = []
        for start in range(0, len(classes), self.settings.batch_size):
            batch = classes[start:start + self.settings.batch_size]
            explanations += self.explainer.explain(
                np.repeat(network_input[None], len(batch), 0), batch,
                counterfactual=counterfactual, methods=self.settings.methods)
        return explanations

    def _ground_truth(self, stem, result):
        """({class: boxes}, {class: difficult boxes}) of the photo's VOC file; None without."""
        if self.boxes_dir is None:
            return None
        annotation = gt_boxes.find_annotation(self.boxes_dir, stem)
        if annotation is None:
            return None
        result.box_file = annotation.path
        result.notes.extend(annotation.notes)
        return gt_boxes.ground_truth(annotation, self.explainer.labels)

    def _faithfulness(self, net_input, classes, maps, result):
        s = self.settings
        deltas, positions = occlusion_deltas(self.explainer, net_input, classes, s.patch,
                                             s.stride, s.batch_size)
        for column, (class_result, class_maps) in enumerate(zip(result.classes, maps)):
            occlusion = faithfulness.occlusion_map(deltas[:, column], positions, s.patch,
                                                   net_input.shape[:2])
            for name, saliency in class_maps.items():
                against = -occlusion if "counterfactual" in name else occlusion
                class_result.faithfulness[name] = faithfulness.spearman(absolute(saliency),
                                                                        against)

    def _deletion_insertion(self, net_input, maps, result):
        s = self.settings
        curves, keys = [], []
        for class_result, class_maps in zip(result.classes, maps):
            for name, saliency in class_maps.items():
                magnitude = absolute(saliency)
                if magnitude.min() == magnitude.max():  # e.g. an all-zero map: no order
                    for mode in CURVE_MODES:
                        getattr(class_result, mode)[name] = float("nan")
                    continue
                order = deletion_insertion.pixel_order(magnitude)
                for mode in CURVE_MODES:
                    curves.append((order, mode, class_result.class_index))
                    keys.append((class_result, name, mode))
        baselines = {mode: deletion_insertion.baseline(name, net_input,
                                                       self.explainer.source.preprocessing)
                     for mode, name in s.baselines.items()}
        result.baselines = dict(s.baselines)
        self._check_baselines(net_input, baselines, result)
        scores = curve_scores(self.explainer, net_input, curves, s.step, s.batch_size, baselines)
        result.fractions = deletion_insertion.step_fractions(
            net_input.shape[0] * net_input.shape[1], s.step)
        for (class_result, name, mode), points in zip(keys, scores):
            class_result.curves[name, mode] = points
            getattr(class_result, mode)[name] = deletion_insertion.auc(points, result.fractions)

    def _check_baselines(self, net_input, baselines, result):
        """Each class's score of the photo and of each baseline alone; a warning where a
        baseline alone already scores the class above the photo: deletion then ends above
        where it starts, insertion starts above where it ends, whatever the map."""
        scores = _scores(self.explainer, np.stack([net_input] + [baselines[mode]
                                                                 for mode in CURVE_MODES]))
        for class_result in result.classes:
            photo, *alone = scores[:, class_result.class_index]
            class_result.baseline_scores = dict(zip(CURVE_MODES, map(float, alone)),
                                                photo=float(photo))
            for mode, score in zip(CURVE_MODES, alone):
                if score > photo:
                    result.warnings.append(
                        "%s: the %s %s baseline alone scores %s %.3g, above the photo's %.3g: "
                        "%s AUC says more of the baseline than of the maps (--baseline %s=NAME)"
                        % (result.path, result.baselines[mode], mode,
                           self.explainer.labels.describe(class_result.class_index)
                           if self.explainer.task != "regression" else "y", score, photo,
                           mode, mode))

    def _localisation(self, cams, maps, truth, predicted, crop, result):
        """Top-1 / top-5 localisation (the Grad-CAM box of each predicted class) and the
        pointing game of each ground-truth class; None where VOC's difficult rule leaves the
        photo out."""
        required, difficult = truth
        input_size = self.explainer.input_size
        if predicted:
            cam_boxes = {}
            for c in predicted:
                box = gradcam_box(cams[c])
                cam_boxes[c] = None if box is None else box_to_photo(box, crop, input_size)
            for k in (1, 5):
                correct = gt_boxes.localisation_correct(predicted[:k], cam_boxes, required,
                                                        difficult)
                if correct is not None:
                    result.localisation["top%d" % k] = correct
        for class_result, class_maps in zip(result.classes, maps):
            c = class_result.class_index
            if c not in required and c not in difficult:
                continue  # not a ground-truth class
            for name, saliency in class_maps.items():
                if "counterfactual" in name:
                    continue  # a counterfactual map points away from the class by design
                peak = gt_boxes.peak(absolute(saliency))
                point = None if peak is None else gt_boxes.point_to_photo(peak, crop, input_size)
                hit = gt_boxes.pointing_game(point, required.get(c, ()), difficult.get(c, ()),
                                             self.settings.tolerance)
                if hit is not None:
                    class_result.pointing[name] = hit

    def _sanity(self, network_input, classes, maps, result):
        """Each step's maps against the original ones (counterfactual maps left out)."""
        references = [{name: similarity.Reference(saliency) for name, saliency in m.items()
                       if "counterfactual" not in name} for m in maps]
        for mode, step, block, feeds in self._randomiser.steps():
            explanations = self._explain_with(network_input, classes, feeds)
            for class_result, originals, explanation in zip(result.classes, references,
                                                            explanations):
                for name, randomised in maps_of(explanation).items():
                    scores = originals[name].compare(randomised)
                    class_result.sanity.append(SanityRow(mode, step, block, name, **scores))

    def _explain_with(self, network_input, classes, feeds):
        images = np.repeat(network_input[None], len(classes), 0)
        return self.explainer.explain(images, classes, methods=self.settings.methods,
                                      feeds=feeds)
