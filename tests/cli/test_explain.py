"""End to end: `python inference.py ...` on the real MobileNet V1 0.75 checkpoint and real photos.

Every CLI run is a subprocess costing a few seconds (TensorFlow import, graph build, restore), so
all of them start once, two at a time, in the module fixture `runs`; each test waits only for the
runs it reads and checks several things on each.
"""
import concurrent.futures
import csv
import os
import re
import shutil
from pathlib import Path

from conftest import run_cli
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CAT_DOG = REPO / ".." / "shared" / "images" / "cat_dog.jpg"  # 640x480, top-1 tiger cat (282)
CAT = REPO / "images" / "cat.jpg"  # 451x300
CHECKPOINT = REPO / "checkpoints" / "mobilenet_v1_075" / "mobilenet_v1_0.75_224.ckpt"
OUTPUT_NAMES = ("{}_gradcam.png", "{}_gbp.png", "{}_guided_gradcam.png", "{}_panel.png", "{}.npz")
TF_CHATTER = re.compile(r"^[IWEF]\d{4} |oneDNN", re.MULTILINE)  # C++ log lines


def output_names(stem):
    return {name.format(stem) for name in OUTPUT_NAMES}


INDEX_NAMES = {"index.csv", "index.html"}  # every run's record, beside its outputs


def png_size(path):
    """(width, height) of a PNG, checking it is RGB."""
    with Image.open(path) as image:
        assert image.mode == "RGB", (path, image.mode)
        return image.size


def make_image_folder(folder):
    """Good photos (several modes, one EXIF-rotated) and three unreadable files."""
    folder.mkdir()
    shutil.copy(CAT, folder / "cat.jpg")
    shutil.copy(CAT_DOG, folder / "cat_dog.jpg")
    (folder / "bad1.jpg").write_bytes(b"")
    data = CAT.read_bytes()
    (folder / "bad2.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.png").write_text("not a picture\n")
    with Image.open(CAT) as cat:
        cat.convert("L").save(folder / "gray.png")
        rgba = cat.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(cat.size))
        rgba.save(folder / "rgba.png")
        cat.convert("CMYK").save(folder / "cmyk.jpg")
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
        cat.save(folder / "rotated.jpg", exif=exif)
    return folder


def write_other_network_checkpoint(folder):
    """A checkpoint with only MobileNet's logits weights: it fits no network."""
    import tensorflow.compat.v1 as tf

    with tf.Graph().as_default():
        weights = tf.get_variable("MobilenetV1/Logits/Conv2d_1c_1x1/weights", (1, 1, 768, 1000),
                                  initializer=tf.zeros_initializer())
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            tf.train.Saver([weights]).save(session, str(folder / "other.ckpt"))
    return folder


class Runs(dict):
    """name → future; indexing waits for that run and gives its CompletedProcess."""

    def __getitem__(self, name):
        return super().__getitem__(name).result()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    # Fail, not skip: the shared photos and the converted checkpoint are part of every setup
    # (`make test` converts the checkpoint before pytest runs).
    assert CAT_DOG.is_file(), f"shared photo missing: {CAT_DOG}"
    assert CAT.is_file(), f"photo missing: {CAT}"
    assert Path(str(CHECKPOINT) + ".index").is_file(), f"run `make checkpoint`: no {CHECKPOINT}"
    base = tmp_path_factory.mktemp("cli")
    folder = make_image_folder(base / "photos")
    other = write_other_network_checkpoint(base / "other_checkpoint")
    image = ["--image", CAT]
    commands = {  # slowest first: two run at a time
        "folder": ["--image", folder, "--label", "282"],
        "happy": ["--image", CAT_DOG, "--label", "282"],
        "counterfactual": ["--image", CAT_DOG, "--label", "tiger cat", "--counterfactual"],
        "two_labels": ["--image", CAT_DOG, "--label", "282", "--label", "bull mastiff",
                       "--outputs", "npz,panel"],
        "methods": ["--image", CAT_DOG, "--label", "243", "--methods",
                    "gradcam,gradcampp,xgradcam,layercam,hirescam"],
        "tabby_320x256": image + ["--label", "tabby", "--input_size", "320x256"],
        "unknown_layer": image + ["--layer", "Conv2d_99"],
        "wrong_depth": image + ["--network", "mobilenet_v1", "--checkpoint", CHECKPOINT.parent],
        "other_network": image + ["--checkpoint", other],
        "no_checkpoint": image + ["--checkpoint", base / "nowhere" / "model.ckpt"],
        "vgg_300": image + ["--network", "vgg_16", "--input_size", "300"],
        # These fail before TensorFlow loads (~0.1 s each).
        "label_1000": image + ["--label", "1000"],
        "label_-1": image + ["--label", "-1"],
        "unknown_name": image + ["--label", "not a class"],
        "ambiguous_name": image + ["--label", "crane"],
        "unknown_network": image + ["--network", "resnet_v9"],
        "missing_image": ["--image", base / "nope.jpg"],
        "no_image_flag": [],
        "bad_flag_value": image + ["--batch_size", "0"],
        "unknown_flag": ["--imag", CAT_DOG],
        "bad_outputs": image + ["--outputs", "png,jpeg"],
        "file_in_the_way/out": image,  # --output_dir under a file: not writable, even as root
    }
    (base / "file_in_the_way").write_text("")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        yield Runs({name: pool.submit(run_cli, args, base / name)
                    for name, args in commands.items()})


def load_npz(run, stem):
    with np.load(run.output_dir / (stem + ".npz")) as arrays:
        return dict(arrays)


def assert_clean_stderr(run):
    assert "Traceback" not in run.stderr, run.stderr
    assert not TF_CHATTER.search(run.stderr), run.stderr


# --- the happy path ---------------------------------------------------------------------------


def test_happy_path_prints_top5_and_writes_all_files(runs):
    run = runs["happy"]
    assert run.returncode == 0, run.stderr
    assert_clean_stderr(run)
    top5 = [line for line in run.stdout.splitlines() if "top-5:" in line]
    assert len(top5) == 1, run.stdout
    header = run.stdout.splitlines()[0]  # what ran, stated once before the results
    for fact in ("network: mobilenet_v1_075", "checkpoint ", "mobilenet_v1_0.75_224.ckpt",
                 "Grad-CAM layer Conv2d_13_pointwise", "preprocessing inception", "mode factual"):
        assert fact in header, (fact, header)
    assert top5[0].split("top-5: ")[1].startswith("tiger cat (282) "), top5[0]
    assert "bull mastiff (243)" in top5[0]
    assert "explained tiger cat (282)" in run.stdout
    assert set(os.listdir(run.output_dir)) == output_names("cat_dog") | INDEX_NAMES
    out = run.output_dir
    # A one-image run says where its files went.
    assert run.stdout.splitlines()[-1] == "wrote %s, %s" % (out / "cat_dog_*.png",
                                                            out / "cat_dog.npz"), run.stdout
    assert png_size(out / "cat_dog_gradcam.png") == (640, 480)  # overlaid on the whole photo
    assert png_size(out / "cat_dog_gbp.png") == (224, 224)
    assert png_size(out / "cat_dog_guided_gradcam.png") == (224, 224)
    panel_width, panel_height = png_size(out / "cat_dog_panel.png")
    assert panel_width > 4 * 224 and panel_height > 224


def test_happy_path_npz_holds_every_array(runs):
    arrays = load_npz(runs["happy"], "cat_dog")
    assert set(arrays) == {"logits", "label", "cam_lowres", "cam", "gbp", "guided_gradcam",
                           "image", "task"}
    assert str(arrays["task"]) == "classification"
    assert arrays["logits"].dtype == np.float32 and arrays["logits"].shape == (1000,)
    assert np.issubdtype(arrays["label"].dtype, np.integer) and arrays["label"] == 282
    assert int(np.argmax(arrays["logits"])) == 282
    cam_lowres, cam = arrays["cam_lowres"], arrays["cam"]
    assert cam_lowres.dtype == np.float32 and cam_lowres.shape == (7, 7)
    assert cam_lowres.min() >= 0 and cam_lowres.max() > 0
    assert cam.dtype == np.float32 and cam.shape == (224, 224)
    assert cam.min() >= 0 and cam.max() <= 1 and cam.max() > 0.99
    assert arrays["gbp"].shape == (224, 224, 3) and arrays["gbp"].dtype == np.float32
    assert np.abs(arrays["gbp"]).max() > 0
    np.testing.assert_allclose(arrays["guided_gradcam"], arrays["gbp"] * cam[..., None],
                               rtol=1e-5, atol=1e-8)
    assert arrays["image"].dtype == np.uint8 and arrays["image"].shape == (224, 224, 3)


# --- labels -----------------------------------------------------------------------------------


def test_class_names_resolve(runs):
    counterfactual, tabby = runs["counterfactual"], runs["tabby_320x256"]
    for run in (counterfactual, tabby):
        assert run.returncode == 0, run.stderr
        assert_clean_stderr(run)
    assert load_npz(counterfactual, "cat_dog_282_cf")["label"] == 282  # --label "tiger cat"
    assert load_npz(tabby, "cat")["label"] == 281  # --label tabby
    assert "explained tabby (281)" in tabby.stdout


def test_counterfactual_cam_differs_from_the_normal_one(runs):
    normal = load_npz(runs["happy"], "cat_dog")
    counterfactual = load_npz(runs["counterfactual"], "cat_dog_282_cf")
    assert "explained counterfactual tiger cat (282)" in runs["counterfactual"].stdout
    np.testing.assert_array_equal(counterfactual["image"], normal["image"])
    np.testing.assert_allclose(counterfactual["logits"], normal["logits"], rtol=1e-5, atol=1e-5)
    cam = counterfactual["cam"]
    assert cam.shape == (224, 224) and cam.min() >= 0 and cam.max() <= 1
    assert np.abs(cam - normal["cam"]).max() > 0.1


def test_several_labels_are_explained_in_one_run_into_their_own_files(runs):
    run = runs["two_labels"]
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(run.output_dir)) == [
        "cat_dog_243.npz", "cat_dog_243_panel.png", "cat_dog_282.npz", "cat_dog_282_panel.png",
        "index.csv", "index.html"]
    cat, dog = load_npz(run, "cat_dog_282"), load_npz(run, "cat_dog_243")
    assert (int(cat["label"]), int(dog["label"])) == (282, 243)
    # One photo in two rows of one batch: the same scores up to the order in which a CPU's
    # kernels sum each row (measured up to 4e-6 on AMD EPYC, 0 on CI's CPU): 12x margin.
    np.testing.assert_allclose(cat["logits"], dog["logits"], rtol=0, atol=5e-5)
    assert np.abs(cat["cam"] - dog["cam"]).max() > 0.1
    # The photo's top-5 once, then one line per explained label, then where the files went.
    photo = str(CAT_DOG)
    lines = run.stdout.splitlines()[1:]
    assert len(lines) == 4 and lines[0].startswith(photo + ": top-5: tiger cat (282) "), lines
    assert lines[1:3] == [photo + ": explained tiger cat (282)",
                          photo + ": explained bull mastiff (243)"], lines
    out = run.output_dir
    assert lines[3] == "wrote " + ", ".join(str(out / name) for name in (
        "cat_dog_282_panel.png", "cat_dog_282.npz", "cat_dog_243_panel.png",
        "cat_dog_243.npz")), lines


def test_the_cam_family_is_written_per_method(runs):
    run = runs["methods"]
    assert run.returncode == 0, run.stderr
    family = ("gradcampp", "xgradcam", "layercam", "hirescam")
    names = set(os.listdir(run.output_dir))
    for method in ("gradcam",) + family:
        assert {"cat_dog_%s.png" % method, "cat_dog_guided_%s.png" % method} <= names, names
    arrays = load_npz(run, "cat_dog")
    for method in family:
        lowres, cam, guided = (arrays[key] for key in (method + "_lowres", method,
                                                       "guided_" + method))
        assert lowres.shape == (7, 7) and cam.shape == (224, 224) and cam.max() == 1.0
        np.testing.assert_allclose(guided, arrays["gbp"] * cam[..., None], rtol=1e-5, atol=1e-8)
    # today's keys stay for Grad-CAM; HiResCAM equals it after MobileNet's average pool
    assert "gradcam_lowres" not in arrays and "cam_lowres" in arrays
    np.testing.assert_allclose(arrays["hirescam_lowres"], arrays["cam_lowres"],
                               atol=1e-5 * arrays["cam_lowres"].max())
    assert not np.allclose(arrays["layercam_lowres"], arrays["cam_lowres"], rtol=1e-2)
    width, _ = png_size(run.output_dir / "cat_dog_panel.png")
    assert width > 12 * 224  # original, GBP and two tiles per method


# --- input size -------------------------------------------------------------------------------


def test_input_size_sets_the_map_sizes(runs):
    run = runs["tabby_320x256"]
    arrays = load_npz(run, "cat")
    assert arrays["cam"].shape == (320, 256)
    assert arrays["cam_lowres"].shape == (10, 8)
    assert arrays["image"].shape == (320, 256, 3)
    assert arrays["gbp"].shape == (320, 256, 3)
    assert png_size(run.output_dir / "cat_gradcam.png") == (451, 300)
    assert png_size(run.output_dir / "cat_gbp.png") == (256, 320)


# --- a folder of good and bad files -----------------------------------------------------------

BAD_FILES = ("bad1.jpg", "bad2.jpg", "notes.png")
GOOD_STEMS = ("cat", "cat_dog", "cmyk", "gray", "rgba", "rotated")


def test_folder_run_reports_each_bad_file_once_and_goes_on(runs):
    run = runs["folder"]
    assert run.returncode == 1, run.stderr
    assert_clean_stderr(run)
    progress = [line for line in run.stderr.splitlines() if line.startswith("progress:")]
    assert progress and progress[-1].startswith("progress: 9/9 images"), run.stderr
    lines = [line for line in run.stderr.splitlines() if not line.startswith("progress:")]
    assert all(line.startswith("error:") for line in lines), run.stderr
    for name in BAD_FILES:
        assert len([line for line in lines if name in line]) == 1, (name, run.stderr)
    assert len(lines) == len(BAD_FILES) + 1, run.stderr
    assert "3 of 9 inputs failed" in lines[-1], lines[-1]
    assert set(os.listdir(run.output_dir)) == set().union(*map(output_names, GOOD_STEMS),
                                                          INDEX_NAMES)
    assert run.stdout.count("top-5:") == len(GOOD_STEMS), run.stdout
    assert run.stdout.count("explained tiger cat (282)") == len(GOOD_STEMS), run.stdout
    assert run.stdout.splitlines()[-1] == (
        "wrote the outputs of 6 images into %s (index.html lists them)" % run.output_dir)


def test_folder_run_records_every_input_in_its_index(runs):
    from guided_gradcam.outputs.run_index import read_entries

    out = runs["folder"].output_dir
    with open(out / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 9  # one per input
    rows = {row["stem"]: row for row in rows}
    assert set(rows) == set(GOOD_STEMS) | {Path(name).stem for name in BAD_FILES}
    for stem in GOOD_STEMS:
        assert (rows[stem]["class_index"], rows[stem]["class_name"]) == ("282", "tiger cat")
        assert set(rows[stem]["files"].split(";")) == output_names(stem) and not rows[stem]["error"]
    for name in BAD_FILES:
        row = rows[Path(name).stem]
        assert row["input"].endswith(name) and name in row["error"] and not row["files"]
    assert len(read_entries(out / "index.csv")) == 9  # what index.html shows
    assert "cat_dog_panel.png" in (out / "index.html").read_text()


def test_folder_run_maps_overlays_onto_each_upright_photo(runs):
    out = runs["folder"].output_dir
    for stem in ("cat", "cmyk", "gray", "rgba"):
        assert png_size(out / f"{stem}_gradcam.png") == (451, 300), stem
    assert png_size(out / "rotated_gradcam.png") == (300, 451)  # EXIF orientation 6
    assert png_size(out / "cat_dog_gradcam.png") == (640, 480)
    assert load_npz(runs["folder"], "gray")["image"].shape == (224, 224, 3)


def test_batch_of_many_matches_a_batch_of_one(runs):
    single = load_npz(runs["happy"], "cat_dog")  # batch of 1
    batched = load_npz(runs["folder"], "cat_dog")  # batch of 6
    np.testing.assert_array_equal(batched["image"], single["image"])
    assert batched["label"] == single["label"] == 282
    for key in ("logits", "cam_lowres", "cam", "gbp", "guided_gradcam"):
        scale = float(np.abs(single[key]).max())  # gbp is ~0.03, logits ~16
        np.testing.assert_allclose(batched[key], single[key], rtol=1e-4, atol=1e-4 * scale,
                                   err_msg=key)


# --- fatal input: one error line, nothing written ---------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("label_1000", ["label 1000 is out of range", "0..999"]),
    ("label_-1", ["label -1 is out of range"]),
    ("unknown_name", ["unknown class name 'not a class'"]),
    ("ambiguous_name", ["ambiguous", "134", "517"]),
    ("unknown_network", ["unknown network 'resnet_v9'", "mobilenet_v1_075"]),
    ("missing_image", ["no such file or folder", "nope.jpg"]),
    ("no_image_flag", ["--image"]),
    ("wrong_depth", ["does not fit network mobilenet_v1", "other shapes", "[24] != [32]"]),
    ("other_network", ["does not fit network mobilenet_v1_075", "missing",
                       "MobilenetV1/Conv2d_0/weights"]),
    ("no_checkpoint", ["cannot read checkpoint", "nowhere"]),
    ("vgg_300", ["vgg_16", "224x224"]),
    ("bad_flag_value", ["--batch_size", "not a positive integer"]),
    ("unknown_flag", ["Unknown command line flag 'imag'"]),
    ("bad_outputs", ["--outputs", "png,jpeg"]),
    ("file_in_the_way/out", ["cannot write to --output_dir", "file_in_the_way"]),
])
def test_fatal_input_is_one_error_line(runs, name, expected):
    run = runs[name]
    assert run.returncode != 0, run.stdout
    assert_clean_stderr(run)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert run.stdout == ""
    assert not run.output_dir.exists() or not os.listdir(run.output_dir)


def test_unknown_layer_lists_every_layer_one_a_line_with_its_size_nearest_first(runs):
    run = runs["unknown_layer"]
    assert run.returncode == 1, run.stdout
    assert_clean_stderr(run)
    first, *listing = run.stderr.splitlines()
    assert first.startswith("error: unknown layer 'Conv2d_99'; the 28 valid layers "), first
    rows = [re.fullmatch(r"  (\S+) +(\d+)x(\d+)x(\d+)", line) for line in listing]
    assert all(rows), listing
    sizes = {row[1]: tuple(int(row[i]) for i in (2, 3, 4)) for row in rows}
    # MobileNet V1 0.75 at 224: stride 2 at blocks 0, 2, 4, 6 and 12; depth 0.75 x 32..1024
    expected = {"Conv2d_0": (112, 112, 24), "Conv2d_1_pointwise": (112, 112, 48),
                "Conv2d_2_depthwise": (56, 56, 48), "Conv2d_9_pointwise": (14, 14, 384),
                "Conv2d_12_depthwise": (7, 7, 384), "Conv2d_13_pointwise": (7, 7, 768)}
    assert len(sizes) == len(listing) == 28 and expected.items() <= sizes.items(), sizes
    names = list(sizes)  # nearest first: the 9th block among the first three, the 13th later
    assert {"Conv2d_9_depthwise", "Conv2d_9_pointwise"} <= set(names[:3]), names
    assert names.index("Conv2d_13_pointwise") > 3, names
    assert run.stdout == "" and not os.listdir(run.output_dir)


def _explanation(probabilities, label=0, counterfactual=False, cam_lowres=None):
    from guided_gradcam.explanation import Explanation

    maps = np.zeros((4, 4), np.float32)
    probabilities = np.asarray(probabilities, np.float32)
    return Explanation(
        label=label, logits=np.log(probabilities), probabilities=probabilities,
        cam_lowres=maps[::2, ::2] if cam_lowres is None else cam_lowres, cam=maps,
        gbp=np.zeros((4, 4, 3), np.float32), guided_gradcam=np.zeros((4, 4, 3), np.float32),
        image=np.zeros((4, 4, 3), np.uint8), counterfactual=counterfactual,
        class_names=tuple("class %d" % i for i in range(len(probabilities))))


def test_result_lines_say_top_k_once_per_image_and_what_an_all_zero_map_means(capsys):
    from guided_gradcam.cli.reporting import ResultPrinter
    from guided_gradcam.labels import LabelSpace
    from guided_gradcam.cli.pipeline import Job, Target

    labels = LabelSpace(2)
    printer = ResultPrinter("features")
    alone = Job("a.png", "a")
    printer(alone, _explanation([0.25, 0.75], label=1, cam_lowres=np.ones((2, 2))), labels)
    two = Job("b.png", "b", (Target(0, "_0"), Target(1, "_1")))
    for label in (0, 1):  # a factual and a counterfactual all-zero map
        printer(two, _explanation([0.625, 0.375], label, counterfactual=label == 1), labels)
    assert capsys.readouterr().out.splitlines() == [
        "a.png: top-2: class 1 (1) 0.750, class 0 (0) 0.250; explained class 1 (1)",
        "b.png: top-2: class 0 (0) 0.625, class 1 (1) 0.375",
        "b.png: explained class 0 (0)",
        "note: b.png: the Grad-CAM map is all zero: no positive evidence for class 0 at layer "
        "features",
        "b.png: explained counterfactual class 1 (1)",
        "note: b.png: the counterfactual Grad-CAM map is all zero: nothing speaks against "
        "class 1 at layer features"]


# --- atomic writes ----------------------------------------------------------------------------


def test_no_temporary_files_are_left(runs):
    written = set()
    for name in list(dict.keys(runs)):
        output_dir = runs[name].output_dir
        if output_dir.exists() and os.listdir(output_dir):
            leftovers = [f for f in os.listdir(output_dir)
                         if f.startswith(".") or f.endswith(".tmp")]
            assert not leftovers, (name, leftovers)
            written.add(name)
    assert written == {"happy", "counterfactual", "two_labels", "methods", "tabby_320x256",
                       "folder"}


def test_output_stems_never_collide():
    from guided_gradcam.cli.pipeline import unique_stems as _unique_stems

    stems = _unique_stems(["a/cat.jpg", "a/cat.png", "a/cat_2.jpg", "b/cat.jpg"])
    assert len(set(stems)) == 4 and stems[0] == "cat"
