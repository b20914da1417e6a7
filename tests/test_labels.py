"""Label spaces: indices, class names, and the background offset of 1001-class checkpoints."""
import pytest

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.labels import (
    LabelSpace, imagenet_class_names, read_labels_file, short_name)


def test_class_names_are_imagenets():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert (short_name(0), short_name(282), short_name(243)) == ("tench", "tiger cat", "bull mastiff")


@pytest.mark.parametrize("num_logits, offset", [(1000, 0), (1001, 1)])
def test_offset_follows_the_number_of_logits(num_logits, offset):
    assert LabelSpace(num_logits).offset == offset


@pytest.mark.parametrize("label, index", [
    ("282", 282), (282, 282), (" 0 ", 0), ("tiger cat", 282), ("Tiger Cat", 282),
    ("tabby", 281), ("tabby cat", 281), ("bull mastiff", 243), ("999", 999)])
def test_resolve_accepts_indices_and_any_synonym(label, index):
    assert LabelSpace(1000).resolve(label) == index


@pytest.mark.parametrize("label, words", [
    ("1000", "out of range"), ("-1", "out of range"), ("not a class", "unknown class name"),
    ("crane", "ambiguous"), ("tiger c", "did you mean")])
def test_bad_labels_get_one_line_errors(label, words):
    with pytest.raises(GuidedGradCamError) as error:
        LabelSpace(1000).resolve(label)
    message = str(error.value)
    assert words in message and "\n" not in message


def test_ambiguous_name_lists_both_classes():
    with pytest.raises(GuidedGradCamError, match="134.*517"):
        LabelSpace(1000).resolve("crane")


def test_other_models_get_numbered_or_given_class_names(tmp_path):
    numbered = LabelSpace(10)
    assert numbered.offset == 0 and len(numbered) == 10
    assert numbered.name(3) == "class 3" and numbered.resolve("Class 3") == 3
    with pytest.raises(GuidedGradCamError, match="out of range: the classes are 0..9"):
        numbered.resolve(10)
    path = tmp_path / "labels.txt"
    path.write_text("benign\nmalignant\n\n")
    named = LabelSpace(2, read_labels_file(str(path), 2))
    assert named.resolve("malignant") == 1 and named.describe(0) == "benign (0)"
    with pytest.raises(GuidedGradCamError, match="has 2 names; the model has 3 classes"):
        read_labels_file(str(path), 3)
    with pytest.raises(GuidedGradCamError, match="cannot read labels file"):
        read_labels_file(str(tmp_path / "missing.txt"), 2)
    assert read_labels_file("imagenet", 1000) == imagenet_class_names()



def test_suggestions_rank_whole_word_matches_first():
    with pytest.raises(GuidedGradCamError) as error:
        LabelSpace(1000).resolve("cat")
    suggested = str(error.value).split("did you mean: ")[1].split(", ")
    assert {"Persian cat (283)", "Siamese cat (284)", "Egyptian cat (285)"} <= set(suggested)
    assert not any("bullfrog" in name for name in suggested)  # 'catesbeiana' comes later


@pytest.mark.parametrize("label, suggestion", [
    ("bottomright", "bottom-right (1)"), ("Bottom Right", "bottom-right (1)"),
    ("top_left", "top-left (0)"), ("botom-right", "bottom-right (1)")])
def test_names_written_otherwise_or_misspelt_get_the_close_names(label, suggestion):
    """No name contains them: spaces, hyphens and a typo aside, they are close to one."""
    with pytest.raises(GuidedGradCamError) as error:
        LabelSpace(2, ("top-left", "bottom-right")).resolve(label)
    assert str(error.value) == "unknown class name %r; did you mean: %s" % (label, suggestion)
    with pytest.raises(GuidedGradCamError, match=r"did you mean: tiger cat \(282\)$"):
        LabelSpace(1000).resolve("tigr cat")
