"""inference.py on the tests' trained segmentation model (conftest.trained_segmentation):
several labels, one of them with an empty region on one photo; and stderr free of
TensorFlow's C++ log lines even with oneDNN forced on."""
import csv
import re

import numpy as np
from PIL import Image

from conftest import run_cli
from helpers import SEGMENTATION_SIZE as SIZE
from helpers import scenes

SQUARE, DISC = 1, 2
TF_CHATTER = re.compile(r"^[IWEF]\d{4} |oneDNN", re.MULTILINE)  # C++ log lines


def _photos(folder):
    """scene0, scene1: a square and a disc; scene2: a square only (no disc is predicted)."""
    images, labels = scenes(5, 2)
    squares_only, _ = scenes(6, 1, shapes=(SQUARE,))
    for index, image in enumerate(list(images) + list(squares_only)):
        Image.fromarray(image).save(folder / ("scene%d.png" % index))
    return labels


def _errors(run):
    assert "Traceback" not in run.stderr, run.stderr
    return [line for line in run.stderr.splitlines() if line.startswith("error: ")]


def test_an_empty_region_skips_that_class_of_that_photo_only(trained_segmentation, tmp_path):
    _, folder = trained_segmentation
    labels = _photos(tmp_path)
    run = run_cli(["--model", folder / "seg.keras", "--labels_file", folder / "names.txt",
                   "--label", "square", "--label", "disc", "--image", tmp_path / "scene*.png"],
                  tmp_path / "out")
    assert run.returncode == 1
    errors = _errors(run)
    # One line for the pair (scene2, disc), then the run's count.
    assert len(errors) == 2, run.stderr
    assert "scene2.png: no pixel is predicted as disc" in errors[0], errors
    assert errors[1] == "error: 1 of 3 inputs failed", errors
    written = sorted(path.name for path in run.output_dir.glob("*.npz"))
    assert written == ["scene0_1.npz", "scene0_2.npz", "scene1_1.npz", "scene1_2.npz",
                       "scene2_1.npz"], written
    square = np.load(run.output_dir / "scene2_1.npz")
    np.testing.assert_array_equal(square["region"], square["prediction"] == SQUARE)
    assert square["region"].any()
    with open(run.output_dir / "index.csv") as handle:
        rows = {row["stem"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == ["scene0_1", "scene0_2", "scene1_1", "scene1_2", "scene2_1",
                            "scene2_2"]
    assert "no pixel is predicted as disc" in rows["scene2_2"]["error"]
    assert not rows["scene2_1"]["error"] and rows["scene2_1"]["class_name"] == "square"
    for stem in ("scene0_2", "scene1_2"):
        assert not rows[stem]["error"] and rows[stem]["class_name"] == "disc"
    assert (np.load(run.output_dir / "scene0_2.npz")["prediction"] == labels[0]).mean() > 0.95


def test_an_empty_mask_for_every_class_is_said_once(trained_segmentation, tmp_path):
    """A mask over nothing empties every class's region alike: one line for the photo."""
    _, folder = trained_segmentation
    _photos(tmp_path)
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(tmp_path / "empty.png")
    run = run_cli(["--model", folder / "seg.keras", "--labels_file", folder / "names.txt",
                   "--label", "square", "--label", "disc", "--mask", tmp_path / "empty.png",
                   "--image", tmp_path / "scene0.png"], tmp_path / "out")
    assert run.returncode == 1
    errors = _errors(run)
    assert len(errors) == 2 and "scene0.png: the region covers no pixel" in errors[0], errors
    assert not list(run.output_dir.glob("*.npz"))
    assert "wrote" not in run.stdout, run.stdout


def test_no_tensorflow_log_line_with_onednn_on(trained_segmentation, tmp_path, monkeypatch):
    """TF's Tile gradient (Keras's nearest UpSampling2D) transposed an int32 tensor, which
    oneDNN logs as an error on a CPU without AVX-512 ("oneDNN supports DT_INT32 only on
    platforms with AVX-512") during GBP; core.lean_gradients builds it without. oneDNN is
    forced on here (TensorFlow leaves it off on AMD CPUs); on a CPU with AVX-512 there is
    no such line to see, and this test cannot fail there."""
    _, folder = trained_segmentation
    _photos(tmp_path)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    run = run_cli(["--model", folder / "seg.keras", "--labels_file", folder / "names.txt",
                   "--label", "square", "--counterfactual", "--image", tmp_path / "scene0.png"],
                  tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert not TF_CHATTER.search(run.stderr), run.stderr


def _evaluate(args, output_dir):
    """evaluate.py as a user runs it (TF's log level unset)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items()
           if k not in ("GUIDED_GRADCAM_TF_LOGS", "TF_CPP_MIN_LOG_LEVEL")}
    return subprocess.run(
        [sys.executable, "evaluate.py", *map(str, args), "--output_dir", str(output_dir)],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
        timeout=300)


def test_evaluate_localisation_without_boxes_on_the_regions_only_for_segmentation(
        trained_segmentation, tmp_path):
    """--metrics localisation without --boxes: a segmentation model is measured against its
    regions (pointing and top-1 filled); a classifier is refused in one line."""
    import keras

    from guided_gradcam.core.tf_eager import eager

    model, folder = trained_segmentation
    _photos(tmp_path)
    run = _evaluate(["--model", folder / "seg.keras", "--labels_file", folder / "names.txt",
                     "--metrics", "localisation", "--label", "square", "--tolerance", "0",
                     "--image", tmp_path / "scene0.png", "--image", tmp_path / "scene1.png"],
                    tmp_path / "seg")
    assert run.returncode == 0 and not _errors(run), run.stderr
    with open(tmp_path / "seg" / "evaluation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        assert row["class_name"] == "square"
        assert row["pointing_gradcam"] == "true", row  # the peak on the square (measured)
        assert row["top1_localised"] in ("true", "false"), row
    with eager():
        pooled = keras.layers.GlobalAveragePooling2D()(model.get_layer("decoder").output)
        classifier = keras.Model(model.input, keras.layers.Dense(3, activation="softmax")(pooled))
        classifier.save(tmp_path / "classifier.keras")
    run = _evaluate(["--model", tmp_path / "classifier.keras", "--metrics", "localisation",
                     "--image", tmp_path / "scene0.png"], tmp_path / "classifier")
    assert run.returncode == 1
    errors = _errors(run)
    assert len(errors) == 1 and "--metrics localisation needs --boxes DIR" in errors[0], errors


def test_evaluate_defaults_to_the_largest_area_and_says_its_settings(trained_segmentation,
                                                                      tmp_path):
    """Without --label the evaluation explains what inference.py would: the class with the
    largest predicted area (here the background's), or with --background the largest other
    one; the pointing tolerance is among its settings; --region and --mask are refused in one
    line."""
    from guided_gradcam.core.tf_eager import eager

    model, folder = trained_segmentation
    _photos(tmp_path)
    photos = [tmp_path / "scene0.png", tmp_path / "scene2.png"]
    with eager():
        predicted = model.predict(np.stack([np.asarray(Image.open(p)) for p in photos])
                                  .astype(np.float32), verbose=0).argmax(-1)
    largest = ["square" if (p == SQUARE).sum() >= (p == DISC).sum() else "disc"
               for p in predicted]
    assert (predicted == 0).mean() > 0.5  # the background has the largest area (measured)
    model_flags = ["--model", folder / "seg.keras", "--labels_file", folder / "names.txt",
                   "--metrics", "localisation"]
    for extra, expected in (([], ["background"] * 2), (["--background", "background"], largest)):
        out = tmp_path / ("default%d" % len(extra))
        run = _evaluate(model_flags + extra + ["--image", photos[0], "--image", photos[1]], out)
        assert run.returncode == 0 and not _errors(run), run.stderr
        header = [line for line in run.stdout.splitlines() if line.startswith("evaluation: ")]
        assert "pointing tolerance 15 photo pixels" in header[0], header
        with open(out / "evaluation.csv") as handle:
            assert [row["class_name"] for row in csv.DictReader(handle)] == expected
    refused = {"--region": ["--region", "0,0,8,8"], "--mask": ["--mask", photos[0]]}
    for flag, extra in refused.items():
        run = _evaluate(model_flags + extra + ["--image", photos[0]], tmp_path / "refused")
        errors = _errors(run)
        assert run.returncode == 1 and len(errors) == 1 and flag in errors[0], run.stderr
