"""Segmentation models (issue 24): y^c = Σ_R z^c over a region R, on a tiny Keras 3
encoder-decoder trained here on synthetic scenes (a square and a disc of one colour on noise;
per-pixel labels 0 background, 1 square, 2 disc): shape, not colour, tells them apart.

Known answer: Grad-CAM for "square" over the predicted square peaks inside the square. Exact:
the target score and Grad-CAM against an eager GradientTape on Σ_R z^c, with R computed here
(the eager model's own prediction, the box's pixels, the mask), for the in-memory model, its
.keras file and its SavedModel. Bad input through the command line.
"""
import csv

import keras
import numpy as np
import pytest
import tensorflow as tf2
from PIL import Image

from conftest import run_cli
from guided_gradcam import GuidedGradCam
from guided_gradcam.core.tf_eager import eager
from guided_gradcam import EmptyRegionError
from helpers import SEGMENTATION_SIZE as SIZE
from helpers import scenes

SQUARE, DISC = 1, 2


@pytest.fixture(scope="module")
def trained(trained_segmentation):
    return trained_segmentation  # conftest.py: trained once for every segmentation test file


@pytest.fixture(scope="module", params=["in_memory", "keras_file", "saved_model"])
def explainer(request, trained):
    model, folder = trained
    source = {"in_memory": model, "keras_file": folder / "seg.keras",
              "saved_model": folder / "seg_savedmodel"}[request.param]
    with GuidedGradCam(source, labels_file=str(folder / "names.txt")) as explainer:
        yield explainer


def eager_reference(model, images, column, regions):
    """(y [B], Grad-CAM before upsampling [B, h, w]) of y = Σ_R z^c, z the classifier's
    scores before its softmax, A the decoder's output."""
    with eager():
        features = keras.Model(model.input, model.get_layer("decoder").output)
        kernel, bias = model.get_layer("classes").get_weights()
        with tf2.GradientTape() as tape:
            activations = features(images.astype(np.float32))
            tape.watch(activations)
            z = tf2.nn.conv2d(activations, kernel, 1, "VALID") + bias
            y = tf2.reduce_sum(regions * z[..., column], axis=[1, 2])
        grads = tape.gradient(y, activations)
        weights = tf2.reduce_mean(grads, axis=[1, 2], keepdims=True)
        cam = tf2.nn.relu(tf2.reduce_sum(weights * activations, axis=-1))
        return y.numpy(), cam.numpy()


def predicted(model, images):
    with eager():
        return np.argmax(model(images.astype(np.float32)).numpy(), axis=-1)


def test_a_segmentation_model_is_found_with_its_decoder_as_the_default_layer(explainer):
    assert (explainer.task, explainer.pixel_task) == ("segmentation", "classification")
    # The last spatial layer before the per-pixel classifier, not the classifier itself.
    assert explainer.layer.split("/")[-1] == "decoder", explainer.layer


def test_gradcam_of_square_over_the_predicted_square_peaks_inside_it(trained):
    model, folder = trained
    images, labels = scenes(1, 50)
    accuracy = (predicted(model, images) == labels).mean()
    assert accuracy > 0.97, accuracy  # measured 0.995
    with GuidedGradCam(model, labels_file=str(folder / "names.txt")) as explainer:
        explanations = explainer.explain(images, labels="square")
    hits = 0
    for explanation, truth in zip(explanations, labels):
        assert explanation.label == SQUARE
        row, col = np.unravel_index(np.argmax(explanation.cam), explanation.cam.shape)
        hits += truth[row, col] == SQUARE
    assert hits >= 0.9 * len(images), hits  # measured 50 of 50


# Measured on the three sources, with oneDNN and with plain kernels on one thread (make
# test-other-kernels): Grad-CAM identical (0 difference), y within 1.6e-7 of its largest value
# (float32 sums of up to 1024 pixels in another order); the allowance is 1e-4.
def _assert_close(actual, expected, fraction=1e-4):
    peak = np.abs(expected).max()
    assert peak > 0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=fraction * peak)


@pytest.mark.parametrize("how", ["default", "box", "mask"])
def test_scores_and_gradcam_equal_an_eager_reference_over_the_region(explainer, trained, how):
    model, _ = trained
    images, labels = scenes(2, 4)
    box = (3, 5, 20, 17)
    if how == "default":  # the pixels the eager model predicts as square
        regions = (predicted(model, images) == SQUARE).astype(np.float32)
        explanations = explainer.explain_photos(list(images), labels=SQUARE)
    elif how == "box":  # photos of the input's size: the box's own pixels
        regions = np.zeros((len(images), SIZE, SIZE), np.float32)
        regions[:, box[1]:box[3], box[0]:box[2]] = 1
        explanations = explainer.explain_photos(list(images), labels=SQUARE, region=box)
    else:
        mask = labels[0] == DISC
        regions = np.repeat(mask[None].astype(np.float32), len(images), axis=0)
        explanations = explainer.explain_photos(list(images), labels=SQUARE, mask=mask)
    y, cam = eager_reference(model, images, SQUARE, regions)
    _assert_close(np.array([e.logits[SQUARE] for e in explanations]), y)
    _assert_close(np.array([e.cam_lowres for e in explanations]), cam)
    for explanation, region in zip(explanations, regions):
        np.testing.assert_array_equal(explanation.region, region > 0)
        np.testing.assert_array_equal(explanation.output_region, region)
        assert explanation.region_area == pytest.approx(region.mean())


def test_default_class_is_the_largest_area_but_the_background(explainer, trained):
    model, _ = trained
    images, _ = scenes(3, 4)
    areas = np.stack([(predicted(model, images) == c).sum(axis=(1, 2)) for c in range(3)], 1)
    without = explainer.explain(images)
    assert [e.label for e in without] == list(np.argmax(areas, axis=1))
    chosen = explainer.explain(images, background="background")
    assert [e.label for e in chosen] == list(1 + np.argmax(areas[:, 1:], axis=1))


def test_an_empty_region_names_its_image(explainer):
    """Scenes with a square only: the images on which no pixel is predicted as disc (7 or 8 of
    8, by the kernels the model was trained with) are named, and only they."""
    squares_only, _ = scenes(4, 8, shapes=(SQUARE,))
    predictions = [e.prediction for e in explainer.explain(squares_only, labels="square")]
    empty = [index for index, prediction in enumerate(predictions)
             if not (prediction == DISC).any()]
    assert len(empty) >= 4, empty
    with pytest.raises(EmptyRegionError) as raised:
        explainer.explain(squares_only, labels="disc")
    assert sorted(raised.value.problems) == empty
    assert "no pixel is predicted as disc" in str(raised.value)


def _error_lines(run):
    assert "Traceback" not in run.stderr, run.stderr
    return [line for line in run.stderr.splitlines() if line.startswith("error: ")]


def test_command_line_outputs_and_bad_input(trained, tmp_path):
    _, folder = trained
    images, labels = scenes(5, 2)
    squares_only, _ = scenes(6, 1, shapes=(SQUARE,))
    paths = []
    for index, image in enumerate(list(images) + list(squares_only)):
        paths.append(tmp_path / ("scene%d.png" % index))
        Image.fromarray(image).save(paths[-1])
    model = ["--model", folder / "seg.keras", "--labels_file", folder / "names.txt"]

    # An empty region (no disc in scene2) costs that photo alone; npz and index.csv rows.
    run = run_cli(model + ["--label", "disc", "--image", tmp_path / "scene*.png"], tmp_path / "a")
    assert run.returncode == 1
    errors = _error_lines(run)
    assert len(errors) == 2 and "scene2.png: no pixel is predicted as disc" in errors[0], errors
    for index in (0, 1):
        saved = np.load(run.output_dir / ("scene%d.npz" % index))
        assert saved["region"].shape == (SIZE, SIZE)
        np.testing.assert_array_equal(saved["region"], saved["prediction"] == DISC)
        assert (saved["prediction"] == labels[index]).mean() > 0.95
    with open(run.output_dir / "index.csv") as handle:
        rows = {row["stem"]: row for row in csv.DictReader(handle)}
    assert rows["scene2"]["error"] and not rows["scene0"]["error"]
    saved = np.load(run.output_dir / "scene0.npz")
    assert float(rows["scene0"]["region_area"]) == pytest.approx(saved["region"].mean())
    assert rows["scene0"]["class_name"] == "disc" and not rows["scene0"]["top5"]

    # A mask of another size than the photos: resized, said once for both.
    mask = np.kron(labels[0] == SQUARE, np.ones((2, 2), bool))
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    run = run_cli(model + ["--label", "square", "--mask", tmp_path / "mask.png", "--image",
                           paths[0], "--image", paths[1]], tmp_path / "b")
    assert run.returncode == 0 and not _error_lines(run), run.stderr
    notes = [line for line in run.stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "64x64" in notes[0] and "32x32" in notes[0], run.stdout
    np.testing.assert_array_equal(np.load(run.output_dir / "scene1.npz")["region"],
                                  labels[0] == SQUARE)

    # A region outside the photo; region flags for a model that is no segmentation model.
    run = run_cli(model + ["--region", "40,40,50,50", "--image", paths[0]], tmp_path / "c")
    assert run.returncode == 1
    assert "lies outside the 32x32 photo" in _error_lines(run)[0], run.stderr
    run = run_cli(["--model", folder / "seg.keras", "--region", "5,5,1,1", "--image", paths[0]],
                  tmp_path / "d")
    assert run.returncode == 1 and "x0 < x1" in _error_lines(run)[0], run.stderr


def test_ablation_cam_passes_score_each_image_over_its_own_region(trained):
    """Ablation-CAM's passes in chunks of 7 mix images, each scored over its own region: with
    a 1x1 classifier, y − y_k = Σ_R A^k W_kc, so w_k = Σ_R A^k W_kc / y (numpy here)."""
    model, _ = trained
    images, _ = scenes(7, 3)
    regions = (predicted(model, images) == SQUARE).astype(np.float32)
    with GuidedGradCam(model, batch_size=7, methods=("ablationcam",)) as explainer:
        explanations = explainer.explain(images, labels=SQUARE)
    with eager():
        activations = keras.Model(model.input, model.get_layer("decoder").output)(
            images.astype(np.float32)).numpy().astype(np.float64)
        kernel, bias = model.get_layer("classes").get_weights()
    z = activations @ kernel[0, 0, :, SQUARE] + bias[SQUARE]
    y = (regions * z).sum(axis=(1, 2))
    weights = np.einsum("bhw,bhwk->bk", regions, activations) * kernel[0, 0, :, SQUARE] / y[:, None]
    expected = np.maximum(np.einsum("bk,bhwk->bhw", weights, activations), 0)
    # Measured: 2.1e-5 at most, absolute (y − y_k: float32 sums over the region, subtracted).
    _assert_close(np.array([e.maps("ablationcam").lowres for e in explanations]), expected,
                  fraction=1e-3)


def test_the_evaluation_scores_each_class_over_its_explained_region(trained):
    """Occluded inputs score each class over the region it was explained on (an eager
    reference), and the evaluation measures faithfulness, deletion and sanity on them."""
    from guided_gradcam.evaluation.runner import Evaluator, Settings
    from guided_gradcam.segmentation import ScoredOverRegions

    model, folder = trained
    images, _ = scenes(8, 1)
    with GuidedGradCam(model, labels_file=str(folder / "names.txt")) as explainer:
        explanations = explainer.explain(np.repeat(images, 2, 0), ["square", "disc"])
        scorer = ScoredOverRegions(explainer, explanations)
        net_input = explainer.network_inputs(images)
        occluded = net_input.copy()
        occluded[0, 8:24, 8:24] = 0.0
        y, probabilities = scorer.forward(np.concatenate([net_input, occluded]))
        result = Evaluator(explainer, Settings(
            metrics=("faithfulness", "deletion", "sanity", "localisation"), patch=8, stride=8,
            step=64, tolerance=0.0)).evaluate(images[0], labels=["square"])
    for e in explanations:
        expected, _ = eager_reference(
            model, np.concatenate([images, occluded]).astype(np.float32), e.label,
            e.output_region[None])
        _assert_close(y[:, e.label], expected)
        assert y[0, e.label] == pytest.approx(e.logits[e.label], rel=1e-5)
        assert probabilities[0, e.label] == pytest.approx(e.probabilities[e.label], rel=1e-5)
    measured = result.classes[0]
    assert measured.class_name == "square"
    assert np.isfinite(measured.faithfulness["gradcam"]) and np.isfinite(
        measured.deletion["gradcam"])
    # Randomised weights predict no square: their runs keep the explained region.
    assert len(measured.sanity) > 0
    # Without VOC boxes, the pointing game is played on the region (tolerance 0: the peak on
    # it; tests/test_segmentation_evaluation.py has more).
    peak = np.unravel_index(np.argmax(explanations[0].cam), explanations[0].cam.shape)
    assert measured.pointing["gradcam"] == explanations[0].region[peak]


def test_aug_smooth_flips_the_region_with_the_input(trained):
    """Smoothing over flips is symmetric: the maps of a flipped image over the flipped box are
    the flipped maps of the image over the box only if each flipped run's region is flipped
    too (the box is off-centre: an unflipped region would score other pixels)."""
    model, _ = trained
    images, _ = scenes(9, 2)
    box = (2, 4, 14, 20)
    flipped_box = (SIZE - box[2], box[1], SIZE - box[0], box[3])
    with GuidedGradCam(model, aug_smooth=True, methods=("gradcam", "scorecam")) as explainer:
        plain = explainer.explain(images, SQUARE, region=box)
        mirrored = explainer.explain(images[:, :, ::-1], SQUARE, region=flipped_box)
    for a, b in zip(plain, mirrored):
        for method in ("gradcam", "scorecam"):
            _assert_close(b.maps(method).lowres[:, ::-1], a.maps(method).lowres, 1e-4)


def test_a_binary_model_explains_its_foreground_and_the_counterfactual(trained):
    """One sigmoid channel z = z_square − z_background of the trained layers: without a label
    the foreground (1) over the pixels with z > 0; label 0 explains −z over those with z ≤ 0;
    the counterfactual Grad-CAM negates the gradient (eager references)."""
    model, _ = trained
    with eager():
        kernel, bias = model.get_layer("classes").get_weights()
        foreground = keras.layers.Conv2D(1, 1, activation="sigmoid", name="foreground")
        binary = keras.Model(model.input, foreground(model.get_layer("decoder").output))
        foreground.set_weights([kernel[..., 1:2] - kernel[..., :1], bias[1:2] - bias[:1]])
        features = keras.Model(model.input, model.get_layer("decoder").output)
    images, _ = scenes(10, 3)
    with GuidedGradCam(binary) as explainer:
        assert (explainer.task, explainer.pixel_task) == ("segmentation", "binary")
        explained = {label: explainer.explain(images, label) for label in (None, 0)}
        counterfactual = explainer.explain(images, counterfactual=True)
    with eager():
        with tf2.GradientTape() as tape:
            activations = features(images.astype(np.float32))
            tape.watch(activations)
            z = tf2.nn.conv2d(activations, kernel[..., 1:2] - kernel[..., :1], 1, "VALID")[
                ..., 0] + bias[1] - bias[0]
            regions = tf2.cast(z > 0, tf2.float32)
            y = tf2.reduce_sum(regions * z, axis=[1, 2])
        grads = tape.gradient(y, activations)
        z, regions, y = z.numpy(), regions.numpy(), y.numpy()
        weights = tf2.reduce_mean(grads, axis=[1, 2], keepdims=True)
        cam = tf2.nn.relu(tf2.reduce_sum(weights * activations, axis=-1)).numpy()
        against = tf2.nn.relu(-tf2.reduce_sum(weights * activations, axis=-1)).numpy()
    assert [e.label for e in explained[None]] == [1, 1, 1]
    _assert_close(np.array([e.logits[1] for e in explained[None]]), y)
    _assert_close(np.array([e.cam_lowres for e in explained[None]]), cam)
    _assert_close(np.array([e.cam_lowres for e in counterfactual]), against)
    background = 1.0 - regions
    _assert_close(np.array([e.logits[0] for e in explained[0]]),
                  (background * -z).sum(axis=(1, 2)))
    for e, region in zip(explained[0], background):
        np.testing.assert_array_equal(e.output_region, region)


@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_raw_and_multilabel_heads_sum_their_scores_over_the_predicted_pixels(trained, activation):
    """The trained classifier's weights with no activation (raw scores: the argmax predicts)
    or a sigmoid per class (multi-label: p > 0.5 predicts): y = Σ_R z, z the raw scores."""
    model, _ = trained
    with eager():
        kernel, bias = model.get_layer("classes").get_weights()
        head = keras.layers.Conv2D(3, 1, activation=activation, name="head")
        variant = keras.Model(model.input, head(model.get_layer("decoder").output))
        head.set_weights([kernel, bias])
        features = keras.Model(model.input, model.get_layer("decoder").output)
        images, _ = scenes(11, 3)
        z = (tf2.nn.conv2d(features(images.astype(np.float32)), kernel, 1, "VALID")
             + bias).numpy()
    predicted_square = (z[..., SQUARE] > 0 if activation else
                        np.argmax(z, axis=-1) == SQUARE).astype(np.float32)
    with GuidedGradCam(variant) as explainer:
        assert explainer.pixel_task == ("multilabel" if activation else "classification")
        explanations = explainer.explain(images, SQUARE)
    for e, region, scores in zip(explanations, predicted_square, z):
        np.testing.assert_array_equal(e.output_region, region)
        _assert_close(e.logits[SQUARE], (region * scores[..., SQUARE]).sum())


def test_an_output_at_half_the_input_resolution_takes_the_box_at_pixel_centres(trained, tmp_path):
    """A head on the 16x16 middle layer: output pixel (i, j) is in the region when the input
    pixel at its centre, (2i + 1, 2j + 1), is in the box; y = Σ_R z there; the panel renders."""
    from guided_gradcam.outputs.files import render_outputs

    model, _ = trained
    with eager():
        head = keras.layers.Conv2D(3, 1, activation="softmax", name="coarse")
        coarse = keras.Model(model.input, head(model.get_layer("middle2").output))
        middle = keras.Model(model.input, model.get_layer("middle2").output)
        kernel, bias = head.get_weights()
        images, _ = scenes(13, 2)
        z = (tf2.nn.conv2d(middle(images.astype(np.float32)), kernel, 1, "VALID")
             + bias).numpy()
    box = (3, 6, 18, 25)
    in_box = np.zeros((SIZE, SIZE), bool)
    in_box[box[1]:box[3], box[0]:box[2]] = True
    region = in_box[1::2, 1::2].astype(np.float32)
    with GuidedGradCam(coarse) as explainer:
        explanations = explainer.explain(images, 2, region=box)
    for e, scores in zip(explanations, z):
        np.testing.assert_array_equal(e.output_region, region)
        np.testing.assert_array_equal(e.region, in_box)
        assert e.prediction.shape == (SIZE // 2, SIZE // 2)
        _assert_close(e.logits[2], (region * scores[..., 2]).sum())
    panel = render_outputs(explanations[0], images[0], (0, 0, SIZE, SIZE), "disc",
                           kinds=("panel",))["panel"]
    assert panel.ndim == 3 and panel.dtype == np.uint8


def test_region_flags_need_a_segmentation_model(trained, tmp_path):
    model, _ = trained
    with eager():
        pooled = keras.layers.GlobalAveragePooling2D()(model.get_layer("decoder").output)
        classifier = keras.Model(model.input, keras.layers.Dense(3, activation="softmax")(pooled))
        classifier.save(tmp_path / "classifier.keras")
    image, _ = scenes(14, 1)
    Image.fromarray(image[0]).save(tmp_path / "scene.png")
    run = run_cli(["--model", tmp_path / "classifier.keras", "--region", "1,1,9,9", "--image",
                   tmp_path / "scene.png"], tmp_path / "out")
    assert run.returncode == 1
    errors = _error_lines(run)
    assert len(errors) == 1 and "--region needs a segmentation model" in errors[0], run.stderr
    assert "task is classification" in errors[0]


def test_default_layer_of_a_head_upsampled_after_its_classifier():
    """DeepLab's order: 1x1 classifier at low resolution, then a bilinear resize, then softmax:
    the default layer is still the classifier's input, not its logits."""
    with eager():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((SIZE, SIZE, 3))
        hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="enc")(inputs)
        hidden = keras.layers.MaxPooling2D(2)(hidden)
        hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu",
                                     name="features")(hidden)
        hidden = keras.layers.Conv2D(3, 1, name="logits")(hidden)
        hidden = keras.layers.UpSampling2D(2, interpolation="bilinear", name="up")(hidden)
        model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(hidden))
    with GuidedGradCam(model) as explainer:
        assert explainer.layer == "features", explainer.layer


def test_mask_files_of_every_mode_and_boxes(tmp_path):
    """Non-zero pixels are the region: gray, RGB (any channel), RGBA whatever its alpha, a
    palette image's indices; boxes are checked and clipped to the photo."""
    from guided_gradcam.errors import GuidedGradCamError
    from guided_gradcam.regions import RegionChoice, load_mask

    expected = np.zeros((6, 8), bool)
    expected[1:4, 2:7] = True
    gray = expected.astype(np.uint8) * 200
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 2] = gray  # blue only
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 255, np.uint8)], axis=-1)
    palette = Image.fromarray(expected.astype(np.uint8) * 3, "L").convert("P")
    for name, image in (("gray", Image.fromarray(gray)), ("rgb", Image.fromarray(rgb)),
                        ("rgba", Image.fromarray(rgba)), ("palette", palette)):
        image.save(tmp_path / (name + ".png"))
        np.testing.assert_array_equal(load_mask(tmp_path / (name + ".png")), expected)
    clipped = RegionChoice((-5, 4, 3, 99)).photo_mask(6, 8)
    assert clipped.sum() == 3 * 2 and clipped[4:, :3].all()
    for bad, message in (((3, 1, 2, 5), "x0 < x1"), ((9, 0, 12, 3), "outside the 8x6 photo")):
        with pytest.raises(GuidedGradCamError, match=message):
            RegionChoice(bad).photo_mask(6, 8)
