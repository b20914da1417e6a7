"""The evaluation at dataset scale, end to end on the real MobileNet V1 0.75: three shards merged
equal one run, a run killed (SIGKILL) mid-photo and resumed equals one never killed, other
settings are refused (on resume and in a merge), and the one-file ILSVRC forms measure what the
XML does.

Every model run is a subprocess (seconds of start-up each): all start once in the module
fixture, two at a time; the settings are cheap (16 occlusion patches, 5 curve points) and the
merges need no model.
"""
import concurrent.futures
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guided_gradcam.evaluation.boxes import imagenet_synsets, read_voc_xml
from guided_gradcam.labels import imagenet_class_names

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "images"
# Four photos, three shards: photo i in shard i % 3, so shard 0 has two.
PHOTOS = ["images/astronaut.jpg", "images/cat.jpg", "images/coffee.jpg",
          str(SHARED / "cat_dog.jpg")]
SETTINGS = ["--metrics", "faithfulness,deletion,localisation", "--boxes", "images/boxes",
            "--patch", "56", "--stride", "56", "--step", "25088", "--noplots"]
ARGS = [word for photo in PHOTOS for word in ("--image", photo)] + SETTINGS
TRACEBACK_OR_TF = re.compile(r"Traceback|^[IWEF]\d{4} ", re.MULTILINE)


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    env["OPENBLAS_NUM_THREADS"] = "1"  # two runs share the two cores
    return env


def evaluate(args, output_dir=None):
    output = [] if output_dir is None else ["--output_dir", str(output_dir)]
    completed = subprocess.run([sys.executable, "evaluate.py", *map(str, args), *output],
                               cwd=REPO, env=_env(), capture_output=True, text=True,
                               timeout=300)
    completed.output_dir = None if output_dir is None else Path(output_dir)
    return completed


def killed_then_resumed(output_dir):
    """The run killed with SIGKILL once its first photo's rows are in evaluation.csv (the
    second photo in progress), a cut line added as a full disk leaves one, then resumed."""
    process = subprocess.Popen([sys.executable, "evaluate.py", *ARGS, "--output_dir",
                                str(output_dir)], cwd=REPO, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = output_dir / "evaluation.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if table.exists() and len(table.read_text().splitlines()) > 1:
            break
        time.sleep(0.005)
    if process.poll() is None:  # else it ended by itself: the test says so below
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    left = [row["input"] for row in read_csv(table)]
    with open(table, "a", encoding="utf-8") as handle:
        handle.write("images/zzz.jpg,zzz,1,cut sh")
    return left, process.returncode, evaluate(ARGS, output_dir)


def solution_files(folder):
    """cat.xml's box as a LOC_val_solution.csv row, and the synsets as LOC_synset_mapping.txt."""
    folder.mkdir()
    box, = [o.box for o in read_voc_xml(REPO / "images" / "boxes" / "cat.xml").objects]
    left, top, right, bottom = box
    (folder / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\ncat,n02123159 %d %d %d %d\n" % (left + 1, top + 1, right,
                                                                   bottom))
    (folder / "LOC_synset_mapping.txt").write_text("".join(
        "%s %s\n" % pair for pair in zip(imagenet_synsets(), imagenet_class_names())))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    for photo in PHOTOS:
        assert (REPO / photo).is_file(), photo
    base = tmp_path_factory.mktemp("shards")
    ilsvrc = solution_files(base / "ilsvrc")
    other = base / "other_settings"  # shard 2's folder, resumed with another stride
    jobs = {"whole": lambda: evaluate(ARGS, base / "whole"),
            "killed": lambda: killed_then_resumed(base / "killed"),
            **{"shard_%d" % i: (lambda i=i: evaluate(
                ARGS + ["--num_shards", 3, "--shard_index", i], base / ("shard_%d" % i)))
               for i in range(3)},
            "ilsvrc": lambda: evaluate(
                ["--image", "images/cat.jpg", "--metrics", "localisation", "--noplots",
                 "--boxes", ilsvrc / "LOC_val_solution.csv",
                 "--labels_file", ilsvrc / "LOC_synset_mapping.txt"], base / "ilsvrc_run")}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}

        def other_settings():
            shutil.copytree(futures["shard_2"].result().output_dir, other)
            return evaluate(ARGS[:-5] + ["--stride", "28", "--step", "25088", "--noplots",
                                         "--num_shards", 3, "--shard_index", 2], other)
        futures["other"] = pool.submit(other_settings)
        yield {name: future.result() for name, future in futures.items()} | {"base": base}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def summary_of(stdout):
    """The summary table and the lines below it: from the header to the end."""
    lines = stdout.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.split()[:1] == ["map"]):]


def assert_ran(run):
    assert run.returncode == 0, run.stderr
    assert not TRACEBACK_OR_TF.search(run.stderr), run.stderr


def test_three_shards_merged_equal_one_run(runs):
    whole, base = runs["whole"], runs["base"]
    assert_ran(whole)
    rows = read_csv(whole.output_dir / "evaluation.csv")
    assert sorted({row["input"] for row in rows}) == sorted(PHOTOS)
    assert len(rows) > len(PHOTOS)  # the boxes' classes too
    for i in range(3):
        shard = runs["shard_%d" % i]
        assert_ran(shard)
        mine = PHOTOS[i::3]  # inference.py's split
        assert {row["input"] for row in read_csv(shard.output_dir / "evaluation.csv")} == set(
            mine)
        assert (shard.output_dir / "inputs.txt").read_text().splitlines() == mine
        work = re.search(r"^work: shard %d of 3: %d photos?, (\d+)( to (\d+))? photo-classes$"
                         % (i, len(mine)), shard.stdout, re.MULTILINE)
        assert work, shard.stdout
        measured = sum(row["input"] in mine for row in rows)
        assert int(work.group(1)) <= measured <= int(work.group(3) or work.group(1))
        throughput = re.search(r"^throughput: (\d+) photo-classes of (\d+) photos in \S+ s: "
                               r"(\S+) photo-classes/s, (\S+) forward passes/s", shard.stdout,
                               re.MULTILINE)
        assert throughput and (int(throughput.group(1)), int(throughput.group(2))) == (
            measured, len(mine)), shard.stdout
        assert float(throughput.group(3)) > 0 and float(throughput.group(4)) > 10
    # An estimate of the time after the first photos, when there are more.
    assert re.search(r"^estimate: \d\d:\d\d:\d\d for this run's 4 photos \(\S+ s a photo "
                     r"over the first 3\)$", whole.stdout, re.MULTILINE), whole.stdout

    merge = evaluate(["--summarize"] + [base / ("shard_%d" % i) for i in (2, 0, 1)],
                     base / "merged")
    assert_ran(merge)
    merged = merge.output_dir
    for name in ("evaluation.csv", "sanity.csv"):  # the same rows, in the same order
        assert (merged / name).read_bytes() == (whole.output_dir / name).read_bytes(), name
    assert summary_of(merge.stdout) == summary_of(whole.stdout)  # the same numbers
    assert re.search(r"^localisation error top1: \S+% of 4 photo", merge.stdout, re.MULTILINE)
    page = json.loads((merged / "evaluation.json").read_text())
    assert page["summary"] == json.loads(
        (whole.output_dir / "evaluation.json").read_text())["summary"]
    settings = dict(page["settings"])
    assert "shard" not in settings and settings["merged"].startswith("3 folders: ")
    assert settings["inputs"].startswith("4 photos, sha256 ")
    # One page: a card per photo-class, the merged numbers on it.
    html = (merged / "index.html").read_text()
    entries = json.loads(html[html.index('id="entries">') + 13:].split("</script>")[0])
    assert sorted(entry["stem"] for entry in entries) == sorted(
        "%s_%s" % (row["stem"], row["class_index"]) for row in rows)
    assert all(entry["metrics"]["rows"] for entry in entries)


def test_the_merge_says_what_does_not_add_up(runs):
    base = runs["base"]
    shards = [base / ("shard_%d" % i) for i in range(3)]
    shutil.copytree(shards[1], base / "shard_1_again")
    partial = evaluate(["--summarize", shards[0], shards[1], base / "shard_1_again"],
                       base / "partial")
    assert_ran(partial)
    notes = [line for line in partial.stdout.splitlines() if line.startswith("note: ")]
    cat = [row for row in read_csv(shards[1] / "evaluation.csv")]
    assert "note: shard 2 of 3 not given: its photos are not counted as missing" in notes
    assert any(line.startswith("note: %d photo-class%s in more than one folder, the first "
                               "kept: images/cat.jpg " % (len(cat), "es are" if len(cat) > 1
                                                          else " is")) for line in notes), notes
    assert len(read_csv(base / "partial" / "evaluation.csv")) == len(
        read_csv(shards[0] / "evaluation.csv")) + len(cat)
    # Against the input list given: the photo of the shard not given is missing.
    listed = evaluate(["--summarize", shards[0], shards[1]] + [
        word for photo in PHOTOS for word in ("--image", photo)], base / "listed")
    assert_ran(listed)
    assert "note: 1 of 4 photos of the input list have no rows: images/coffee.jpg" in (
        listed.stdout.splitlines())
    assert any("1 of 4 photos of the input list have no rows" in line for line in json.loads(
        (base / "listed" / "evaluation.json").read_text())["summary"]["lines"])


def test_a_run_killed_mid_photo_and_resumed_equals_one_never_killed(runs):
    left, returncode, resumed = runs["killed"]
    whole = runs["whole"]
    assert returncode == -signal.SIGKILL  # it was still running
    assert 1 <= len(set(left)) < len(PHOTOS), left  # killed with photos still to do
    assert_ran(resumed)
    done = len(set(left))
    assert re.search(r"^work: %d photos?, .* photo-classes, %d photos? done before$"
                     % (len(PHOTOS) - done, done), resumed.stdout, re.MULTILINE), resumed.stdout
    for name in ("evaluation.csv", "sanity.csv"):
        assert (resumed.output_dir / name).read_bytes() == (
            whole.output_dir / name).read_bytes(), name
    assert summary_of(resumed.stdout) == summary_of(whole.stdout)
    # The page: one card per photo-class, a photo measured again replacing its first card.
    index = {row["stem"] for row in read_csv(resumed.output_dir / "index.csv")}
    assert index == {"%s_%s" % (row["stem"], row["class_index"])
                     for row in read_csv(whole.output_dir / "evaluation.csv")}


def test_other_settings_are_refused_on_resume_and_in_a_merge(runs):
    other, base = runs["other"], runs["base"]
    assert other.returncode == 1, other.stdout
    assert other.stderr == (
        "error: %s holds an evaluation with other settings (occlusion: patch 56, stride 28 "
        "here, patch 56, stride 56 in %s): pass another --output_dir, or delete it\n"
        % (other.output_dir, other.output_dir))
    assert other.stdout == ""  # refused before the model loads
    # A folder whose settings on record say another stride: no merge, one line.
    changed = base / "shard_1_other"
    shutil.copytree(base / "shard_1", changed)
    page = json.loads((changed / "evaluation.json").read_text())
    page["settings"] = [[name, "patch 56, stride 28" if name == "occlusion" else value]
                        for name, value in page["settings"]]
    (changed / "evaluation.json").write_text(json.dumps(page))
    merge = evaluate(["--summarize", base / "shard_0", changed], base / "refused")
    assert merge.returncode == 1
    assert merge.stderr == ("error: cannot merge folders with other settings: occlusion: patch "
                            "56, stride 56 in %s, patch 56, stride 28 in %s\n"
                            % (base / "shard_0", changed))
    assert merge.stdout == "" and not (base / "refused").exists()


def test_the_ilsvrc_solution_file_measures_what_the_xml_does(runs):
    """cat.xml's box given as LOC_val_solution.csv (its ImageId the photo's stem), the classes
    named by LOC_synset_mapping.txt: the same classes, localisation and pointing game."""
    run, whole = runs["ilsvrc"], runs["whole"]
    assert_ran(run)
    assert "box format LOC_val_solution.csv" not in run.stdout  # recorded, not in the header
    assert dict(json.loads((run.output_dir / "evaluation.json").read_text())["settings"])[
        "box format"] == "LOC_val_solution.csv"
    rows = read_csv(run.output_dir / "evaluation.csv")
    expected = [row for row in read_csv(whole.output_dir / "evaluation.csv")
                if row["input"] == "images/cat.jpg"]
    keys = ["class_index", "class_name", "top1_localised", "top5_localised"] + [
        key for key in rows[0] if key.startswith("pointing_")]
    assert [[row[key] for key in keys] for row in rows] == [
        [row[key] for key in keys] for row in expected]
    assert [row["class_index"] for row in rows] == ["285", "282"]  # top-1, then the box's


def test_a_sample_is_the_same_for_the_same_seed_and_keeps_the_input_order():
    from guided_gradcam.cli.evaluation_run import sample_paths

    paths = ["photos/%03d.jpg" % i for i in range(100)]
    sample = sample_paths(paths, 10, 0)
    assert len(set(sample)) == 10 and set(sample) <= set(paths)
    assert sample == sorted(sample)  # input order, so that every shard splits it alike
    assert sample == sample_paths(paths, 10, 0) != sample_paths(paths, 10, 1)
    assert sample_paths(paths, 100, 3) == sample_paths(paths, 500, 3) == paths
