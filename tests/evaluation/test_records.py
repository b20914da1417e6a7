"""evaluation.csv and sanity.csv written photo by photo, repaired for a resumed run and read
back; the settings on record compared. Small files made here, no model."""
import csv
import math

import pytest

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation import provenance, records, report
from guided_gradcam.evaluation.metrics.sanity import SanityRow
from guided_gradcam.evaluation.results import ClassResult, PhotoResult

MAPS = ("gradcam", "gbp", "guided_gradcam")


def _photo(name, class_index, rho, pointing=None, steps=2):
    c = ClassResult(class_index, "class %d" % class_index, 0.25,
                    {"faithfulness": dict(zip(MAPS, (rho, -rho, float("nan"))))})
    if pointing is not None:
        c.values["pointing"] = {"gradcam": pointing}
    c.sanity = [SanityRow("cascading", step, "block%d" % step, name_, 0.5 / step, 0.1, 0.9,
                          float("nan")) for step in range(1, steps + 1) for name_ in MAPS]
    return PhotoResult("photos/%s.jpg" % name, name, classes=[c],
                       localisation={"top1": True, "top5": True} if pointing is not None
                       else {})


def _lines(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_rows_read_back_as_written_and_the_summary_needs_no_order(tmp_path):
    record = records.Record(str(tmp_path), MAPS)
    photos = [_photo("a", 1, 0.25, pointing=True), _photo("b", 2, 0.125, pointing=False)]
    for photo in photos:
        record.add(photo)
    record.close()
    maps, back = records.read_results(str(tmp_path))
    assert maps == list(MAPS)
    assert [(r.path, r.stem, r.localisation) for r in back] == [
        (p.path, p.stem, p.localisation) for p in photos]
    a = back[0].classes[0]
    assert (a.class_index, a.class_name, a.probability) == (1, "class 1", 0.25)
    assert a.faithfulness["gradcam"] == 0.25 and a.faithfulness["gbp"] == -0.25
    assert math.isnan(a.faithfulness["guided_gradcam"]) and a.pointing == {"gradcam": True}
    assert [(s.step, s.map, s.spearman_abs) for s in a.sanity][:2] == [
        (1, "gradcam", 0.5), (1, "gbp", 0.5)]
    # The summary from the rows is the summary from memory, in either order.
    assert report.summary_text(back, MAPS) == report.summary_text(photos, MAPS)
    assert report.summary_text(back[::-1], MAPS) == report.summary_text(back, MAPS)


def test_a_resumed_record_keeps_the_photos_done_and_drops_what_a_kill_left(tmp_path):
    record = records.Record(str(tmp_path), MAPS)
    record.add(_photo("a", 1, 0.25))
    record.add(PhotoResult("photos/bad.jpg", "bad", error="not an image"))
    record.close()
    # A kill between the two writes of photo b: its sanity rows without its evaluation rows;
    # then a cut last line (a full disk).
    with open(tmp_path / "sanity.csv", "a", encoding="utf-8") as handle:
        handle.write("photos/b.jpg,b,2,cascading,1,block1,gradcam,0.5,0.1,0.9,nan\n")
    with open(tmp_path / "evaluation.csv", "a", encoding="utf-8") as handle:
        handle.write("photos/b.jpg,b,2,class 2,0.2")
    resumed = records.Record(str(tmp_path), MAPS, resume=True)
    assert resumed.done == {"photos/a.jpg": 1}  # the failed photo is tried again
    resumed.add(_photo("b", 2, 0.5))
    resumed.close()
    rows = _lines(tmp_path / "evaluation.csv")
    assert [(row["input"], row["error"]) for row in rows] == [("photos/a.jpg", ""),
                                                              ("photos/b.jpg", "")]
    sanity = _lines(tmp_path / "sanity.csv")
    assert [row["input"] for row in sanity].count("photos/b.jpg") == 2 * len(MAPS)
    # The same rows as a run never killed.
    fresh = tmp_path / "fresh"
    record = records.Record(str(fresh), MAPS)
    for photo in (_photo("a", 1, 0.25), _photo("b", 2, 0.5)):
        record.add(photo)
    record.close()
    for name in ("evaluation.csv", "sanity.csv"):
        assert (tmp_path / name).read_bytes() == (fresh / name).read_bytes(), name


def test_a_record_with_other_maps_is_not_resumed(tmp_path):
    records.Record(str(tmp_path), MAPS).close()
    with pytest.raises(GuidedGradCamError, match="other columns than this run writes"):
        records.Record(str(tmp_path), MAPS + ("gradcampp",), resume=True)


def test_settings_differences_name_each_setting_and_skip_where_files_were():
    ours = {"occlusion": "patch 32, stride 8", "checkpoint": "/a/model.ckpt",
            "checkpoint digest": "ab", "shard": "0 of 2", "batch size": "16"}
    theirs = dict(ours, occlusion="patch 32, stride 16", checkpoint="/b/model.ckpt",
                  shard="1 of 2", **{"batch size": "32", "toolkit": "0.2.0"})
    assert provenance.differences(ours, theirs, "in A", "in B", ignore=["shard"]) == [
        "occlusion: patch 32, stride 8 in A, patch 32, stride 16 in B",
        "toolkit: none in A, 0.2.0 in B"]
    with pytest.raises(GuidedGradCamError, match=r"^out holds an evaluation with other "
                                                 r"settings \(occlusion: .*; shard: 0 of 2 "
                                                 r"here, 1 of 2 in out; toolkit"):
        provenance.check_same_settings(ours, theirs, "out")
