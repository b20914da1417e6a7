"""The evaluation of one's own model: small Keras 3 models (a binary sigmoid head, a linear
regression head) saved as .keras and measured through the same API as the networks. The curves
follow the sigmoid probability (binary) or y itself (regression), the counterfactual maps exist
only where a class does, the boxes name the model's own classes, and the sanity checks
randomise the Keras layers."""
import keras
import numpy as np
import pytest

from guided_gradcam import GuidedGradCam
from guided_gradcam.evaluation.runner import Evaluator, Settings
from guided_gradcam.core.tf_eager import eager

SIZE = 32  # HOG's default cells need maps of 24 x 24 at least
SMALL = dict(patch=8, stride=4, step=64, batch_size=16)
BOX = (9, 5, 25, 21)  # (left, top, right, bottom), exclusive


def _save_model(path, units, head):
    with eager():
        keras.utils.set_random_seed(3)
        inputs = keras.Input((SIZE, SIZE, 3))
        hidden = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inputs)
        hidden = keras.layers.BatchNormalization(name="bn1")(hidden)
        hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu",
                                     name="features")(hidden)
        hidden = keras.layers.GlobalAveragePooling2D(name="pool")(hidden)
        outputs = keras.layers.Dense(units, activation=head, name="scores")(hidden)
        keras.Model(inputs, outputs).save(path)
    return str(path)


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(4)
    picture = rng.integers(0, 60, (SIZE, SIZE, 3), np.uint8)
    left, top, right, bottom = BOX
    picture[top:bottom, left:right] = rng.integers(150, 256, (bottom - top, right - left, 3))
    return picture


def _voc(folder, stem, name):
    left, top, right, bottom = BOX
    (folder / (stem + ".xml")).write_text(
        "<annotation><size><width>%d</width><height>%d</height><depth>3</depth></size>"
        "<object><name>%s</name><difficult>0</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin>"
        "<xmax>%d</xmax><ymax>%d</ymax></bndbox></object></annotation>"
        % (SIZE, SIZE, name, left + 1, top + 1, right, bottom))


def test_a_binary_model_is_measured_on_its_sigmoid_and_its_own_class_names(tmp_path, photo):
    model = _save_model(tmp_path / "binary.keras", 1, "sigmoid")
    (tmp_path / "names.txt").write_text("background\nobject\n")
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    _voc(boxes, "square", "object")
    with GuidedGradCam(model, layer="features", preprocess="unit",
                       labels_file=str(tmp_path / "names.txt")) as explainer:
        result = Evaluator(explainer, Settings(**SMALL), str(boxes)).evaluate(
            photo, "square.png", "square", labels=["object"])
        explanation, = explainer.explain(photo[None], "object")
        counterfactual, = explainer.explain(photo[None], "object", counterfactual=True)
    evaluated, = result.classes
    assert (evaluated.class_index, evaluated.class_name) == (1, "object")
    z = explanation.logits[0]
    assert evaluated.probability == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-6)
    for mode in ("deletion", "insertion"):
        curve = evaluated.curves["gradcam", mode]
        assert len(curve) == SIZE * SIZE // 64 + 1 and np.all((curve >= 0) & (curve <= 1))
    assert evaluated.curves["gradcam", "deletion"][0] == pytest.approx(
        evaluated.probability, abs=1e-6)  # the sigmoid of the untouched input
    assert evaluated.curves["gradcam", "insertion"][-1] == pytest.approx(
        evaluated.probability, abs=1e-6)
    has_counterfactual = bool(counterfactual.cam.any())
    assert np.isnan(evaluated.faithfulness["counterfactual"]) != has_counterfactual
    assert set(evaluated.pointing) == {"gradcam", "gbp", "guided_gradcam"}
    assert set(result.localisation) == {"top1", "top5"}
    blocks = {row.block for row in evaluated.sanity}
    assert blocks == {"conv1", "bn1", "features", "scores"}  # the Keras layers
    assert len(evaluated.sanity) == 2 * 4 * 3  # both modes, 4 blocks, 3 maps
    rows = {(row.mode, row.step, row.map): row for row in evaluated.sanity}
    assert rows["cascading", 1, "gradcam"].block == "scores"
    assert np.isfinite(rows["cascading", 1, "gbp"].spearman_abs)


def test_a_regression_model_follows_y_and_has_no_counterfactual(tmp_path, photo):
    model = _save_model(tmp_path / "regression.keras", 1, None)
    with GuidedGradCam(model, layer="features", preprocess="unit") as explainer:
        result = Evaluator(explainer, Settings(metrics=("faithfulness", "deletion"), **SMALL)
                           ).evaluate(photo, "square.png", "square")
        explanation, = explainer.explain(photo[None])
        # Every pixel deleted to grey, 127.5 / 255 of the unit input, not to its 0 (black).
        y_of_grey, y_of_black = explainer.forward(np.stack([np.full((SIZE, SIZE, 3), 0.5),
                                                           np.zeros((SIZE, SIZE, 3))]))[0][:, 0]
    evaluated, = result.classes
    assert evaluated.probability is None and result.top5 == []
    assert set(evaluated.deletion) == {"gradcam", "gbp", "guided_gradcam"}  # no counterfactual
    curve = evaluated.curves["gradcam", "deletion"]
    assert curve[0] == pytest.approx(explanation.value, abs=1e-5)  # y itself, not a probability
    assert curve[-1] == pytest.approx(y_of_grey, abs=1e-5)  # every pixel deleted
    assert abs(y_of_grey - y_of_black) > 1e-3  # the two baselines differ for this model
    assert result.baselines == {"deletion": "grey", "insertion": "blur"}
    assert evaluated.insertion["gradcam"] == pytest.approx(
        np.trapezoid(evaluated.curves["gradcam", "insertion"],
                     np.minimum(np.arange(len(curve)) * 64, SIZE * SIZE) / (SIZE * SIZE)))
