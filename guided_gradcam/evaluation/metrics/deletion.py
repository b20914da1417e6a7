"""Deletion and insertion (Petsiuk et al., RISE, BMVC 2018): the class's score as the pixels
are deleted from the most to the least salient (lower area is better), and as they are put
back onto the insertion baseline in the same order (higher is better). Every curve point of
all maps, both modes and all classes of a photo fills batches of exactly `batch_size`."""
import numpy as np

from guided_gradcam.core.tasks import REGRESSION
from guided_gradcam.evaluation.metric import Column, Metric

CURVE_MODES = ("deletion", "insertion")


def scores_of(explainer, inputs, feeds=None):
    """The score the curves follow: probabilities (softmax; sigmoid for binary and multi-label
    models), y itself for regression."""
    y, probabilities = explainer.forward(inputs, feeds)
    return y if probabilities is None else probabilities


def curve_scores(explainer, net_input, curves, step, batch_size, baselines=None):
    """Deletion / insertion: curves = [(pixel order, mode, class index)] → scores (len(curves),
    points). The points of all curves, one after another, fill runs of exactly batch_size.
    baselines: {mode: image} (`deletion_insertion.baseline`), by default 0 for deletion and
    the blur for insertion (`deletion_insertion.curve_inputs`)."""
    from guided_gradcam.evaluation import deletion_insertion

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
        scores[start:stop] = scores_of(explainer, batch)[np.arange(stop - start),
                                                         classes[start:stop]]
    return scores.reshape(len(curves), num_points)


def measure(photo, state=None):
    from guided_gradcam.evaluation import deletion_insertion
    from guided_gradcam.evaluation.similarity import absolute

    s, result, net_input = photo.settings, photo.result, photo.net_input
    curves, keys = [], []
    for class_result, class_maps in zip(result.classes, photo.maps):
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
                                                   photo.explainer.source.preprocessing)
                 for mode, name in s.baselines.items()}
    result.baselines = dict(s.baselines)
    _check_baselines(photo, baselines)
    scores = curve_scores(photo.explainer, net_input, curves, s.step, s.batch_size, baselines)
    result.fractions = deletion_insertion.step_fractions(
        net_input.shape[0] * net_input.shape[1], s.step)
    for (class_result, name, mode), points in zip(keys, scores):
        class_result.curves[name, mode] = points
        getattr(class_result, mode)[name] = deletion_insertion.auc(points, result.fractions)


def _check_baselines(photo, baselines):
    """Each class's score of the photo and of each baseline alone; a warning where a baseline
    alone already scores the class above the photo: deletion then ends above where it starts,
    insertion starts above where it ends, whatever the map."""
    explainer, result = photo.explainer, photo.result
    scores = scores_of(explainer, np.stack([photo.net_input] + [baselines[mode]
                                                                for mode in CURVE_MODES]))
    for class_result in result.classes:
        score_of_photo, *alone = scores[:, class_result.class_index]
        class_result.baseline_scores = dict(zip(CURVE_MODES, map(float, alone)),
                                            photo=float(score_of_photo))
        for mode, score in zip(CURVE_MODES, alone):
            if score > score_of_photo:
                result.warnings.append(
                    "%s: the %s %s baseline alone scores %s %.3g, above the photo's %.3g: "
                    "%s AUC says more of the baseline than of the maps (--baseline %s=NAME)"
                    % (result.path, result.baselines[mode], mode,
                       explainer.labels.describe(class_result.class_index)
                       if explainer.task != REGRESSION else "y", score, score_of_photo,
                       mode, mode))


def cost(settings, height, width, maps):
    """Forward passes per class: both curves of every map, and the two baselines alone."""
    points = -(-height * width // settings.step) + 1
    return 2 * points * maps + 2


def describe(settings):
    from guided_gradcam.evaluation.deletion_insertion import describe_baseline

    return [("deletion", "to " + describe_baseline(settings.deletion_baseline)),
            ("insertion", "from " + describe_baseline(settings.insertion_baseline)),
            ("step", "%d pixels" % settings.step)]


METRIC = Metric(
    name="deletion", description="deletion and insertion AUC", rank=1, measure=measure,
    cost=cost, columns=(Column("deletion", "deletion ↓", "del", "↓"),
                        Column("insertion", "insertion ↑", "ins", "↑")),
    photo_columns=("baseline_deletion", "baseline_insertion"),
    photo_values=lambda result: {"baseline_" + mode: name
                                 for mode, name in result.baselines.items()},
    counterfactual=True, describe=describe)
