"""One photo's evaluation: every map of each evaluated class, measured against the model itself
(occlusion, deletion / insertion), against ground-truth boxes, and against randomised weights.

    photo → explain (each class, and its counterfactual) → maps ─┬─ occlusion Δ: Spearman ρ
                                                                 ├─ deletion / insertion AUC
                                                                 ├─ Grad-CAM boxes, map peaks vs VOC
                                                                 └─ maps under random weights

Each metric of `evaluation.metrics` measures the maps of a photo (`metric.Photo`); every
forward pass goes through `GuidedGradCam.forward` on preprocessed inputs, `batch_size` at a
time.

A 3-channel map (GBP, the guided maps) becomes one map as max_c |x_c| (`similarity.single_channel`)
for the rank correlation, the pixel order and the peak. A counterfactual map shows what speaks
*against* the class: its faithfulness is ρ with −Δ, and its deletion curve should rise.
"""
import dataclasses

import numpy as np

from guided_gradcam.core.tasks import REGRESSION, SEGMENTATION
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation import boxes as gt_boxes
from guided_gradcam.evaluation import deletion_insertion, faithfulness, ilsvrc
from guided_gradcam.evaluation.localization import region_truth
from guided_gradcam.evaluation.metric import Photo
from guided_gradcam.evaluation.metrics import METRICS, REGISTRY
# The results are defined apart (no TensorFlow), for reading them back from the CSV files.
from guided_gradcam.evaluation.results import ClassResult, PhotoResult  # noqa: F401
from guided_gradcam.explanation import top_classes
from guided_gradcam.segmentation import ScoredOverRegions


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


class Evaluator:
    """Measures the maps of `explainer` (a GuidedGradCam) photo by photo, with each metric of
    `settings.metrics` (`evaluation.metrics`)."""

    def __init__(self, explainer, settings=Settings(), boxes_dir=None, background=None):
        """boxes_dir: --boxes, a folder of VOC XML files or a LOC_val_solution.csv file;
        background: a segmentation model's class never chosen as a photo's default."""
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
        self.background = background
        self.boxes = None if boxes_dir is None else ilsvrc.open_boxes(boxes_dir)
        self.metrics = [REGISTRY[name] for name in METRICS if name in settings.metrics]
        # Counterfactual maps are measured by the metrics that know what to expect of them.
        self.counterfactual = explainer.task != REGRESSION and any(
            metric.counterfactual for metric in self.metrics)
        self._states = {metric.name: metric.prepare(explainer, settings)
                        for metric in self.metrics if metric.prepare is not None}

    @property
    def blocks(self):
        randomiser = self._states.get("sanity")
        return randomiser.block_names if randomiser else ()

    def evaluate(self, photo, path="", stem="", labels=None):
        """PhotoResult of one photo (uint8 (H, W, 3)); labels: classes to evaluate (indices or
        names; default the top-1), joined by the ground-truth classes when boxes are given."""
        explainer = self.explainer
        network_input, crop = explainer.fit(photo)
        result = PhotoResult(path, stem, crop=crop)
        # The predicted classes need the forward pass only; each class's maps come below.
        net_input = explainer.network_inputs(network_input[None])[0]
        probabilities = explainer.forward(net_input[None])[1]
        if probabilities is not None:
            result.top5 = top_classes(probabilities[0], 5, explainer.labels.name)
        predicted = [c.index for c in result.top5]
        if explainer.task == SEGMENTATION:  # by default, as inference.py: the largest area
            predicted = predicted if labels else explainer.largest_classes(
                network_input[None], self.background)
        classes = [explainer.labels.resolve(label) for label in labels or []] or (
            predicted[:1] or [0])  # regression: its one output
        truth = self._ground_truth(stem, result)
        if truth is not None:
            classes += [c for c in {**truth[0], **truth[1]} if c not in classes]
        # Metrics on boxes also see the Grad-CAM of each predicted class (localisation error).
        box_classes = ([c for c in predicted if c not in classes] if truth is not None and any(
            metric.needs_boxes for metric in self.metrics) else [])
        explanations = self._explain(network_input, classes + box_classes)
        counterfactuals = (self._explain(network_input, classes, counterfactual=True)
                           if self.counterfactual else [None] * len(classes))
        result.explanations = explanations[:len(classes)]
        for explanation in result.explanations:
            probability = (None if explanation.probabilities is None
                           else float(explanation.probabilities[explanation.label]))
            result.classes.append(ClassResult(explanation.label, explanation.class_name,
                                              probability))
        if any(metric.counterfactual for metric in self.metrics):  # they rank the pixels
            self._note_zero_maps(result, counterfactuals)
        regions = None
        if explainer.task == SEGMENTATION:  # occluded, deleted inputs: scored over the region
            if truth is None:  # no VOC file: each explained class's region is its ground truth
                truth = region_truth(explanations, crop, explainer.input_size)
                predicted = [e.label for e in explanations]  # localised over the region's box
                regions = {e.label: e.region for e in explanations}
            explainer = ScoredOverRegions(explainer, explanations)
        measured = Photo(explainer, self.settings, net_input, network_input, classes,
                         [maps_of(e, cf) for e, cf in zip(explanations, counterfactuals)],
                         result, truth, predicted, {e.label: e.cam for e in explanations},
                         regions)
        for metric in self.metrics:
            metric.measure(measured, self._states.get(metric.name))
        return result

    def _note_zero_maps(self, result, counterfactuals):
        """A note for each all-zero Grad-CAM map (as inference.py gives): it ranks no pixels,
        so its numbers and its guided version's are NaN, `-` in the summary."""
        for explanation, counterfactual in zip(result.explanations, counterfactuals):
            subject = ("y" if explanation.task == REGRESSION
                       else self.explainer.labels.describe(explanation.label))
            for mode, meaning, e in (("", "no positive evidence for", explanation),
                                     ("counterfactual ", "nothing speaks against",
                                      counterfactual)):
                if e is not None and not e.cam_lowres.any():
                    result.notes.append(
                        "%s: the %sGrad-CAM map of %s is all zero: %s it at layer %s; its "
                        "numbers and its guided map's are NaN (- in the summary)" % (
                            result.path, mode, subject, meaning, self.explainer.layer))

    def ground_truth_classes(self, stem):
        """The classes of the photo's boxes (none without, or for a box file that fails: the
        photo's evaluation says why), known before the model runs: a shard's count."""
        if self.boxes is None:
            return set()
        try:
            annotation = self.boxes.annotation(stem)
            if annotation is None:
                return set()
            truth, difficult = gt_boxes.ground_truth(annotation, self.explainer.labels)
        except GuidedGradCamError:
            return set()
        return set(truth) | set(difficult)

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
        if self.boxes is None:
            return None
        annotation = self.boxes.annotation(stem)
        if annotation is None:
            return None
        result.box_file = annotation.path
        result.notes.extend(annotation.notes)
        return gt_boxes.ground_truth(annotation, self.explainer.labels)
