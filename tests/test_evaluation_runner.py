"""The evaluation on the real MobileNet V1 0.75, each number against an independent computation:
forward passes one by one on inputs built here with numpy, the uint8 path of explain(), boxes
read here from the XML with ElementTree, and the sanity checks' published finding."""
import dataclasses
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from scipy import ndimage, stats

from guided_gradcam.evaluation.runner import Evaluator, Settings, curve_scores, occlusion_deltas
from guided_gradcam.images import load_photo
from guided_gradcam.localization import box_to_photo, gradcam_box

from conftest import REPO

BOXES = REPO / "images" / "boxes"
CHEAP = dict(patch=56, stride=28, step=224 * 56, batch_size=16)
TIGER_CAT, BULL_MASTIFF = 282, 243


@pytest.fixture(scope="module")
def cat_dog(explainer, cat_dog_path):
    photo = load_photo(cat_dog_path, explainer.input_size)
    network_input, crop = explainer.fit(photo)
    return photo, network_input, crop, explainer.network_inputs(network_input[None])[0]


@pytest.fixture(scope="module")
def evaluated(explainer, cat_dog):
    """cat_dog with its hand-drawn boxes, every metric, cheap occlusion and curves."""
    return Evaluator(explainer, Settings(**CHEAP), str(BOXES)).evaluate(
        cat_dog[0], "cat_dog.jpg", "cat_dog")


def test_forward_of_the_preprocessed_input_equals_explain(explainer, cat_dog):
    _, network_input, _, net_input = cat_dog
    explanation, = explainer.explain(network_input[None])
    y, probabilities = explainer.forward(net_input[None])
    np.testing.assert_allclose(y[0], explanation.logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(probabilities[0], explanation.probabilities, rtol=0, atol=1e-6)
    assert net_input.min() >= -1 and net_input.max() <= 1  # inception: 0 is grey, 127.5


def test_occlusion_deltas_equal_one_occluded_copy_at_a_time(explainer, cat_dog):
    net_input = cat_dog[3]
    deltas, positions = occlusion_deltas(explainer, net_input, [TIGER_CAT, BULL_MASTIFF],
                                         patch=56, stride=56, batch_size=3)  # 16 in 6 runs
    assert positions.tolist() == [[top, left] for top in range(0, 224, 56)
                                  for left in range(0, 224, 56)]
    original = explainer.forward(net_input[None])[0][0]
    for n, (top, left) in enumerate(positions):
        copy = net_input.copy()
        copy[top:top + 56, left:left + 56, :] = 0.0
        y = explainer.forward(copy[None])[0][0]
        np.testing.assert_allclose(deltas[n], original[[TIGER_CAT, BULL_MASTIFF]]
                                   - y[[TIGER_CAT, BULL_MASTIFF]], rtol=0, atol=2e-5)


def test_curve_points_equal_inputs_built_by_hand_whatever_the_batch(explainer, cat_dog):
    _, network_input, _, net_input = cat_dog
    explanation, = explainer.explain(network_input[None], TIGER_CAT)
    saliency = explanation.cam
    order = np.argsort(-saliency.reshape(-1), kind="stable")
    step = 224 * 40  # 6 points, the last one partial
    curves = [(order, "deletion", TIGER_CAT), (order, "insertion", TIGER_CAT)]
    scores = curve_scores(explainer, net_input, curves, step, batch_size=4)
    np.testing.assert_allclose(curve_scores(explainer, net_input, curves, step, batch_size=16),
                               scores, rtol=0, atol=1e-6)
    # By hand: the top k*step pixels zeroed (deletion), or restored onto the blur (insertion).
    taps = np.exp(-0.5 * (np.arange(-5, 6) / 5.0) ** 2)
    taps /= taps.sum()
    blur = net_input.astype(np.float64)
    for axis in (0, 1):
        blur = ndimage.convolve1d(blur, taps, axis=axis, mode="mirror")
    for k in range(7):
        top = np.zeros(224 * 224, bool)
        top[order[:min(k * step, 224 * 224)]] = True
        top = top.reshape(224, 224, 1)
        deleted = np.where(top, 0.0, net_input)
        inserted = np.where(top, net_input, blur).astype(np.float32)
        p = explainer.forward(np.stack([deleted, inserted]).astype(np.float32))[1][:, TIGER_CAT]
        np.testing.assert_allclose(scores[:, k], p, rtol=0, atol=1e-5)
    assert scores[0, 0] == pytest.approx(explanation.probabilities[TIGER_CAT], abs=1e-5)
    assert scores[1, -1] == pytest.approx(explanation.probabilities[TIGER_CAT], abs=1e-5)


def test_ground_truth_classes_are_evaluated_besides_the_top1(evaluated):
    assert [c.class_index for c in evaluated.classes] == [TIGER_CAT, BULL_MASTIFF]
    for c in evaluated.classes:
        assert set(c.faithfulness) == {"gradcam", "gbp", "guided_gradcam", "counterfactual",
                                       "guided_counterfactual"}
        assert all(-1 <= c.faithfulness[name] <= 1
                   for name in ("gradcam", "gbp", "guided_gradcam"))
        # An all-zero map (the tiger cat's counterfactual Grad-CAM) has no ranking: NaN.
        assert all(-1 <= v <= 1 or np.isnan(v) for v in c.faithfulness.values())
        for name, rho in c.faithfulness.items():  # a constant map orders no pixels: NaN too
            for auc in (c.deletion[name], c.insertion[name]):
                assert (0 <= auc <= 1) if not np.isnan(rho) else np.isnan(auc), (name, auc)


def test_faithfulness_is_the_rank_correlation_with_the_occlusion_map(explainer, cat_dog,
                                                                     evaluated):
    """Recomputed here: the per-pixel mean Δ of the 7x7 patches covering it, ρ by SciPy; the
    counterfactual map against −Δ; GBP as max_c |g_c|."""
    _, network_input, _, net_input = cat_dog
    original = explainer.forward(net_input[None])[0][0, BULL_MASTIFF]
    sums, counts = np.zeros((224, 224)), np.zeros((224, 224))
    for top in range(0, 169, 28):
        for left in range(0, 169, 28):
            copy = net_input.copy()
            copy[top:top + 56, left:left + 56] = 0
            sums[top:top + 56, left:left + 56] += original - explainer.forward(
                copy[None])[0][0, BULL_MASTIFF]
            counts[top:top + 56, left:left + 56] += 1
    occlusion = sums / counts
    factual, = explainer.explain(network_input[None], BULL_MASTIFF)
    counterfactual, = explainer.explain(network_input[None], BULL_MASTIFF, counterfactual=True)
    expected = {
        "gradcam": stats.spearmanr(factual.cam.ravel(), occlusion.ravel()).statistic,
        "gbp": stats.spearmanr(np.abs(factual.gbp).max(2).ravel(), occlusion.ravel()).statistic,
        "counterfactual": stats.spearmanr(counterfactual.cam.ravel(),
                                          -occlusion.ravel()).statistic,
    }
    measured = evaluated.classes[1].faithfulness
    for name, value in expected.items():
        assert measured[name] == pytest.approx(value, abs=1e-3), name


def _xml_boxes(stem):
    """{name: [(left, top, right, bottom)]} read here: VOC's 1-based inclusive corners."""
    boxes = {}
    for obj in ElementTree.parse(BOXES / (stem + ".xml")).getroot().iter("object"):
        box = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (int(float(box.find(t).text))
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
        boxes.setdefault(obj.find("name").text, []).append((xmin - 1, ymin - 1, xmax, ymax))
    return boxes


def _iou(a, b):
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union


def test_localisation_and_pointing_equal_a_computation_by_hand(explainer, cat_dog, evaluated):
    _, network_input, crop, _ = cat_dog
    truth = {TIGER_CAT: _xml_boxes("cat_dog")["n02123159"],
             BULL_MASTIFF: _xml_boxes("cat_dog")["n02108422"]}
    top5 = [c.index for c in explainer.explain(network_input[None])[0].top_k(5)]
    explanations = explainer.explain(np.repeat(network_input[None], 5, 0), top5)
    hits = []
    for c, explanation in zip(top5, explanations):
        box = box_to_photo(gradcam_box(explanation.cam), crop, (224, 224))
        hits.append(any(_iou(box, gt) >= 0.5 for gt in truth.get(c, ())))
    assert evaluated.localisation == {"top1": hits[0], "top5": any(hits)}
    for c in evaluated.classes:
        explanation, = explainer.explain(network_input[None], c.class_index)
        row, col = np.unravel_index(np.argmax(explanation.cam), (224, 224))
        scale = (crop[2] - crop[0]) / 224
        x, y = crop[0] + (col + 0.5) * scale, crop[1] + (row + 0.5) * scale
        distance = min(np.hypot(max(b[0] - x, 0, x - b[2]), max(b[1] - y, 0, y - b[3]))
                       for b in truth[c.class_index])
        assert c.pointing["gradcam"] == (distance <= 15), c.class_name
        assert "counterfactual" not in c.pointing


def _sanity(class_result, mode, step, name):
    row, = [s for s in class_result.sanity if (s.mode, s.step, s.map) == (mode, step, name)]
    return row


def test_sanity_checks_show_the_published_finding(evaluated):
    """Adebayo et al. 2018: with the logits randomised, Guided Backprop barely changes while
    Grad-CAM does; with every block randomised, nothing of the maps' ranking is left."""
    for c in evaluated.classes:
        assert _sanity(c, "cascading", 1, "gbp").spearman_abs > 0.95
        assert _sanity(c, "cascading", 1, "gradcam").spearman_abs < 0.8
        assert abs(_sanity(c, "cascading", 28, "gradcam").spearman_abs) < 0.3
        blocks = [s.block for s in c.sanity if s.mode == "cascading" and s.map == "gbp"]
        assert blocks[0] == "MobilenetV1/Logits/Conv2d_1c_1x1"
        assert blocks[-1] == "MobilenetV1/Conv2d_0" and len(blocks) == 28


def test_evaluating_twice_gives_the_same_numbers(explainer, cat_dog, evaluated):
    """The sanity checks' random weights are seeded: a new evaluator (of one class, to keep
    the test short) draws the same ones; another seed draws others."""
    again = Evaluator(explainer, Settings(metrics=("faithfulness", "deletion", "sanity"),
                                          **CHEAP)).evaluate(cat_dog[0], labels=[BULL_MASTIFF])
    first, second = evaluated.classes[1], again.classes[0]
    # One image a run instead of two: TF's kernels sum in another order (1e-8 apart).
    for metric in ("faithfulness", "deletion", "insertion"):
        for name, value in getattr(first, metric).items():
            assert getattr(second, metric)[name] == pytest.approx(value, abs=1e-6)
    assert [s[:4] for s in map(dataclasses.astuple, second.sanity)] == [
        s[:4] for s in map(dataclasses.astuple, first.sanity)]
    np.testing.assert_allclose([dataclasses.astuple(s)[4:] for s in second.sanity],
                               [dataclasses.astuple(s)[4:] for s in first.sanity], atol=1e-5)
    reseeded = Evaluator(explainer, Settings(metrics=("sanity",), seed=1,
                                             randomisation=("cascading",), **CHEAP)).evaluate(
        cat_dog[0], labels=[BULL_MASTIFF])
    assert {s.mode for s in reseeded.classes[0].sanity} == {"cascading"}
    # Seed 1 draws other weights: the rows differ by more than the 1e-8 of batching.
    cascading = [dataclasses.astuple(s)[4:] for s in first.sanity if s.mode == "cascading"]
    redrawn = [dataclasses.astuple(s)[4:] for s in reseeded.classes[0].sanity]
    assert not np.allclose(redrawn, cascading, atol=1e-3, equal_nan=True)
