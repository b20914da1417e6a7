"""End to end: `python evaluate.py ...` on the real MobileNet V1 0.75 checkpoint, the shipped
photos and their hand-drawn VOC boxes.

Every run is a subprocess costing seconds (TensorFlow import, graph build, restore, then the
measurements), so all of them start once, two at a time, in the module fixture `runs`, slowest
first; each test waits only for the runs it reads. The settings are cheap (4x4 occlusion
patches, 5 curve points); the sanity checks (56 randomisation steps) run in the shared run only.
"""
import concurrent.futures
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags
from PIL import Image

from guided_gradcam.cli import explain as cli

REPO = Path(__file__).resolve().parents[2]
CAT = REPO / "images" / "cat.jpg"
COFFEE = REPO / "images" / "coffee.jpg"
BOXES = REPO / "images" / "boxes"
CHECKPOINT = REPO / "checkpoints" / "mobilenet_v1_075" / "mobilenet_v1_0.75_224.ckpt"
CHEAP = ["--patch", "56", "--stride", "56", "--step", "12544"]  # 16 patches, 5 curve points
MAPS = ("gradcam", "gbp", "guided_gradcam", "counterfactual", "guided_counterfactual")
FACTUAL = MAPS[:3]
BLOCKS = 28  # MobileNet V1's blocks: Conv2d_0, 13 depthwise + 13 pointwise, the logits
# The evaluated classes, in row order: each photo's top-1, then its boxes' other classes.
CLASSES = [("cat", "285", "Egyptian cat"),  # top-1
           ("cat", "282", "tiger cat"),  # cat.xml
           ("coffee", "967", "espresso"),  # top-1 and coffee.xml
           ("coffee", "968", "cup")]  # coffee.xml
GROUND_TRUTH = {("cat", "282"), ("coffee", "967"), ("coffee", "968")}
TF_CHATTER = re.compile(r"^[IWEF]\d{4} |oneDNN", re.MULTILINE)  # C++ log lines
FLAG_LINE = re.compile(r"^  --(?:\[no\])?(\w+)(?:, -\S)? \(default: ([^;)]*)", re.MULTILINE)
NOT_FOR_EVALUATION = {"outputs", "skip_existing", "counterfactual", "region", "mask"}


def run_evaluate(args, output_dir, extra_env=None):
    """evaluate.py with `args`, writing into output_dir, as a user runs it: TF's own log level
    left unset, so the CLI's quieting is what keeps stderr clean. OpenBLAS gets one thread:
    two runs share the two cores, and its threads spinning against each other made the sanity
    checks' correlations (numpy dot products) twice as slow."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GUIDED_GRADCAM_TF_LOGS", "TF_CPP_MIN_LOG_LEVEL")}
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.update(extra_env or {})
    completed = subprocess.run(
        [sys.executable, "evaluate.py", *map(str, args), "--output_dir", str(output_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    completed.output_dir = Path(output_dir)
    return completed


class Runs(dict):
    """name → future; indexing waits for that run and gives its CompletedProcess."""

    def __getitem__(self, name):
        return super().__getitem__(name).result()


def broken_boxes(folder):
    """A copy of images/boxes whose cat.xml is cut short (not XML), and whose coffee.xml has
    the cup's box on the left border written 0-based (xmin 0), as LabelImg and CVAT write it."""
    shutil.copytree(BOXES, folder)
    text = (folder / "cat.xml").read_text()
    (folder / "cat.xml").write_text(text[:text.index("</object>")])
    text = (folder / "coffee.xml").read_text()
    cup = text.rindex("<xmin>173</xmin>")
    (folder / "coffee.xml").write_text(text[:cup] + "<xmin>0</xmin>" + text[cup + 16:])
    return folder


def broken_scipy(folder):
    """A folder that, first on PYTHONPATH, makes `import scipy` fail for real, as it does
    after `pip install guided-gradcam` without the extra (nothing in the venv is touched)."""
    (folder / "scipy").mkdir(parents=True)
    (folder / "scipy" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'scipy'\", name='scipy')\n")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    for path in (CAT, COFFEE, BOXES / "cat.xml", BOXES / "coffee.xml"):
        assert path.is_file(), f"missing: {path}"
    assert Path(str(CHECKPOINT) + ".index").is_file(), f"run `make checkpoint`: no {CHECKPOINT}"
    base = tmp_path_factory.mktemp("evaluate")
    photos = ["--image", "images/cat.jpg", "--image", "images/coffee.jpg"]  # as typed in REPO
    shutil.copy(CAT, base / "stray.jpg")  # a photo without a box file
    # Digital clock (530): what MobileNet calls a black image, p 0.05, against 7e-9 for the
    # cat photo: its black deletion baseline alone scores above the photo.
    same = ["--image", "images/cat.jpg", "--label", "282", "--label", "285", "--label", "530",
            "--metrics", "faithfulness,deletion", "--baseline", "deletion=black",
            "--noplots"] + CHEAP
    cat = ["--image", "images/cat.jpg"]
    commands = {  # slowest first: two run at a time
        "shared": photos + ["--boxes", "images/boxes"] + CHEAP,  # every metric, sanity included
        "broken_xml": photos + ["--image", base / "stray.jpg", "--boxes",
                                broken_boxes(base / "broken_boxes"), "--metrics", "localisation"],
        "same_1": same,
        "same_2": same,
        # These fail before the network is built (~1 s each); were they to run, cheaply.
        "unknown_metric": cat + ["--metrics", "faithfulness,beauty", "--noplots"] + CHEAP,
        "missing_boxes": cat + ["--boxes", base / "no_such_folder", "--metrics",
                                "localisation", "--noplots"],
        "outputs_flag": cat + ["--outputs", "png", "--metrics", "faithfulness", "--noplots"]
        + CHEAP,
        "bad_baseline": cat + ["--metrics", "deletion", "--baseline", "deletion=purple",
                               "--noplots"] + CHEAP,
        "no_image": ["--metrics", "faithfulness", "--noplots"],
        "no_scipy": cat + ["--metrics", "deletion"] + CHEAP,
    }
    path = [str(broken_scipy(base / "no_scipy_path")), os.environ.get("PYTHONPATH")]
    environments = {"no_scipy": {"PYTHONPATH": os.pathsep.join(filter(None, path))},
                    # a line after every photo, however fast the machine
                    "shared": {"GUIDED_GRADCAM_PROGRESS_INTERVAL": "0"}}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        yield Runs({name: pool.submit(run_evaluate, args, base / name, environments.get(name))
                    for name, args in commands.items()})


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_clean_stderr(run):
    assert "Traceback" not in run.stderr, run.stderr
    assert not TF_CHATTER.search(run.stderr), run.stderr


def page_data(path, block):
    """The JSON data block `block` of a run's index.html."""
    page = Path(path).read_text(encoding="utf-8")
    start = page.index('<script type="application/json" id="%s">' % block)
    return json.loads(page[page.index(">", start) + 1:page.index("</script>", start)])


def console_numbers(stdout):
    """{(input, class index): {metric: {map: text}}} from each photo's line on the console:
    `images/cat.jpg: tiger cat (282): ρ gradcam=0.408 ...; del ...; ins ... | ...`."""
    numbers, metric = {}, {"ρ": "faithfulness", "del": "deletion", "ins": "insertion"}
    for line in stdout.splitlines():
        match = re.match(r"(images/\w+\.jpg): (.*)", line)
        if not match:
            continue
        for part in match.group(2).split(" | "):
            name, index, rest = re.match(r"(.*) \((\d+)\): (.*)", part).groups()
            for group in rest.split("; "):
                short, *pairs = group.split(" ")
                if short in metric:
                    numbers.setdefault((match.group(1), index), {})[metric[short]] = dict(
                        pair.split("=") for pair in pairs)
    return numbers


def assert_png(path):
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG", path
        image.load()  # the whole file decodes
        assert min(image.size) > 10, (path, image.size)


# --- the shared run: both photos, their boxes, every metric ------------------------------------


def test_evaluation_csv_has_one_row_per_evaluated_class_in_range(runs):
    run = runs["shared"]
    assert run.returncode == 0, run.stderr
    assert_clean_stderr(run)
    assert "error" not in run.stderr, run.stderr
    rows = read_csv(run.output_dir / "evaluation.csv")
    assert [(row["stem"], row["class_index"], row["class_name"]) for row in rows] == CLASSES
    assert list(rows[0]) == (
        ["input", "stem", "class_index", "class_name", "probability", "top1_localised",
         "top5_localised", "error", "baseline_deletion", "baseline_insertion"]
        + ["%s_%s" % (metric, name) for metric in ("faithfulness", "deletion", "insertion",
                                                   "pointing") for name in MAPS])
    for row in rows:
        where = (row["stem"], row["class_index"])
        assert row["input"] == "images/%s.jpg" % row["stem"] and row["error"] == "", row
        # The defaults, as RISE: deletion to a constant (grey), insertion from the blur.
        assert (row["baseline_deletion"], row["baseline_insertion"]) == ("grey", "blur"), row
        assert 0 < float(row["probability"]) <= 1, row
        for name in MAPS:
            rho = float(row["faithfulness_" + name])
            if name in FACTUAL:
                assert -1 <= rho <= 1, (where, name, rho)
            else:  # an all-zero counterfactual map ranks nothing: NaN, said so, never a number
                assert math.isnan(rho) or -1 <= rho <= 1, (where, name, rho)
            for mode in ("deletion", "insertion"):  # AUC of probabilities over [0, 1]
                auc = float(row["%s_%s" % (mode, name)])
                if name in FACTUAL:
                    assert 0 <= auc <= 1, (where, name, mode, row)
                else:  # an all-zero map orders no pixels: NaN exactly where ρ is NaN
                    assert math.isnan(auc) == math.isnan(rho), (where, name, mode, row)
                    assert math.isnan(auc) or 0 <= auc <= 1, (where, name, mode, row)
            pointing = row["pointing_" + name]
            if where in GROUND_TRUTH and name in FACTUAL:
                assert pointing in ("true", "false"), (where, name, pointing)
            else:  # not a class of the boxes, or a counterfactual map: no pointing game
                assert pointing == "", (where, name, pointing)
        for k in ("top1", "top5"):  # each photo's top-1 / top-5 Grad-CAM boxes
            assert row[k + "_localised"] in ("true", "false"), (where, k, row)
    for stem in ("cat", "coffee"):  # one verdict per photo, on each of its rows
        assert len({(row["top1_localised"], row["top5_localised"])
                    for row in rows if row["stem"] == stem}) == 1
    assert len({row["deletion_gradcam"] for row in rows}) == len(rows)  # really measured


def test_sanity_csv_has_both_randomisations_of_every_block_for_each_class(runs):
    run = runs["shared"]
    assert run.returncode == 0, run.stderr
    rows = read_csv(run.output_dir / "sanity.csv")
    assert list(rows[0]) == ["input", "stem", "class_index", "mode", "step", "block", "map",
                             "spearman_abs", "spearman_signed", "ssim", "hog"]
    assert len(rows) == len(CLASSES) * 2 * BLOCKS * len(FACTUAL)
    for stem, class_index, _ in CLASSES:
        mine = [row for row in rows if (row["stem"], row["class_index"]) == (stem, class_index)]
        assert len(mine) == 2 * BLOCKS * len(FACTUAL), (stem, class_index)
        for mode in ("cascading", "independent"):
            steps = [row for row in mine if row["mode"] == mode]
            assert sorted({int(row["step"]) for row in steps}) == list(range(1, BLOCKS + 1))
            for step in range(1, BLOCKS + 1):
                assert sorted(row["map"] for row in steps if row["step"] == str(step)) == sorted(
                    FACTUAL), (stem, class_index, mode, step)
            blocks = {int(row["step"]): row["block"] for row in steps}
            assert len(set(blocks.values())) == BLOCKS  # one block per step
            assert blocks[1] == "MobilenetV1/Logits/Conv2d_1c_1x1"  # from the logits down
    nan_columns = set()
    for row in rows:
        values = {key: float(row[key]) for key in ("spearman_abs", "spearman_signed", "ssim",
                                                     "hog")}
        undefined = {key for key, value in values.items() if math.isnan(value)}
        # Only a constant map (a randomised Grad-CAM all zero after its ReLU) has no rank or
        # HOG correlation; its SSIM is still a number. Every other value is a number in range.
        assert undefined in (set(), {"spearman_abs", "spearman_signed", "hog"}), row
        assert not undefined or row["map"] != "gbp", row
        nan_columns |= undefined
        for key, value in values.items():
            assert key in undefined or -1 - 1e-9 <= value <= 1 + 1e-9, (key, row)
    finite = [row for row in rows if not math.isnan(float(row["spearman_abs"]))]
    assert len(finite) > len(rows) * 0.8, "mostly NaN: %d of %d" % (len(finite), len(rows))


def test_plots_panels_and_the_index_page_with_the_metrics(runs):
    run = runs["shared"]
    assert run.returncode == 0, run.stderr
    out = run.output_dir
    stems = ["%s_%s" % (stem, class_index) for stem, class_index, _ in CLASSES]
    for stem in stems:
        assert_png(out / "plots" / (stem + "_curves.png"))
        assert_png(out / (stem + "_panel.png"))
    for mode in ("cascading", "independent"):
        assert_png(out / "plots" / ("sanity_%s.png" % mode))

    index = read_csv(out / "index.csv")
    assert [row["stem"] for row in index] == stems
    for row, (_, class_index, class_name) in zip(index, CLASSES):
        assert (row["class_index"], row["class_name"], row["counterfactual"], row["error"]) == (
            class_index, class_name, "false", "")
        assert row["files"].split(";") == [row["stem"] + "_panel.png",
                                           "plots/%s_curves.png" % row["stem"]]
    entries = page_data(out / "index.html", "entries")
    evaluation = {"%s_%s" % (row["stem"], row["class_index"]): row
                  for row in read_csv(out / "evaluation.csv")}
    console = console_numbers(run.stdout)
    assert [entry["stem"] for entry in entries] == stems
    for entry in entries:  # each card shows its own class's numbers, links its curves
        row = evaluation[entry["stem"]]
        assert entry["curves"] == "plots/%s_curves.png" % entry["stem"]
        metrics = entry["metrics"]
        pointing = (row["stem"], row["class_index"]) in GROUND_TRUTH  # a column only then
        assert metrics["header"] == ["map", "ρ", "del ↓", "ins ↑"] + (
            ["pointing"] if pointing else [])
        assert [cells[0] for cells in metrics["rows"]] == list(MAPS)  # deletion for every map
        for name, *cells in metrics["rows"]:
            for metric, shown in zip(("faithfulness", "deletion", "insertion"), cells):
                value = float(row["%s_%s" % (metric, name)])  # 3 decimals, "-" for NaN
                assert shown == ("-" if math.isnan(value) else "%.3f" % value), (name, metric)
                if name in FACTUAL:  # the same string as the photo's line on the console
                    assert shown == console[row["input"], row["class_index"]][metric][name]
            assert cells[3:] == ([{"true": "hit", "false": "miss", "": ""}[
                row["pointing_" + name]]] if pointing else [])
        assert metrics["localised"] == "top1 %s, top5 %s" % tuple(
            {"true": "yes", "false": "no"}[row[k + "_localised"]] for k in ("top1", "top5"))


def test_the_summary_table_names_every_map(runs):
    run = runs["shared"]
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["map"])
    for metric in ("faithful", "deletion", "insertion", "pointing"):
        assert metric in lines[header], lines[header]
    table = lines[header + 1:header + 1 + len(MAPS)]
    assert [line.split()[0] for line in table] == list(MAPS), run.stdout
    for line in table[:3]:  # the factual maps: a number in every column
        assert "-" not in line.split()[1:], line
    assert any(line.startswith("localisation error top1: ") for line in lines), run.stdout
    for mode in ("cascading", "independent"):
        start = next(i for i, line in enumerate(lines) if line.startswith("sanity (%s" % mode))
        assert [line.split()[0] for line in lines[start + 1:start + 4]] == list(FACTUAL)
    for stem in ("cat", "coffee"):  # each photo's own line before the table
        assert any(line.startswith("images/%s.jpg: " % stem) for line in lines[:header])

    # The run's page opens with the same table and lines, cell for cell, and the settings.
    data = page_data(run.output_dir / "index.html", "run-data")
    summary = data["summary"]
    assert summary["header"] == ["map", "faithful ρ", "deletion ↓", "insertion ↑", "pointing"]
    assert " ".join(summary["header"]).split() == lines[header].split()
    assert summary["rows"] == [line.split() for line in table]
    assert summary["lines"] == lines[header + 1 + len(MAPS):]  # the summary ends the output
    settings = dict(data["settings"])
    assert list(settings)[:5] == ["network", "checkpoint", "input", "preprocessing",
                                  "Grad-CAM layer"]
    assert (settings["network"], settings["input"], settings["Grad-CAM layer"]) == (
        "mobilenet_v1_075 (classification)", "224x224x3", "Conv2d_13_pointwise")
    assert (settings["deletion"], settings["insertion"]) == (
        "to grey (pixels 127.5)", "from blur (Gaussian 11x11, sigma 5)")


def test_the_run_header_names_the_baselines_and_a_folder_shows_its_progress(runs):
    run = runs["shared"]
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1] == (
        "evaluation: metrics faithfulness,deletion,localisation,sanity; occlusion patch 56, "
        "stride 56; deletion to grey (pixels 127.5); insertion from blur (Gaussian 11x11, "
        "sigma 5); step 12544 pixels; boxes images/boxes; pointing tolerance 15 photo pixels; "
        "sanity cascading and independent randomisation, seed 0; batch size 16")
    # inference.py's progress line on stderr (its interval set to 0 for this run): after the
    # first photo, then done.
    progress = [line for line in run.stderr.splitlines() if line.startswith("progress: ")]
    assert len(progress) == 2, run.stderr
    assert re.fullmatch(r"progress: 1/2 images, \d+\.\d images/s, \d\d:\d\d:\d\d left",
                        progress[0]), progress
    assert re.fullmatch(r"progress: 2/2 images, \d+\.\d images/s, done in \d+\.\d\d s",
                        progress[1]), progress
    assert run.stderr.splitlines() == progress  # nothing else on stderr
    other = runs["same_1"]
    assert "; deletion to black (pixels 0); insertion from blur (Gaussian 11x11, sigma 5); " in (
        other.stdout.splitlines()[1])
    assert not any(line.startswith("progress") for line in other.stderr.splitlines())  # 1 photo


def test_all_zero_maps_are_noted_and_their_summary_rows_explained(runs):
    """As inference.py does: a note for each all-zero counterfactual map (NaN in the CSV), here
    every class's, so the summary's counterfactual rows are '-' with a note saying why."""
    run = runs["shared"]
    assert run.returncode == 0, run.stderr
    rows = read_csv(run.output_dir / "evaluation.csv")
    expected = ["note: %s: the counterfactual Grad-CAM map of %s (%s) is all zero: nothing "
                "speaks against it at layer Conv2d_13_pointwise; its numbers and its guided "
                "map's are NaN (- in the summary)" % (row["input"], row["class_name"],
                                                      row["class_index"])
                for row in rows if math.isnan(float(row["deletion_counterfactual"]))]
    notes = [line for line in run.stdout.splitlines() if "is all zero" in line]
    assert notes == expected and len(expected) == len(CLASSES), run.stdout
    for line in run.stdout.splitlines():
        if line.split()[:1] in (["counterfactual"], ["guided_counterfactual"]):
            assert line.split()[1:] == ["-"] * 4, line
    assert ("note: - for counterfactual, guided_counterfactual: the map was all zero for every "
            "evaluated class (nothing speaks against the class at this layer): it ranks no "
            "pixels, NaN in evaluation.csv") in run.stdout.splitlines()


def test_a_baseline_scored_above_the_photo_is_one_warning_line(runs):
    """--baseline deletion=black keeps insertion's blur; the model scores a black image as a
    digital clock far above the cat photo: one warning line, its numbers the CSV's."""
    run = runs["same_1"]
    assert run.returncode == 0, run.stderr
    rows = {row["class_index"]: row for row in read_csv(run.output_dir / "evaluation.csv")}
    assert {(row["baseline_deletion"], row["baseline_insertion"]) for row in rows.values()} == {
        ("black", "blur")}
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings and run.stderr.splitlines() == warnings, run.stderr
    deletion = re.fullmatch(
        r"warning: images/cat\.jpg: the black deletion baseline alone scores digital clock "
        r"\(530\) (\S+), above the photo's (\S+): deletion AUC says more of the baseline than "
        r"of the maps \(--baseline deletion=NAME\)", warnings[0])
    assert deletion, warnings
    alone, photo = map(float, deletion.groups())
    assert alone > photo
    # 3 significant digits of the photo's probability (the CSV's from another batch: rel 5e-3)
    assert photo == pytest.approx(float(rows["530"]["probability"]), rel=5e-3)
    assert all("digital clock (530)" in line for line in warnings), warnings  # not the cats


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, words", [
    ("unknown_metric", ["--metrics", "beauty"]),
    ("missing_boxes", ["--boxes", "no_such_folder"]),
    ("outputs_flag", ["--outputs", "not a flag of the evaluation"]),
    ("bad_baseline", ["--baseline", "deletion=NAME,insertion=NAME", "zero, black, grey, mean, "
                      "blur", "'deletion=purple'"]),
    ("no_image", ["--image"]),
])
def test_bad_input_is_a_one_line_error(runs, name, words):
    run = runs[name]
    assert run.returncode != 0, (run.stdout, run.stderr)
    assert_clean_stderr(run)
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr
    for word in words:
        assert word in run.stderr, (word, run.stderr)
    assert run.stdout == ""
    assert not run.output_dir.exists() or not os.listdir(run.output_dir)  # refused before work


def test_without_the_extra_one_line_names_it(runs):
    """`import scipy` fails (a package on PYTHONPATH that raises, as a missing one does): one
    line naming the extra to install, exit code 1, before TensorFlow or any work."""
    run = runs["no_scipy"]
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert run.stderr == ("error: the evaluation needs SciPy, scikit-image and matplotlib: "
                          "pip install 'guided-gradcam[evaluate]' (No module named 'scipy')\n")
    assert run.stdout == ""
    assert not run.output_dir.exists() or not os.listdir(run.output_dir)


def test_a_broken_annotation_costs_only_its_photo(runs):
    run = runs["broken_xml"]
    assert run.returncode == 1, run.stderr
    assert_clean_stderr(run)
    errors = [line for line in run.stderr.splitlines() if not line.startswith("progress: ")]
    assert all(line.startswith("error: ") for line in errors), run.stderr
    about_cat = [line for line in errors if "cat.xml" in line]
    assert len(about_cat) == 1, run.stderr
    assert str(Path("broken_boxes") / "cat.xml") in about_cat[0]
    assert errors[-1] == "error: 1 of 3 inputs failed", run.stderr
    rows = read_csv(run.output_dir / "evaluation.csv")
    assert [(row["stem"], row["class_index"]) for row in rows] == [
        ("cat", ""), ("coffee", "967"), ("coffee", "968"), ("stray", "285")]
    assert "cat.xml" in rows[0]["error"]
    for row in rows[1:3]:  # the other photo fully measured
        assert row["error"] == "" and row["top1_localised"] in ("true", "false"), row
        assert all(row["pointing_" + name] in ("true", "false") for name in FACTUAL), row
    # The photo without a box file: its top-1 only, no localisation or pointing.
    assert all(value == "" for key, value in rows[3].items() if key.endswith("localised")
               or key.startswith("pointing_")), rows[3]
    index = read_csv(run.output_dir / "index.csv")
    assert [(row["stem"], bool(row["error"])) for row in index] == [
        ("cat", True), ("coffee_967", False), ("coffee_968", False), ("stray_285", False)]
    # The 0-based border box is read, with one note, and coffee is measured; the photo
    # without a box file is said once, at the end.
    notes = [line for line in run.stdout.splitlines() if line.startswith("note: ")]
    assert notes == ["note: annotation %s: object 2 ('n07930864') starts at xmin 0 ymin 19: "
                     "read as the photo's first pixel (VOC pixels are 1-based)"
                     % (run.output_dir.parent / "broken_boxes" / "coffee.xml"),
                     "note: 1 of 2 photos had no box file in %s (<stem>.xml): no ground-truth "
                     "classes, localisation or pointing game for them"
                     % (run.output_dir.parent / "broken_boxes")], run.stdout


# --- help and determinism ----------------------------------------------------------------------


def test_help_lists_the_evaluations_flags_and_the_shared_model_flags():
    result = subprocess.run([sys.executable, "evaluate.py", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python evaluate.py --image PATH"), result.stdout
    listed = dict(FLAG_LINE.findall(result.stdout))
    own = ["boxes", "metrics", "patch", "stride", "step", "seed", "tolerance", "plots"]
    shared = [flag.name for flag in flags.FLAGS.get_flags_for_module(cli.__name__)
              if flag.name not in NOT_FOR_EVALUATION]
    assert {"image", "label", "network", "model", "checkpoint", "layer", "batch_size",
            "output_dir"} <= set(shared)
    assert [name for name in listed if name in shared] == shared  # in definition order
    assert set(own) <= set(listed), sorted(set(own) - set(listed))
    assert not NOT_FOR_EVALUATION & set(listed), NOT_FOR_EVALUATION & set(listed)
    assert "verbosity" not in listed and "helpfull" not in listed  # no absl flags
    assert (listed["output_dir"], listed["metrics"], listed["plots"], listed["baseline"]) == (
        "evaluation", "faithfulness,deletion,localisation,sanity", "true",
        "deletion=grey,insertion=blur")
    # What it writes (never an .npz), and the extra it needs.
    assert ".npz" not in result.stdout, result.stdout
    output_dir = result.stdout[result.stdout.index("  --output_dir"):].split("\n  --")[0]
    assert "evaluation.csv" in output_dir and "index.html" in output_dir, output_dir
    assert "pip install 'guided-gradcam[evaluate]'" in result.stdout

def test_the_same_arguments_give_a_byte_identical_evaluation_csv(runs):
    first, second = runs["same_1"], runs["same_2"]
    for run in (first, second):
        assert run.returncode == 0, run.stderr
    data = (first.output_dir / "evaluation.csv").read_bytes()
    assert data == (second.output_dir / "evaluation.csv").read_bytes()
    rows = read_csv(first.output_dir / "evaluation.csv")
    assert [row["class_index"] for row in rows] == ["282", "285", "530"]
    assert all(row["faithfulness_gradcam"] and row["insertion_gbp"] for row in rows)
    assert all(row["pointing_gradcam"] == "" for row in rows)  # no boxes, no pointing game
