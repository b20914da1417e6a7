"""Figure 1 on cat_dog.jpg: the class-discrimination numbers, the figures command, its helpers."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guided_gradcam import load_photo
from guided_gradcam.explanation import Explanation
from guided_gradcam.outputs.figures import (
    class_figure, draw_box, format_table, map_correlations, pearson, stack_figures)

TIGER_CAT, BULL_MASTIFF = 282, 243
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "make_figures.py"
# Where the animals are in the 224x224 network input (../shared/README.md).
CAT_ROWS = np.s_[112:, :]  # the cat lies across the lower half
DOG_HEAD = np.s_[:112, 56:168]  # the dog's head and chest: upper middle


@pytest.fixture(scope="module")
def explained(explainer, cat_dog_path):
    """'tiger cat' and 'bull mastiff' on cat_dog.jpg, in one run."""
    network_input, _ = explainer.fit(load_photo(cat_dog_path))
    return explainer.explain([network_input] * 2, [TIGER_CAT, BULL_MASTIFF])


@pytest.fixture(scope="module")
def figures_run(cat_dog_path, mobilenet_075_checkpoint, tmp_path_factory):
    """The figures command once on cat_dog.jpg with its default classes."""
    output_dir = tmp_path_factory.mktemp("figures")
    result = _run_script("--image", str(cat_dog_path), "--output_dir", str(output_dir),
                         "--checkpoint", str(mobilenet_075_checkpoint))
    return result, output_dir


def _run_script(*args):
    # Without the test session's TF_CPP_MIN_LOG_LEVEL (conftest sets it), so that a clean
    # stderr shows the script's own quieting of TensorFlow, as a user's shell would run it.
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "GUIDED_GRADCAM_TF_LOGS")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


# -- the claim in numbers ---------------------------------------------------------------------
def test_gbp_is_not_class_discriminative_but_gradcam_and_guided_gradcam_are(explained):
    cat, dog = explained
    r = map_correlations(cat, dog)
    assert r["gbp"] > 0.9, r
    assert r["cam"] < 0.0, r
    assert r["guided_gradcam"] < 0.6, r


def test_each_class_gradcam_puts_more_energy_on_its_own_animal(explained):
    cat, dog = explained
    assert cat.cam[CAT_ROWS].mean() > cat.cam[DOG_HEAD].mean()
    assert dog.cam[DOG_HEAD].mean() > dog.cam[CAT_ROWS].mean()

    def share(explanation, region):
        return explanation.cam[region].sum() / explanation.cam.sum()
    assert share(cat, CAT_ROWS) > share(dog, CAT_ROWS)
    assert share(dog, DOG_HEAD) > share(cat, DOG_HEAD)


# -- the figures command ----------------------------------------------------------------------
def test_figures_command_writes_per_class_and_combined_figures(figures_run):
    result, output_dir = figures_run
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    names = ["cat_dog_282_tiger_cat.png", "cat_dog_242_boxer.png",
             "cat_dog_243_bull_mastiff.png"]
    assert sorted(os.listdir(output_dir)) == sorted(names + ["cat_dog_combined.png"])
    rows = [np.asarray(Image.open(output_dir / name)) for name in names]
    combined = np.asarray(Image.open(output_dir / "cat_dog_combined.png"))
    assert combined.shape[0] == sum(row.shape[0] for row in rows)
    np.testing.assert_array_equal(combined[:rows[0].shape[0], :rows[0].shape[1]], rows[0])


def test_figures_command_prints_the_correlations_and_boxes(figures_run, explained):
    result, _ = figures_run
    out = result.stdout
    line = re.search(r"tiger cat \(282\) / bull mastiff \(243\)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    assert line, out
    printed = [float(value) for value in line.groups()]
    r = map_correlations(*explained)
    assert printed == pytest.approx([r["gbp"], r["cam"], r["guided_gradcam"]], abs=2e-3)
    for pair in ("tiger cat (282) / boxer (242)", "boxer (242) / bull mastiff (243)"):
        assert pair in out
    for name in ("tiger cat (282)", "boxer (242)", "bull mastiff (243)"):
        box = re.search(re.escape(name) + r"\s+0\.\d{3}\s+\((\d+), (\d+), (\d+), (\d+)\)", out)
        assert box, (name, out)
        left, top, right, bottom = map(int, box.groups())
        assert 80 <= left < right <= 560 and 0 <= top < bottom <= 480  # inside the crop
    dog_box = re.search(r"bull mastiff \(243\)\s+0\.349\s+\((\d+), (\d+), (\d+), (\d+)\)", out)
    assert dog_box and int(dog_box.group(4)) <= 320, "the dog's box stays in the upper part"


# write_figures in a fresh interpreter (the script defines absl flags, which must not meet the
# command line's in this one), with os.replace recording each rename.
WRITE_FIGURES = """
import importlib.util, json, os, sys
import numpy as np

renames, replace = [], os.replace
def recording(src, dst, **kwargs):
    renames.append((os.path.abspath(src), os.path.abspath(dst)))
    return replace(src, dst, **kwargs)
os.replace = recording

spec = importlib.util.spec_from_file_location("make_figures", sys.argv[1])
make_figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_figures)
from guided_gradcam.explanation import Explanation

def explanation(label, counterfactual):
    rng = np.random.default_rng(label + counterfactual)
    cam = rng.uniform(size=(32, 32)).astype(np.float32)
    gbp = rng.normal(size=(32, 32, 3)).astype(np.float32)
    return Explanation(label=label, logits=np.zeros(1000, np.float32),
                       probabilities=np.full(1000, 1e-3, np.float32), cam_lowres=cam[::8, ::8],
                       cam=cam, gbp=gbp, guided_gradcam=gbp * cam[..., None],
                       image=np.full((32, 32, 3), 90, np.uint8), counterfactual=counterfactual)

results = [(explanation(label, False), explanation(label, True), name, (4, 4, 20, 20))
           for label, name in ((282, "tiger cat"), (243, "bull mastiff"))]
written = {"figures": make_figures.write_figures(results, "photo", sys.argv[2], None),
           "gallery": make_figures.write_figures(results, "photo", None, sys.argv[3])}
print(json.dumps({"written": written, "renames": renames}))
"""


def test_every_figure_file_is_written_beside_and_renamed_into_place(tmp_path):
    folders = {"figures": tmp_path / "figures", "gallery": tmp_path / "gallery"}
    for folder in folders.values():
        folder.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", WRITE_FIGURES, str(SCRIPT), str(folders["figures"]),
         str(folders["gallery"])], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    renamed = sorted(dst for _, dst in report["renames"])
    written = []
    for mode, folder in folders.items():
        paths = [os.path.abspath(path) for path in report["written"][mode]]
        assert sorted(os.listdir(folder)) == sorted(os.path.basename(p) for p in paths), mode
        written += paths
    assert len(report["written"]["figures"]) == 3 and len(report["written"]["gallery"]) == 1
    assert renamed == sorted(written)
    for src, dst in report["renames"]:
        assert os.path.dirname(src) == os.path.dirname(dst) and src != dst


@pytest.mark.parametrize("labels, message", [
    ("tiger cat,no such animal", "unknown class name 'no such animal'"),
    ("282,tiger cat", "more than once"),
    ("282,,243", "empty entry"),
])
def test_bad_labels_give_one_error_line(cat_dog_path, tmp_path, labels, message):
    result = _run_script("--image", str(cat_dog_path), "--labels", labels,
                         "--output_dir", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert os.listdir(tmp_path) == []


# -- the helpers --------------------------------------------------------------------------------
def test_pearson():
    a = np.arange(12.0).reshape(3, 4)
    assert pearson(a, a) == pytest.approx(1.0)
    assert pearson(a, -3 * a + 7) == pytest.approx(-1.0)
    assert pearson(a, a ** 2) == pytest.approx(np.corrcoef(a.ravel(), a.ravel() ** 2)[0, 1])
    assert np.isnan(pearson(a, np.ones_like(a)))
    with pytest.raises(ValueError):
        pearson(a, a[:2])


def test_draw_box_outlines_white_with_a_black_edge_outside():
    image = np.full((20, 20, 3), 100, np.uint8)
    boxed = draw_box(image, (5, 6, 15, 16))
    assert (boxed[6, 5:15] == 255).all() and (boxed[7, 6:14] == 255).all()  # 2 px top edge
    assert (boxed[15, 5:15] == 255).all() and (boxed[6:16, 14] == 255).all()
    assert (boxed[5, 5:15] == 0).all() and (boxed[6:16, 4] == 0).all()  # the edge outside
    assert (boxed[8:14, 7:13] == 100).all()  # the inside untouched
    assert (image == 100).all()  # the input untouched


def _explanation(label, cam, counterfactual=False):
    rng = np.random.default_rng(label)
    gbp = rng.normal(size=cam.shape + (3,)).astype(np.float32)
    probabilities = np.full(1000, 1e-3, np.float32)
    return Explanation(
        label=label, logits=np.zeros(1000, np.float32), probabilities=probabilities,
        cam_lowres=cam[::8, ::8], cam=cam, gbp=gbp, guided_gradcam=gbp * cam[..., None],
        image=np.full(cam.shape + (3,), 90, np.uint8), counterfactual=counterfactual)


def test_class_figure_has_five_tiles_and_the_box_on_gradcam():
    cam = np.zeros((32, 32), np.float32)
    cam[8:20, 4:24] = 1
    figure = class_figure(_explanation(5, cam), _explanation(5, 1 - cam, True), "goldfish",
                          box=(4, 8, 24, 20))
    without_box = class_figure(_explanation(5, cam), _explanation(5, 1 - cam, True), "goldfish")
    assert figure.shape == without_box.shape and figure.shape[1] > 5 * 32
    differs = np.nonzero((figure != without_box).any(axis=2))
    columns = differs[1]
    # Only the third tile (Grad-CAM) changes, and there only along a 20x12 outline.
    assert columns.max() - columns.min() == 21 and 2 * (32 + 8) < columns.min() < 3 * (32 + 8) + 8
    with pytest.raises(ValueError):
        class_figure(_explanation(5, cam), _explanation(6, cam, True), "goldfish")


def test_stack_figures_and_format_table():
    top, bottom = np.zeros((2, 3, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)
    stacked = stack_figures([top, bottom])
    assert stacked.shape == (6, 5, 3)
    assert (stacked[:2, 3:] == 255).all() and (stacked[:2, :3] == 0).all()
    assert format_table(["a", "bb"], [["ccc", "d"]]) == ["a    bb", "ccc  d"]
