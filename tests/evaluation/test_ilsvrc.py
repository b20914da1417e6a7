"""ILSVRC-2012 validation as distributed: the per-image XML folder, the one-file
LOC_val_solution.csv and the LOC_synset_mapping.txt labels, from small files made here."""
import pytest

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation.boxes import class_index, ground_truth, imagenet_synsets
from guided_gradcam.evaluation.ilsvrc import SolutionFile, XmlFolder, open_boxes
from guided_gradcam.labels import (LabelSpace, imagenet_class_names, read_labels_file,
                                   read_synsets)

TIGER_CAT, SHARK = "n02123159", "n01484850"  # classes 282 and 2
SOLUTION = ("ImageId,PredictionString\n"
            # two boxes of one class, the second on the left and top border (0, as written)
            "ILSVRC2012_val_00000001,n02123159 111 108 441 193 n02123159 0 0 50 40 \n"
            "ILSVRC2012_val_00000002,n01484850 1 1 500 375\n"  # the whole photo, 1-based
            "ILSVRC2012_val_00000003,n01484850 10 20 30\n"  # a coordinate short
            "ILSVRC2012_val_00000004,n01484850 30 20 10 40\n")  # inverted


def _xml(name, xmin, ymin, xmax, ymax, width=500, height=375):
    return ("<annotation><folder>val</folder><filename>ILSVRC2012_val_00000001</filename>"
            "<source><database>ILSVRC_2012</database></source><size><width>%d</width>"
            "<height>%d</height><depth>3</depth></size><segmented>0</segmented><object>"
            "<name>%s</name><pose>Unspecified</pose><truncated>0</truncated>"
            "<difficult>0</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax>"
            "<ymax>%d</ymax></bndbox></object></annotation>"
            % (width, height, name, xmin, ymin, xmax, ymax))


def test_the_one_file_solution_gives_each_image_its_boxes_a_border_box_included(tmp_path):
    path = tmp_path / "LOC_val_solution.csv"
    path.write_text(SOLUTION)
    source = open_boxes(path)
    assert isinstance(source, SolutionFile) and source.format == "LOC_val_solution.csv"
    assert len(source) == 4
    first = source.annotation("ILSVRC2012_val_00000001")
    assert [(o.name, o.box, o.difficult) for o in first.objects] == [
        (TIGER_CAT, (110, 107, 441, 193), False),  # (left, top, right, bottom), exclusive
        (TIGER_CAT, (0, 0, 50, 40), False)]  # 0 read as the first pixel, as in the XML
    assert len(first.notes) == 1 and "starts at xmin 0 ymin 0" in first.notes[0]
    truth, difficult = ground_truth(first, LabelSpace(1000))
    assert truth == {282: ((110, 107, 441, 193), (0, 0, 50, 40))} and difficult == {}
    whole = source.annotation("ILSVRC2012_val_00000002")
    assert [o.box for o in whole.objects] == [(0, 0, 500, 375)] and whole.notes == ()
    assert source.annotation("ILSVRC2012_val_00000099") is None  # no row: no boxes
    # A malformed row costs its image alone, in one line naming the file, line and image.
    with pytest.raises(GuidedGradCamError, match=r"line 4 \(ILSVRC2012_val_00000003\): 4 "
                                                 r"values, not 'wnid xmin ymin xmax ymax'"):
        source.annotation("ILSVRC2012_val_00000003")
    with pytest.raises(GuidedGradCamError, match="inverted box: xmin 30 ymin 20 xmax 10"):
        source.annotation("ILSVRC2012_val_00000004")


def test_a_file_of_another_form_is_refused_in_one_line(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("image,boxes\nILSVRC2012_val_00000001,n02123159 1 1 2 2\n")
    with pytest.raises(GuidedGradCamError, match="first line is ImageId,PredictionString"):
        open_boxes(path)
    with pytest.raises(GuidedGradCamError, match="neither a folder of XML files nor"):
        open_boxes(tmp_path / "missing.csv")


def test_the_per_image_xml_folder_reads_a_box_on_every_border(tmp_path):
    """ILSVRC2012_bbox_val_v3.tgz unpacks to val/ILSVRC2012_val_XXXXXXXX.xml: VOC XML, a box
    on the photo's whole width (xmax = width) and its top row."""
    folder = tmp_path / "val"
    folder.mkdir()
    (folder / "ILSVRC2012_val_00000001.xml").write_text(_xml(SHARK, 1, 1, 500, 200))
    source = open_boxes(folder)
    assert isinstance(source, XmlFolder) and source.format == "VOC XML per photo"
    annotation = source.annotation("ILSVRC2012_val_00000001")
    assert (annotation.width, annotation.height) == (500, 375)
    assert [o.box for o in annotation.objects] == [(0, 0, 500, 200)]
    assert source.annotation("ILSVRC2012_val_00000002") is None
    (folder / "ILSVRC2012_val_00000003.xml").write_text(_xml(SHARK, 1, 1, 501, 200))
    with pytest.raises(GuidedGradCamError, match="outside the 500x375 photo"):
        source.annotation("ILSVRC2012_val_00000003")


def test_the_synset_mapping_names_the_classes_and_resolves_their_wnids(tmp_path):
    wnids, names = imagenet_synsets(), imagenet_class_names()
    mapping = tmp_path / "LOC_synset_mapping.txt"
    mapping.write_text("".join("%s %s\n" % pair for pair in zip(wnids, names)))
    assert read_labels_file(str(mapping), 1000) == names
    assert read_synsets(str(mapping)) == wnids
    labels = LabelSpace(1001, read_labels_file(str(mapping), 1000), 1,
                        wnids=read_synsets(str(mapping)))
    assert (labels.name(282), class_index(TIGER_CAT, labels)) == ("tiger cat", 282)
    # A model of its own with a synset mapping of three classes: the boxes' wnids are its.
    (tmp_path / "three.txt").write_text("n02123159 tiger cat\nn01484850 great white shark\n"
                                        "n09999999 something else\n")
    three = LabelSpace(3, read_labels_file(str(tmp_path / "three.txt"), 3),
                       wnids=read_synsets(str(tmp_path / "three.txt")))
    assert three.names == ("tiger cat", "great white shark", "something else")
    assert [class_index(w, three) for w in (TIGER_CAT, SHARK, "n09999999")] == [0, 1, 2]
    with pytest.raises(GuidedGradCamError, match="not one of the labels file's 3 synsets"):
        class_index("n01440764", three)
    # Plain names stay plain names (no wnids).
    (tmp_path / "plain.txt").write_text("cat\ndog\n")
    assert read_labels_file(str(tmp_path / "plain.txt"), 2) == ("cat", "dog")
    assert read_synsets(str(tmp_path / "plain.txt")) is None
