"""Segmentation targets in numpy: from one forward pass's per-pixel probabilities, the class c
each image explains and its region R at the model's output resolution (the explainer then
feeds R, and y^c = Σ_R z^c, see `core.region_head`).

c is the label asked for, else the class with the largest predicted area (a background class
left out; a binary model's foreground). R is the user's region (a mask at the network input,
resized to the output), else the pixels predicted as c. An empty region costs its image only:
`EmptyRegionError` names the images, the others can be explained again without them.
"""
import dataclasses

import numpy as np

from guided_gradcam.core.tasks import BINARY, MULTILABEL
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.regions import box_mask, resize_mask


class EmptyRegionError(GuidedGradCamError):
    """Some images have no pixel to explain; `problems` is {image index: message}."""

    def __init__(self, problems):
        self.problems = dict(problems)
        super().__init__("; ".join("image %d: %s" % item for item in sorted(self.problems.items())))


@dataclasses.dataclass
class RegionTargets:
    labels: np.ndarray  # int32 [B]: the explained column per image
    regions: np.ndarray  # float32 [B, H', W']: R at the output's resolution, fed to the graph
    input_regions: np.ndarray  # bool [B, H, W]: R at the network input's size
    predictions: np.ndarray  # int32 [B, H', W']: the predicted class per pixel
    probabilities: np.ndarray  # float32 [B, K]: each class's mean probability over R
    areas: np.ndarray  # float32 [B]: the fraction of the output's pixels in R


def predicted_classes(pixel_probabilities):
    """[B, H', W', K] → int32 [B, H', W']: the most probable class per pixel (binary: the
    foreground where p > 0.5)."""
    return np.argmax(pixel_probabilities, axis=-1).astype(np.int32)


def predicted_mask(pixel_probabilities, predictions, pixel_task, column):
    """The pixels predicted as `column`: its argmax, or for multi-label heads p > 0.5."""
    if pixel_task == MULTILABEL:
        return pixel_probabilities[..., column] > 0.5
    return predictions == column


def largest_class(pixel_probabilities, predictions, pixel_task, background=None):
    """The class with the largest predicted area, leaving `background` out; None when no other
    class has a pixel. A binary model's is its foreground."""
    if pixel_task == BINARY:
        return 1
    areas = np.array([predicted_mask(pixel_probabilities, predictions, pixel_task, c).sum()
                      for c in range(pixel_probabilities.shape[-1])])
    if background is not None:
        areas[background] = 0
    return int(np.argmax(areas)) if areas.max() > 0 else None


def input_masks(count, input_size, region=None, mask=None):
    """[bool (H, W) mask or None] per image of `region` (a box (x0, y0, x1, y1) in input pixels,
    or one per image) or `mask` (an (H, W) array, or one per image)."""
    if region is not None and mask is not None:
        raise GuidedGradCamError("pass a region or a mask, not both")
    if region is None and mask is None:
        return [None] * count
    if region is not None:  # one box (four numbers) for all, or one per image
        per_image = not (len(region) == 4 and all(np.isscalar(value) for value in region))
        items = list(region) if per_image else [region] * count
    else:  # one array for all, or a list of one per image
        items = list(mask) if isinstance(mask, (list, tuple)) else [mask] * count
    if len(items) != count:
        raise GuidedGradCamError("%d regions or masks for %d images" % (len(items), count))
    if region is not None:
        return [None if box is None else box_mask(box, *input_size) for box in items]
    masks = []
    for item in items:
        if item is not None and np.shape(item)[:2] != tuple(input_size):
            raise GuidedGradCamError("a mask must be (%d, %d), the network input's size; got %s "
                                     "(explain_photos maps photo-sized masks)"
                                     % (tuple(input_size) + (np.shape(item),)))
        mask = None if item is None else np.asarray(item) != 0
        masks.append(mask.any(axis=-1) if mask is not None and mask.ndim == 3 else mask)
    return masks


def choose_targets(pixel_probabilities, pixel_task, labels, masks, input_size, background=None,
                   name_of=str):
    """RegionTargets of a batch. pixel_probabilities: [B, H', W', K]; labels: the column asked
    for per image, negative for the largest class; masks: [bool (H, W) or None] per image."""
    predictions = predicted_classes(pixel_probabilities)
    out_height, out_width = predictions.shape[1:]
    chosen, regions, input_regions, problems = [], [], [], {}
    for b, (label, mask) in enumerate(zip(labels, masks)):
        column = int(label) if label >= 0 else largest_class(
            pixel_probabilities[b], predictions[b], pixel_task, background)
        region = np.zeros((out_height, out_width), bool)
        if column is None:
            problems[b] = "no pixel is predicted as any class but the background"
            column = 0
        elif mask is not None:
            region = resize_mask(mask, out_height, out_width)
            if not region.any():
                problems[b] = ("the region covers no pixel of the model's %dx%d output"
                               % (out_width, out_height))
        else:
            region = predicted_mask(pixel_probabilities[b], predictions[b], pixel_task, column)
            if not region.any():
                problems[b] = "no pixel is predicted as %s: the region is empty" % name_of(column)
        chosen.append(column)
        regions.append(region)
        input_regions.append(mask if mask is not None else resize_mask(region, *input_size))
    if problems:
        raise EmptyRegionError(problems)
    regions = np.array(regions, np.float32)
    area = regions.sum(axis=(1, 2))
    return RegionTargets(
        labels=np.array(chosen, np.int32), regions=regions, input_regions=np.array(input_regions),
        predictions=predictions,
        probabilities=region_mean(pixel_probabilities, regions),
        areas=(area / (out_height * out_width)).astype(np.float32))


def region_scores(pixel_scores, pixel_task, regions):
    """[B, K] y = Σ_R of the explained per-pixel scores (binary: [−z, z]) of [B, H', W', C]."""
    if pixel_task == BINARY:
        pixel_scores = np.concatenate([-pixel_scores, pixel_scores], axis=-1)
    return np.einsum("bhw,bhwk->bk", regions, pixel_scores).astype(np.float32)


def flipped_regions(regions, flip):
    """The regions of a horizontally flipped input (--aug_smooth)."""
    return regions[:, :, ::-1] if flip else regions


def region_mean(pixel_probabilities, regions=None):
    """[B, K] each class's mean probability over each region [B, H', W'] (None: everywhere)."""
    if regions is None:
        return pixel_probabilities.mean(axis=(1, 2))
    area = np.maximum(regions.sum(axis=(1, 2)), 1e-12)[:, None]
    return (np.einsum("bhw,bhwk->bk", regions, pixel_probabilities) / area).astype(np.float32)


def explanation_fields(targets, b):
    """The segmentation fields of image b's `Explanation` ({} without RegionTargets)."""
    if targets is None:
        return {}
    return dict(region=targets.input_regions[b], prediction=targets.predictions[b],
                region_area=float(targets.areas[b]), output_region=targets.regions[b])


def scores_over_class_regions(pixel_scores, pixel_probabilities, pixel_task, class_regions=None):
    """(y [N, K], mean probabilities [N, K]) of N inputs: column c over class c's region
    `class_regions[c]` (H', W'), the whole output for a class without one."""
    whole = np.ones(pixel_scores.shape[1:3], np.float32)
    regions = np.array([(class_regions or {}).get(c, whole)
                        for c in range(pixel_probabilities.shape[-1])], np.float32)
    if pixel_task == BINARY:
        pixel_scores = np.concatenate([-pixel_scores, pixel_scores], axis=-1)
    area = regions.sum(axis=(1, 2))
    return (np.einsum("khw,nhwk->nk", regions, pixel_scores).astype(np.float32),
            (np.einsum("khw,nhwk->nk", regions, pixel_probabilities) / area).astype(np.float32))


class ScoredOverRegions:
    """An explainer whose forward passes score each class over the region it was explained
    on, and whose explanations keep those regions (the evaluation's occluded, deleted and
    randomised runs): `explanations`' output regions by class; everything else delegated."""

    def __init__(self, explainer, explanations):
        self._explainer = explainer
        self.class_regions = {e.label: e.output_region for e in explanations}
        self._input_regions = {e.label: e.region for e in explanations}

    def forward(self, net_inputs, feeds=None):
        return self._explainer.forward(net_inputs, feeds, class_regions=self.class_regions)

    def explain(self, images, labels=None, *args, **kwargs):
        if not isinstance(labels, (list, tuple, np.ndarray)):
            labels = [labels] * len(images)
        kwargs.setdefault("mask", [self._input_regions.get(label) for label in labels])
        return self._explainer.explain(images, labels, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._explainer, name)
