"""The folder pipeline: shards, resuming, output selection, and bounded writing."""
import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.outputs.files import output_paths
from guided_gradcam.cli.pipeline import (
    Progress, Target, plan_jobs, run_jobs, targets_for, unique_stems)

PATHS = ["a/cat.jpg", "b/cat.jpg", "a/dog.png", "c/cat_2.jpg", "d/bird.jpg", "e/fish.jpg", "f/x.jpg"]


def test_shards_partition_the_inputs_deterministically():
    shards = [plan_jobs(PATHS, "out", shard_index=i, num_shards=3)[0] for i in range(3)]
    paths = [job.path for shard in shards for job in shard]
    assert sorted(paths) == sorted(PATHS) and len(set(paths)) == len(PATHS)
    # Stems come from the whole list, so a shard names its files as a single run would.
    everything = {job.path: job.stem for job in plan_jobs(PATHS, "out")[0]}
    assert all(everything[job.path] == job.stem for shard in shards for job in shard)
    assert shards == [plan_jobs(PATHS, "out", shard_index=i, num_shards=3)[0] for i in range(3)]


def test_bad_shard_index_is_a_clear_error():
    with pytest.raises(GuidedGradCamError, match="shard_index"):
        plan_jobs(PATHS, "out", shard_index=3, num_shards=3)


def test_stems_are_unique():
    assert len(set(unique_stems(PATHS))) == len(PATHS)


def test_skip_existing_needs_every_requested_output(tmp_path):
    stem = plan_jobs(PATHS, str(tmp_path))[0][0].stem
    for path in output_paths(str(tmp_path), stem, ("npz",)):
        open(path, "wb").close()
    jobs, skipped = plan_jobs(PATHS, str(tmp_path), ("npz",), skip_existing=True)
    assert skipped == 1 and PATHS[0] not in [job.path for job in jobs]
    jobs, skipped = plan_jobs(PATHS, str(tmp_path), ("npz", "png"), skip_existing=True)
    assert skipped == 0


def test_progress_reports_done_rate_and_time_left_then_the_total_time():
    stream = io.StringIO()
    progress = Progress(10, stream, interval=0.0)
    progress.update(4)
    progress.update(10, final=True)
    during, final = stream.getvalue().splitlines()
    assert re.fullmatch(r"progress: 4/10 images, [\d.]+ images/s, \d\d:\d\d:\d\d left", during)
    assert re.fullmatch(r"progress: 10/10 images, [\d.]+ images/s, done in [\d.]+ s", final)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index, size in enumerate([(300, 200), (120, 160), (224, 224), (90, 300), (50, 50)]):
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(folder / ("p%d.png" % index))
    return sorted(str(path) for path in folder.iterdir())


def test_run_writes_only_the_requested_outputs_and_resumes(explainer, photos, tmp_path):
    jobs, _ = plan_jobs(photos, str(tmp_path), ("npz", "panel"))
    reported = []
    failures = run_jobs(explainer, jobs, str(tmp_path), batch_size=2, kinds=("npz", "panel"),
                        report=lambda job, explanation, labels: reported.append(job.stem),
                        max_pending=1)
    assert failures == 0 and reported == [job.stem for job in jobs]
    expected = {os.path.basename(p) for job in jobs
                for p in output_paths(str(tmp_path), job.stem, ("npz", "panel"))}
    assert set(os.listdir(tmp_path)) == expected
    assert not any(name.endswith("_gradcam.png") for name in os.listdir(tmp_path))

    os.remove(os.path.join(tmp_path, jobs[2].stem + ".npz"))
    remaining, skipped = plan_jobs(photos, str(tmp_path), ("npz", "panel"), skip_existing=True)
    assert [job.stem for job in remaining] == [jobs[2].stem] and skipped == len(jobs) - 1


def test_batch_size_does_not_change_the_results(explainer, photos, tmp_path):
    jobs, _ = plan_jobs(photos, "unused", targets=targets_for([282]))
    for batch_size in (1, 4):
        out = tmp_path / str(batch_size)
        assert run_jobs(explainer, jobs, str(out), batch_size=batch_size, kinds=("npz",),
                        report=lambda *args: None) == 0
    for job in jobs:
        one, four = (np.load(tmp_path / b / (job.stem + ".npz")) for b in ("1", "4"))
        np.testing.assert_allclose(one["cam"], four["cam"], atol=1e-4)
        assert int(one["label"]) == int(four["label"]) == 282


def test_targets_name_classes_and_modes_only_when_needed():
    assert targets_for([]) == targets_for(None) == [Target(None)]
    assert targets_for([282]) == [Target(282)]
    assert targets_for([282, 243, 282]) == [Target(282, "_282"), Target(243, "_243")]
    assert targets_for([282], counterfactual=True) == [Target(282, "_282_cf")]
    assert targets_for(None, counterfactual=True) == [Target(None, "_top1_cf")]


def test_skip_existing_is_keyed_on_class_and_mode(explainer, photos, tmp_path):
    """A run for other classes or another mode neither skips nor overwrites another's files."""
    def run(labels, counterfactual=False):
        jobs, skipped = plan_jobs(photos[:1], str(tmp_path), ("npz",), skip_existing=True,
                                  targets=targets_for(labels, counterfactual))
        assert run_jobs(explainer, jobs, str(tmp_path), counterfactual=counterfactual,
                        kinds=("npz",), report=lambda *args: None) == 0
        return jobs, skipped

    stem = plan_jobs(photos[:1], "unused")[0][0].stem
    run([282, 243])
    first = os.stat(tmp_path / (stem + "_243.npz")).st_mtime_ns
    jobs, skipped = run([243, 281])
    assert skipped == 0 and [t.label for t in jobs[0].targets] == [281]  # 243 exists
    assert os.stat(tmp_path / (stem + "_243.npz")).st_mtime_ns == first
    run([282], counterfactual=True)
    assert sorted(os.listdir(tmp_path)) == sorted(
        stem + suffix for suffix in ("_282.npz", "_243.npz", "_281.npz", "_282_cf.npz"))
    for suffix, label in (("_282", 282), ("_281", 281), ("_282_cf", 282)):
        assert int(np.load(tmp_path / (stem + suffix + ".npz"))["label"]) == label
    assert run([282, 243])[1] == 1  # all there: the image is skipped
