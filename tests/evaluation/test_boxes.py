"""Ground-truth boxes (VOC XML), IoU, localisation error and the pointing game, by hand."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation.boxes import (
    boxes_of_class, class_index, find_annotation, ground_truth, imagenet_synsets, iou,
    localisation_correct, localisation_error, localised, peak, point_to_photo,
    pointing_accuracy, pointing_game, pointing_hit, read_voc_xml)
from guided_gradcam.labels import LabelSpace
from guided_gradcam.evaluation.localization import box_to_photo

REPO = Path(__file__).resolve().parents[2]
BOXES = REPO / "images" / "boxes"
PHOTOS = {"cat": REPO / "images" / "cat.jpg", "coffee": REPO / "images" / "coffee.jpg",
          "astronaut": REPO / "images" / "astronaut.jpg",
          "cat_dog": REPO / ".." / "shared" / "images" / "cat_dog.jpg"}
IMAGENET = LabelSpace(1000)


def _xml(tmp_path, body, name="photo.xml"):
    path = tmp_path / name
    path.write_text(body)
    return path


def _object(name, xmin, ymin, xmax, ymax, extra=""):
    return ("<object><name>%s</name>%s<bndbox><xmin>%s</xmin><ymin>%s</ymin><xmax>%s</xmax>"
            "<ymax>%s</ymax></bndbox></object>" % (name, extra, xmin, ymin, xmax, ymax))


# IoU, exclusive edges


@pytest.mark.parametrize("a, b, expected", [
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # identical
    ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # disjoint
    ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching at x = 10: no common pixel
    ((0, 0, 10, 10), (0, 10, 10, 20), 0.0),  # touching at y = 10
    ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),  # touching at a corner
    ((0, 0, 10, 10), (9, 9, 19, 19), 1 / 199),  # one common pixel: 1 / (100 + 100 - 1)
    ((5, 5, 15, 15), (0, 0, 20, 20), 100 / 400),  # contained
    ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half of each overlaps
    ((0, 0, 10, 20), (0, 10, 10, 30), 100 / 300),
    ((5, 5, 5, 10), (0, 0, 20, 20), 0.0),  # zero width
    ((5, 5, 5, 5), (5, 5, 5, 5), 0.0),  # two identical zero-area boxes: no 0 / 0
])
def test_iou_by_hand(a, b, expected):
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


def test_localised_needs_iou_of_at_least_one_half():
    assert localised((0, 0, 100, 100), [(0, 0, 100, 50)])  # IoU exactly 0.5
    assert not localised((0, 0, 100, 100), [(0, 0, 100, 49)])
    assert localised((0, 0, 100, 100), [(500, 500, 600, 600), (0, 0, 100, 60)])
    assert not localised(None, [(0, 0, 100, 100)])
    assert not localised((0, 0, 100, 100), [])


# VOC XML


def test_voc_xml_with_several_objects(tmp_path):
    path = _xml(tmp_path, (
        "<annotation><folder>x</folder><filename>cat_dog.jpg</filename>"
        "<size><width>640</width><height>480</height><depth>3</depth></size>"
        + _object("n02123159", 1, 1, 640, 480, "<truncated>1</truncated><difficult>0</difficult>")
        + _object("bull mastiff", "222.6", "31.0", "472.4", "316.5", "<difficult>1</difficult>")
        + _object("tabby", 10, 20, 10, 20)  # no <difficult>, no <truncated>; one pixel
        + "</annotation>"))
    annotation = read_voc_xml(path)
    assert (annotation.path, annotation.filename) == (str(path), "cat_dog.jpg")
    assert (annotation.width, annotation.height) == (640, 480)
    cat, dog, tabby = annotation.objects
    # 1-based inclusive xmin..xmax → left = xmin - 1, right = xmax
    assert (cat.name, cat.box, cat.truncated, cat.difficult) == (
        "n02123159", (0, 0, 640, 480), True, False)
    # floats rounded halves up: 222.6 → 223, 31.0 → 31, 472.4 → 472, 316.5 → 317
    assert (dog.name, dog.box, dog.truncated, dog.difficult) == (
        "bull mastiff", (222, 30, 472, 317), False, True)
    assert (tabby.box, tabby.truncated, tabby.difficult) == ((9, 19, 10, 20), False, False)


def test_a_zero_coordinate_is_the_border_pixel_with_a_note(tmp_path):
    """Annotation tools write 0 for a box on the left or top border: read as the first pixel
    (left 0), said once per object; a 1-based file has no note."""
    path = _xml(tmp_path, "<annotation>%s%s%s</annotation>" % (
        SIZE, _object("cat", 0, 5, 20, 50), _object("dog", 3, 0, 0 + 100, 0 + 9)))
    annotation = read_voc_xml(path)
    assert [o.box for o in annotation.objects] == [(0, 4, 20, 50), (2, 0, 100, 9)]
    assert annotation.notes == (
        "annotation %s: object 1 ('cat') starts at xmin 0 ymin 5: read as the photo's first "
        "pixel (VOC pixels are 1-based)" % path,
        "annotation %s: object 2 ('dog') starts at xmin 3 ymin 0: read as the photo's first "
        "pixel (VOC pixels are 1-based)" % path)
    # The same boxes written 1-based: the same boxes, no note.
    one_based = read_voc_xml(_xml(tmp_path, "<annotation>%s%s%s</annotation>" % (
        SIZE, _object("cat", 1, 5, 20, 50), _object("dog", 3, 1, 100, 9)), "one.xml"))
    assert [o.box for o in one_based.objects] == [(0, 4, 20, 50), (2, 0, 100, 9)]
    assert one_based.notes == ()


def test_a_file_without_objects_or_size_is_valid(tmp_path):
    annotation = read_voc_xml(_xml(tmp_path, "<annotation><filename>a.jpg</filename></annotation>"))
    assert (annotation.objects, annotation.width, annotation.height) == ((), None, None)


GOOD = _object("n02123159", 10, 10, 20, 20)
SIZE = "<size><width>100</width><height>50</height></size>"


@pytest.mark.parametrize("body, words", [
    (None, "cannot read"),
    ("", "not XML"),
    ("<annotation><object>", "not XML"),
    ("\x00\x01binary", "not XML"),
    ("<voc>%s</voc>" % GOOD, "<voc>, not <annotation>"),
    ("<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
     "</bndbox></object></annotation>", "object 1 has no <name>"),
    ("<annotation>%s<object><name>n02123159</name></object></annotation>" % GOOD,
     "object 2 ('n02123159') has no <bndbox>"),
    ("<annotation>%s</annotation>" % _object("cat", "ten", 1, 20, 20), "no numeric <xmin>"),
    ("<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
     "</bndbox></object></annotation>", "no numeric <ymax>"),
    ("<annotation>%s</annotation>" % _object("cat", 1, 1, "nan", 2), "<xmax> ('nan')"),
    ("<annotation>%s</annotation>" % _object("cat", 1, 1, 2, "inf"), "<ymax> ('inf')"),
    ("<annotation>%s</annotation>" % _object("cat", 30, 1, 20, 20), "inverted"),
    ("<annotation>%s</annotation>" % _object("cat", 1, 30, 20, 20), "inverted"),
    ("<annotation>%s%s</annotation>" % (SIZE, _object("cat", 1, 1, 101, 50)), "outside the 100x50"),
    ("<annotation>%s%s</annotation>" % (SIZE, _object("cat", 1, 1, 100, 51)), "outside the 100x50"),
    ("<annotation>%s</annotation>" % _object("cat", -1, 1, 20, 20), "outside the photo"),
    ("<annotation>%s%s</annotation>" % (SIZE, _object("cat", 0, -2, 20, 20)), "outside the photo"),
    ("<annotation><size><width>0</width><height>5</height></size></annotation>", "<size> is 0x5"),
    ("<annotation>%s</annotation>" % _object("cat", 1, 1, 2, 2, "<difficult>yes</difficult>"),
     "<difficult> 'yes'"),
])
def test_bad_xml_gets_one_line_naming_the_file(tmp_path, body, words):
    path = tmp_path / "bad photo.xml"
    if body is not None:
        path.write_text(body)
    with pytest.raises(GuidedGradCamError) as error:
        read_voc_xml(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message and words in message, message


def test_an_unreadable_path_is_an_error(tmp_path):
    with pytest.raises(GuidedGradCamError, match="cannot read"):
        read_voc_xml(tmp_path)  # a folder


def test_find_annotation(tmp_path):
    _xml(tmp_path, "<annotation>%s</annotation>" % GOOD, "cat.xml")
    assert find_annotation(tmp_path, "cat").objects[0].box == (9, 9, 20, 20)
    assert find_annotation(str(tmp_path), "dog") is None
    with pytest.raises(GuidedGradCamError, match="does not exist"):
        find_annotation(tmp_path / "missing", "cat")


# Class names


def test_synsets_are_ilsvrc_2012s_in_class_order():
    wnids = imagenet_synsets()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids) and len(set(wnids)) == 1000
    assert (wnids[0], wnids[243], wnids[281], wnids[282]) == (
        "n01440764", "n02108422", "n02123045", "n02123159")  # tench, bull mastiff, tabby, tiger cat


@pytest.mark.parametrize("name, index", [
    ("n02123159", 282), (" n02108422 ", 243), ("n01440764", 0), ("tiger cat", 282),
    ("Bull Mastiff", 243), ("281", 281)])
def test_class_index_of_wnids_and_names(name, index):
    assert class_index(name, IMAGENET) == index
    assert class_index(name, LabelSpace(1001)) == index  # the background logit changes nothing


def test_class_index_in_a_label_space_of_ones_own():
    labels = LabelSpace(3, ("road", "car", "tree"))
    assert class_index("car", labels) == 1
    with pytest.raises(GuidedGradCamError, match="needs ImageNet's classes"):
        class_index("n02123159", labels)
    with pytest.raises(GuidedGradCamError, match="needs ImageNet's classes"):
        class_index("n02123159", LabelSpace(1000, tuple("class %d" % i for i in range(1000))))


def test_an_unknown_class_name_in_a_box_file_names_the_file_and_close_names(tmp_path):
    """One's own classes written otherwise in the XML: the error says which file and which
    object, and suggests the close names as --label does."""
    path = _xml(tmp_path, "<annotation>%s%s</annotation>" % (
        _object("top-left", 1, 1, 5, 5), _object("bottomright", 6, 6, 9, 9)), "squares.xml")
    with pytest.raises(GuidedGradCamError) as error:
        ground_truth(read_voc_xml(path), LabelSpace(2, ("top-left", "bottom-right")))
    assert str(error.value) == ("annotation %s: object 2: unknown class name 'bottomright'; did "
                                "you mean: bottom-right (1)" % path)


def test_unknown_names_and_wnids_are_errors():
    with pytest.raises(GuidedGradCamError, match="did you mean: .*tiger cat"):
        class_index("tiger ca", IMAGENET)
    with pytest.raises(GuidedGradCamError, match="not one of ILSVRC-2012's 1000 synsets"):
        class_index("n99999999", IMAGENET)


# Localisation (top-1 and top-5) and the difficult-object rules

CAT, DOG = (0, 0, 100, 100), (200, 200, 300, 300)
TRUTH = {282: (CAT,), 243: (DOG,)}


def test_top1_right_class_and_right_box():
    assert localisation_correct([282], {282: CAT}, TRUTH) is True
    assert localisation_correct([243], {243: (210, 200, 300, 300)}, TRUTH) is True


def test_right_class_wrong_box_and_wrong_class_right_box_are_errors():
    assert localisation_correct([282], {282: DOG}, TRUTH) is False
    assert localisation_correct([281], {281: CAT}, TRUTH) is False
    assert localisation_correct([282], {282: None}, TRUTH) is False
    assert localisation_correct([282], {243: DOG}, TRUTH) is False  # another class's box


def test_the_second_ranked_class_counts_for_top5_only():
    predicted = [281, 282, 285, 287, 243]
    cams = {281: CAT, 282: CAT, 285: CAT, 287: CAT, 243: None}
    assert localisation_correct(predicted[:1], cams, TRUTH) is False
    assert localisation_correct(predicted, cams, TRUTH) is True
    assert localisation_correct(predicted, {**cams, 282: DOG}, TRUTH) is False


def test_difficult_only_images_are_left_out():
    assert localisation_correct([282], {282: CAT}, {}, {282: (CAT,)}) is None
    assert localisation_correct([282], {282: CAT}, {}) is None  # no object at all
    results = [True, None, False, False]
    assert localisation_error(results) == pytest.approx(1 - 1 / 3)
    with pytest.raises(GuidedGradCamError, match="nothing to score"):
        localisation_error([None, None])


def test_a_hit_on_a_difficult_box_neither_helps_nor_hurts():
    difficult = {282: ((400, 0, 500, 100),)}
    cams = {282: (400, 0, 500, 100), 243: DOG}
    assert localisation_correct([282], cams, TRUTH, difficult) is None  # not correct, not an error
    assert localisation_correct([282, 243], cams, TRUTH, difficult) is True
    assert localisation_correct([282], {282: (600, 0, 700, 100)}, TRUTH, difficult) is False


def test_boxes_from_xml_split_by_difficulty(tmp_path):
    annotation = read_voc_xml(_xml(tmp_path, "<annotation>%s%s%s</annotation>" % (
        _object("n02123159", 1, 1, 100, 100),
        _object("tiger cat", 401, 1, 500, 100, "<difficult>1</difficult>"),
        _object("n02108422", 201, 201, 300, 300, "<difficult>1</difficult>"))))
    truth, difficult = ground_truth(annotation, IMAGENET)
    assert truth == {282: ((0, 0, 100, 100),)}
    assert difficult == {282: ((400, 0, 500, 100),), 243: ((200, 200, 300, 300),)}
    assert boxes_of_class(annotation, 282, IMAGENET) == (((0, 0, 100, 100),), ((400, 0, 500, 100),))
    assert boxes_of_class(annotation, 243, IMAGENET) == ((), ((200, 200, 300, 300),))
    assert boxes_of_class(annotation, 0, IMAGENET) == ((), ())
    # the dog is difficult only: its Grad-CAM box on it counts neither way
    assert localisation_correct([243], {243: (200, 200, 300, 300)}, truth, difficult) is None


# Pointing game

BOX = (100, 100, 200, 200)


@pytest.mark.parametrize("point, hit", [
    ((150, 150), True), ((100, 100), True), ((200, 200), True),  # inside and on the edges
    ((215, 150), True), ((150, 85), True),  # exactly 15 px away
    ((215.01, 150), False), ((150, 84.99), False),
    ((209, 212), True),  # 15 px diagonally: hypot(9, 12) = 15
    ((209.1, 212), False), ((211, 211), False),  # within 15 px on each axis, but 15.6 px away
    (None, False)])  # a map that points nowhere
def test_pointing_hit_within_15_pixels(point, hit):
    assert pointing_hit(point, [(500, 500, 600, 600), BOX]) is hit


def test_pointing_tolerance_can_be_changed():
    assert not pointing_hit((205, 150), [BOX], tolerance=0)
    assert pointing_hit((205, 150), [BOX], tolerance=5)


def test_pointing_game_difficult_rules():
    assert pointing_game((150, 150), [BOX]) is True
    assert pointing_game((400, 400), [BOX]) is False
    assert pointing_game(None, [BOX]) is False
    assert pointing_game((150, 150), [], [BOX]) is None  # the class is difficult only
    assert pointing_game((450, 450), [BOX], [(400, 400, 500, 500)]) is None  # hit a difficult one
    assert pointing_game((150, 150), [BOX], [(400, 400, 500, 500)]) is True
    assert pointing_accuracy([True, None, False, True, True]) == 0.75


def test_pointing_game_applies_its_tolerance_to_required_and_difficult_boxes():
    """Distances by hand: (205, 150) is 5 px right of BOX, (260, 150) 60 px; the box
    (400, 400, 500, 500) is hypot(140, 250) = 286.5 px from (260, 150)."""
    near, far, other = (205, 150), (260, 150), (400, 400, 500, 500)
    assert pointing_game(near, [BOX]) is True  # 5 <= 15
    assert pointing_game(near, [BOX], tolerance=0) is False
    assert pointing_game(near, [BOX], tolerance=4.99) is False
    assert pointing_game(near, [BOX], tolerance=5) is True
    assert pointing_game(far, [BOX]) is False  # 60 > 15
    assert pointing_game(far, [BOX], tolerance=59.9) is False
    assert pointing_game(far, [BOX], tolerance=60) is True
    assert pointing_game(far, [other], tolerance=286) is False
    assert pointing_game(far, [other], tolerance=287) is True
    # The difficult boxes' test takes the same tolerance: a miss near a difficult box is left
    # out, one that is only within the default 15 px of it is not.
    assert pointing_game(near, [other], [BOX]) is None
    assert pointing_game(near, [other], [BOX], tolerance=0) is False
    assert pointing_game(far, [other], [BOX]) is False
    assert pointing_game(far, [other], [BOX], tolerance=60) is None


def test_peak_is_the_first_maximum_in_raster_order():
    cam = [[0, 1, 3], [3, 2, float("nan")]]
    assert peak(cam) == (0, 2)
    assert peak([[0.0, 0.0], [0.0, 0.0]]) is None
    assert peak([[float("nan")] * 3] * 2) is None
    assert peak([[float("nan"), 0.5], [0.2, float("nan")]]) == (0, 1)
    with pytest.raises(ValueError):
        peak([1.0, 2.0])


def test_point_to_photo_by_hand():
    # cat.jpg (451x300) centre-cropped to 224x224: the crop is (75, 0, 375, 300), 300/224 px each
    assert point_to_photo((0, 0), (75, 0, 375, 300), (224, 224)) == pytest.approx(
        (75 + 0.5 * 300 / 224, 0.5 * 300 / 224))
    assert point_to_photo((223, 223), (75, 0, 375, 300), (224, 224)) == pytest.approx(
        (75 + 223.5 * 300 / 224, 223.5 * 300 / 224))
    # a 2x scale in x, 1x in y: pixel (row 4, col 9) is [18, 20) x [4, 5) past the crop's corner
    assert point_to_photo((4, 9), (10, 20, 210, 70), (50, 100)) == (29.0, 24.5)


def test_point_to_photo_lies_in_the_pixel_that_box_to_photo_maps():
    crop, size = (75, 0, 375, 300), (224, 224)
    for row, col in [(0, 0), (100, 17), (223, 223), (57, 190)]:
        left, top, right, bottom = box_to_photo((col, row, col + 1, row + 1), crop, size)
        x, y = point_to_photo((row, col), crop, size)
        assert left <= x <= right and top <= y <= bottom
        assert pointing_hit((x, y), [(left, top, right, bottom)], tolerance=0)


# The shipped, hand-drawn boxes

EXPECTED_CLASSES = {"cat": {282}, "coffee": {967, 968}, "astronaut": {812}, "cat_dog": {243, 282}}


@pytest.mark.parametrize("stem", sorted(EXPECTED_CLASSES))
def test_shipped_boxes_parse_and_lie_inside_their_photos(stem):
    photo = PHOTOS[stem]
    # Real data is part of the set-up: a missing ../shared must fail, never skip.
    assert photo.exists(), "%s is missing: ../shared must sit beside the repository" % photo
    annotation = find_annotation(BOXES, stem)
    assert annotation is not None and annotation.filename == photo.name
    with Image.open(photo) as image:
        assert (annotation.width, annotation.height) == image.size
    assert {class_index(o.name, IMAGENET) for o in annotation.objects} == EXPECTED_CLASSES[stem]
    for item in annotation.objects:
        left, top, right, bottom = item.box
        assert 0 <= left < right <= annotation.width and 0 <= top < bottom <= annotation.height
        assert not item.difficult
        assert (right - left) * (bottom - top) >= 0.02 * annotation.width * annotation.height
        assert "<!-- drawn by hand" in (BOXES / (stem + ".xml")).read_text()


def test_the_paper_photos_cat_and_dog_are_apart():
    truth, _ = ground_truth(find_annotation(BOXES, "cat_dog"), IMAGENET)
    (dog,), (cat,) = truth[243], truth[282]
    assert iou(dog, cat) < 0.2
    assert localisation_correct([243], {243: dog}, truth) is True
    assert localisation_correct([243], {243: cat}, truth) is False


def test_boxes_do_not_import_tensorflow():
    code = ("import sys, guided_gradcam.evaluation.boxes; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_iou_of_float_boxes():
    assert iou((0.0, 0.0, 1.5, 1.0), (0.5, 0.0, 2.0, 1.0)) == pytest.approx(1.0 / 2.0)
    assert math.isclose(iou((0, 0, 4, 4), (2, 2, 6, 6)), 4 / 28)
