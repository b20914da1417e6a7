"""The real ImageNet MobileNet V1 0.75 as a user brings it: Keras 3's own
`keras.applications.MobileNet(alpha=0.75)` with the weights of ../shared, softmax head, saved as
`.keras` and as a SavedModel, explained by the toolkit. The TF-Slim path, built from the same
weights by other code (the converter and the slim network definition), is the independent
computation: same top-5, same Grad-CAM, same GBP.
"""
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SHARED
from guided_gradcam import GuidedGradCam, load_photo
from guided_gradcam.zoo.keras_mobilenet import build_keras_mobilenet
from guided_gradcam.core.tf_eager import eager

WEIGHTS = SHARED / "weights" / "mobilenet_v1_0.75_224_tfjs"
TIGER_CAT, BULL_MASTIFF = 282, 243
# Keras layer ↔ slim end point: the default (after the last ReLU6), and an earlier 14x14 layer
# whose ∂y/∂A varies in space and has guided ReLU6s between it and the logits.
LAYERS = [("conv_pw_13_relu", "Conv2d_13_pointwise"), ("conv_pw_11_relu", "Conv2d_11_pointwise")]


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_mobilenet")
    assert WEIGHTS.is_dir(), "%s is missing: ../shared must sit beside the repository" % WEIGHTS
    model = build_keras_mobilenet(str(WEIGHTS))
    with eager():
        model.save(str(folder / "mobilenet.keras"))
        model.export(str(folder / "saved_model"), verbose=False)
    return {"keras": folder / "mobilenet.keras", "saved_model": folder / "saved_model"}


@pytest.fixture(scope="module")
def cat_dog_input(explainer, cat_dog_path):
    return explainer.fit(load_photo(cat_dog_path))[0]


@pytest.fixture(scope="module", params=["keras", "saved_model"])
def imported(request, saved_models, explainer, cat_dog_input):
    """{keras layer: (imported model's explanations, slim's)} for tiger cat and bull mastiff."""
    batch = np.stack([cat_dog_input] * 2)
    results = {}
    for keras_layer, slim_layer in LAYERS:
        with GuidedGradCam(str(saved_models[request.param]), layer=keras_layer,
                           preprocess="inception", labels_file="imagenet") as model:
            ours = model.explain(batch, [TIGER_CAT, "bull mastiff"])
            default_layer, unguided = model.layer, model.unguided_activations
        with GuidedGradCam("mobilenet_v1_075", checkpoint=explainer.checkpoint,
                           layer=slim_layer) as slim:
            results[keras_layer] = (ours, slim.explain(batch, [TIGER_CAT, BULL_MASTIFF]))
        if keras_layer == LAYERS[0][0]:
            results["facts"] = (default_layer, unguided)
    return request.param, results


def test_top5_and_task_equal_the_slim_paths(imported):
    kind, results = imported
    ours, slim = results[LAYERS[0][0]]
    assert ours[0].task == "classification"
    assert [i for i, _ in ours[0].top_k(5)] == [i for i, _ in slim[0].top_k(5)], kind
    # Other kernels (Keras' graph against the slim one): measured 1.4e-5 relative; 25x margin.
    np.testing.assert_allclose(ours[0].probabilities, slim[0].probabilities, rtol=3e-4,
                               atol=1e-5, err_msg=kind)
    assert results["facts"] == ("conv_pw_13_relu", {}), "MobileNet has ReLU6 only"


@pytest.mark.parametrize("keras_layer", [keras for keras, _ in LAYERS])
def test_gradcam_and_gbp_equal_the_slim_paths(imported, keras_layer):
    kind, results = imported
    ours, slim = results[keras_layer]
    for mine, theirs in zip(ours, slim):
        assert mine.label == theirs.label
        difference = np.abs(mine.cam_lowres - theirs.cam_lowres).max() / theirs.cam_lowres.max()
        print("%s %s class %d: cam_lowres max rel. diff %.2e, gbp r = %.7f" % (
            kind, keras_layer, mine.label, difference,
            np.corrcoef(mine.gbp.ravel(), theirs.gbp.ravel())[0, 1]))
        assert theirs.cam_lowres.max() > 0
        assert difference <= 1e-4, (kind, keras_layer, mine.label)
        assert np.corrcoef(mine.gbp.ravel(), theirs.gbp.ravel())[0, 1] >= 0.999


def test_cli_explains_the_keras_file(saved_models, cat_dog_path, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "inference.py"), "--model", str(saved_models["keras"]),
         "--preprocess", "inception", "--labels_file", "imagenet", "--label", "bull mastiff",
         "--image", str(cat_dog_path), "--output_dir", str(tmp_path), "--outputs", "npz"],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "preprocessing inception" in result.stdout and "conv_pw_13_relu" in result.stdout
    assert "tiger cat (282) 0.490, bull mastiff (243) 0.349" in result.stdout
    assert "explained bull mastiff (243)" in result.stdout
    with np.load(tmp_path / "cat_dog.npz") as arrays:
        assert str(arrays["task"]) == "classification" and int(arrays["label"]) == BULL_MASTIFF
        assert arrays["logits"].shape == (1000,)
