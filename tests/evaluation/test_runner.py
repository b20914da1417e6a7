"""The evaluation on the real MobileNet V1 0.75, each number against an independent computation:
forward passes one by one on inputs built here with numpy, the uint8 path of explain(), boxes
read here from the XML with ElementTree, and the sanity checks' published finding."""
import dataclasses
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from scipy import ndimage, stats

from guided_gradcam.evaluation.metrics.deletion import curve_scores
from guided_gradcam.evaluation.metrics.faithfulness import occlusion_deltas
from guided_gradcam.evaluation.runner import Evaluator, Settings
from guided_gradcam.images import load_photo
from guided_gradcam.evaluation.localization import box_to_photo, gradcam_box

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
        # Batches of 3 against batches of 1: logits of ~±20 in float32 round differently
        # (measured 1.1e-5 with oneDNN, 7.6e-6 with TF's plain kernels): 17x margin.
        np.testing.assert_allclose(deltas[n], original[[TIGER_CAT, BULL_MASTIFF]]
                                   - y[[TIGER_CAT, BULL_MASTIFF]], rtol=0, atol=2e-4)


def test_curve_points_equal_inputs_built_by_hand_whatever_the_batch(explainer, cat_dog):
    _, network_input, _, net_input = cat_dog
    explanation, = explainer.explain(network_input[None], TIGER_CAT)
    saliency = explanation.cam
    order = np.argsort(-saliency.reshape(-1), kind="stable")
    step = 224 * 40  # 6 points, the last one partial
    curves = [(order, "deletion", TIGER_CAT), (order, "insertion", TIGER_CAT)]
    scores = curve_scores(explainer, net_input, curves, step, batch_size=4)
    # Batches of 16 against batches of 4: oneDNN blocks the convolutions by batch, so
    # probabilities near 0.5 round differently (measured up to 1.1e-6; 1e-6 once failed): 9x.
    np.testing.assert_allclose(curve_scores(explainer, net_input, curves, step, batch_size=16),
                               scores, rtol=0, atol=1e-5)
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


DIGITAL_CLOCK = 530  # MobileNet's top-1 for a black image (p 0.05); about 1e-8 for cat_dog


@pytest.fixture(scope="module")
def black_and_mean(explainer, cat_dog):
    """cat_dog's tiger cat and digital clock, deleted to black, inserted from its mean colour."""
    settings = Settings(metrics=("deletion",), deletion_baseline="black",
                        insertion_baseline="mean", **CHEAP)
    return Evaluator(explainer, settings).evaluate(cat_dog[0], "cat_dog.jpg", "cat_dog",
                                                   labels=[TIGER_CAT, DIGITAL_CLOCK])


def test_the_curves_end_and_start_on_the_baselines_built_by_hand(explainer, cat_dog,
                                                                 black_and_mean):
    """Deletion ends on the baseline and insertion starts from it: black is the pixels 0, the
    mean colour each channel's mean of the photo's pixels, both through inception's
    x / 127.5 - 1 here; one forward pass of each gives the curves' end points."""
    _, network_input, _, net_input = cat_dog
    black = np.full(net_input.shape, -1.0, np.float32)
    mean = np.broadcast_to(network_input.reshape(-1, 3).astype(np.float64).mean(0) / 127.5 - 1,
                           net_input.shape).astype(np.float32)
    photo_p, black_p, mean_p = explainer.forward(np.stack([net_input, black, mean]))[1]
    result = black_and_mean
    assert result.baselines == {"deletion": "black", "insertion": "mean"}
    assert [c.class_index for c in result.classes] == [TIGER_CAT, DIGITAL_CLOCK]
    for c in result.classes:
        k = c.class_index
        assert c.curves, k
        for (name, mode), points in c.curves.items():
            start, end = (photo_p, black_p) if mode == "deletion" else (mean_p, photo_p)
            # Other batch compositions: as in test_curve_points_equal_inputs_built_by_hand.
            assert points[0] == pytest.approx(start[k], abs=1e-5), (k, name, mode)
            assert points[-1] == pytest.approx(end[k], abs=1e-5), (k, name, mode)
        assert c.baseline_scores == pytest.approx(
            {"photo": photo_p[k], "deletion": black_p[k], "insertion": mean_p[k]}, abs=1e-5)


def test_a_baseline_the_model_scores_above_the_photo_is_warned_of(explainer, cat_dog,
                                                                  black_and_mean):
    """A warning for each class and curve whose baseline alone scores the class above the
    photo, from forward passes of the same batch as the check's (the printed digits match)."""
    _, _, _, net_input = cat_dog
    black = np.full(net_input.shape, -1.0, np.float32)
    mean = np.broadcast_to(net_input.astype(np.float64).mean(axis=(0, 1)),
                           net_input.shape).astype(np.float32)
    photo_p, black_p, mean_p = explainer.forward(np.stack([net_input, black, mean]))[1]
    expected = []
    for k, name in ((TIGER_CAT, "tiger cat"), (DIGITAL_CLOCK, "digital clock")):
        for mode, baseline, alone in (("deletion", "black", black_p), ("insertion", "mean",
                                                                         mean_p)):
            if alone[k] > photo_p[k]:
                expected.append(
                    "cat_dog.jpg: the %s %s baseline alone scores %s (%d) %.3g, above the "
                    "photo's %.3g: %s AUC says more of the baseline than of the maps "
                    "(--baseline %s=NAME)" % (baseline, mode, name, k, alone[k], photo_p[k],
                                              mode, mode))
    assert any("black deletion baseline alone scores digital clock" in w for w in expected)
    assert not any("tiger cat" in w for w in expected)  # the photo's own class: no warning
    assert black_and_mean.warnings == expected


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


def test_an_all_zero_map_is_noted_once_per_class_with_what_it_means(explainer, cat_dog,
                                                                    evaluated):
    """As inference.py notes it: an all-zero counterfactual Grad-CAM map means nothing speaks
    against the class (its numbers NaN); which maps are all zero is found here by explaining."""
    network_input = cat_dog[1]
    expected = []
    for c, name in ((TIGER_CAT, "tiger cat"), (BULL_MASTIFF, "bull mastiff")):
        for mode, meaning, counterfactual in (("", "no positive evidence for", False),
                                              ("counterfactual ", "nothing speaks against",
                                               True)):
            explanation, = explainer.explain(network_input[None], c,
                                             counterfactual=counterfactual)
            if not explanation.cam_lowres.any():
                expected.append(
                    "cat_dog.jpg: the %sGrad-CAM map of %s (%d) is all zero: %s it at layer "
                    "Conv2d_13_pointwise; its numbers and its guided map's are NaN (- in the "
                    "summary)" % (mode, name, c, meaning))
                assert np.isnan(evaluated.classes[[TIGER_CAT, BULL_MASTIFF].index(c)].deletion[
                    "counterfactual" if counterfactual else "gradcam"])
    assert len(expected) == 1 and "counterfactual Grad-CAM map of tiger cat" in expected[0]
    assert [note for note in evaluated.notes if "all zero" in note] == expected


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


def _distance(point, box):
    x, y = point
    return np.hypot(max(box[0] - x, 0, x - box[2]), max(box[1] - y, 0, y - box[3]))


@pytest.fixture(scope="module")
def boxes_near_the_peaks(explainer, cat_dog, tmp_path_factory):
    """(boxes folder, {class: (Grad-CAM peak in photo pixels, box)}): a 20x20 box 8 px from
    the tiger cat's peak and one 40 px from the bull mastiff's, so that a tolerance of 0 and
    one of 60 px both score differently from the default 15."""
    photo, network_input, crop, _ = cat_dog
    height, width = photo.shape[:2]
    scale = (crop[2] - crop[0]) / 224
    placed, objects = {}, []
    for c, wnid, gap in ((TIGER_CAT, "n02123159", 8), (BULL_MASTIFF, "n02108422", 40)):
        explanation, = explainer.explain(network_input[None], c)
        row, col = np.unravel_index(np.argmax(explanation.cam), (224, 224))
        x, y = crop[0] + (col + 0.5) * scale, crop[1] + (row + 0.5) * scale
        top = min(max(int(y) - 10, 0), height - 20)
        left = int(np.ceil(x + gap)) if x + gap + 20 <= width else int(np.floor(x - gap)) - 20
        box = (left, top, left + 20, top + 20)
        placed[c] = ((x, y), box)
        objects.append("<object><name>%s</name><bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d"
                       "</xmax><ymax>%d</ymax></bndbox></object>" % ((wnid, box[0] + 1, box[1] + 1)
                                                                     + box[2:]))
    folder = tmp_path_factory.mktemp("near_boxes")
    (folder / "cat_dog.xml").write_text("<annotation>%s</annotation>" % "".join(objects))
    return folder, placed


@pytest.mark.parametrize("tolerance", [0, 60])
def test_pointing_uses_the_settings_tolerance(explainer, cat_dog, boxes_near_the_peaks,
                                              tolerance):
    folder, placed = boxes_near_the_peaks
    distances = {c: _distance(point, box) for c, (point, box) in placed.items()}
    assert 0 < distances[TIGER_CAT] <= 15 < distances[BULL_MASTIFF] <= 60, distances
    result = Evaluator(explainer, Settings(metrics=("localisation",), tolerance=tolerance),
                       str(folder)).evaluate(cat_dog[0], "cat_dog.jpg", "cat_dog")
    pointing = {c.class_index: c.pointing["gradcam"] for c in result.classes}
    assert pointing == {c: bool(d <= tolerance) for c, d in distances.items()}, distances


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


ONE_CLASS = dict(metrics=("faithfulness", "deletion", "sanity"), **CHEAP)


@pytest.fixture(scope="module")
def bull_mastiff_alone(explainer, cat_dog):
    """The bull mastiff evaluated on its own: a batch of one image where `evaluated` has two."""
    return Evaluator(explainer, Settings(**ONE_CLASS)).evaluate(cat_dog[0], labels=[BULL_MASTIFF])


def _numbers(class_result):
    return ([getattr(class_result, metric)[name] for metric in ("faithfulness", "deletion",
                                                                  "insertion")
             for name in sorted(class_result.faithfulness)],
            [dataclasses.astuple(s)[4:] for s in class_result.sanity])


def test_evaluating_twice_gives_the_same_numbers(explainer, cat_dog, bull_mastiff_alone):
    """The same evaluation, batch for batch, in a new evaluator: the sanity checks' random
    weights are seeded, and every kernel sees the same shapes, so the numbers are the same."""
    again = Evaluator(explainer, Settings(**ONE_CLASS)).evaluate(cat_dog[0], labels=[BULL_MASTIFF])
    first, second = _numbers(bull_mastiff_alone.classes[0]), _numbers(again.classes[0])
    # Measured: 0 in both regimes .ci/run runs; 1e-9 allows float64 summing in numpy's
    # statistics, not a kernel's other order (that moves these numbers by 1e-8 and more).
    np.testing.assert_allclose(second[0], first[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(second[1], first[1], rtol=0, atol=1e-9)


# Another batch composition sums in another order: the two-image batch of `evaluated` and the
# one-image batch of `bull_mastiff_alone` differ by float rounding. Largest differences measured
# on 2-core x86 machines of CI's kind, with oneDNN (TF's plain kernels on one thread: 0):
# faithfulness, deletion and insertion 2.4e-7, the sanity rows 3.8e-5 (HOG). The bounds below
# keep margins of 40x and 26x.
ACROSS_BATCHES = {"curves": 1e-5, "sanity": 1e-3}


def test_a_class_measures_the_same_whatever_it_is_batched_with(evaluated, bull_mastiff_alone):
    """`evaluated` measured the tiger cat and the bull mastiff side by side; alone, the bull
    mastiff's numbers are the same up to float rounding: nothing leaks between classes."""
    together = evaluated.classes[1]
    assert together.class_index == BULL_MASTIFF
    alone = bull_mastiff_alone.classes[0]
    for metric in ("faithfulness", "deletion", "insertion"):
        assert set(getattr(alone, metric)) == set(getattr(together, metric))
    assert [s[:4] for s in map(dataclasses.astuple, alone.sanity)] == [
        s[:4] for s in map(dataclasses.astuple, together.sanity)]
    (scalars_alone, sanity_alone), (scalars_together, sanity_together) = (
        _numbers(alone), _numbers(together))
    np.testing.assert_allclose(scalars_alone, scalars_together, rtol=0,
                               atol=ACROSS_BATCHES["curves"])
    np.testing.assert_allclose(sanity_alone, sanity_together, rtol=0,
                               atol=ACROSS_BATCHES["sanity"], equal_nan=True)


def test_another_seed_draws_other_weights(explainer, cat_dog, bull_mastiff_alone):
    reseeded = Evaluator(explainer, Settings(metrics=("sanity",), seed=1,
                                             randomisation=("cascading",), **CHEAP)).evaluate(
        cat_dog[0], labels=[BULL_MASTIFF])
    assert {s.mode for s in reseeded.classes[0].sanity} == {"cascading"}
    # Seed 1 draws other weights: the rows differ by far more than any float rounding.
    cascading = [dataclasses.astuple(s)[4:] for s in bull_mastiff_alone.classes[0].sanity
                 if s.mode == "cascading"]
    redrawn = [dataclasses.astuple(s)[4:] for s in reseeded.classes[0].sanity]
    assert not np.allclose(redrawn, cascading, atol=1e-2, equal_nan=True)
