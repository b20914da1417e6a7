"""ImageNet class names and the label space of a checkpoint.

Users always speak the 1000-class ImageNet index (0 = tench, 282 = tiger cat). Checkpoints with
1001 logits (the official slim MobileNets) put a background class at logit 0; `offset` maps
between the two.
"""
import functools
from importlib import resources

from guided_gradcam.errors import GuidedGradCamError

NUM_IMAGENET_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def imagenet_class_names():
    """The 1000 ImageNet class names, each a comma-separated list of synonyms."""
    text = resources.files("guided_gradcam").joinpath("data/imagenet_classes.txt").read_text()
    names = tuple(text.splitlines())
    assert len(names) == NUM_IMAGENET_CLASSES, len(names)
    return names


def short_name(index):
    """'tiger cat' for 282; the first synonym of the class."""
    return imagenet_class_names()[index].split(",")[0].strip()


class LabelSpace:
    """The classes of one checkpoint's logits, indexed in ImageNet's 1000-class space."""

    def __init__(self, num_logits):
        if num_logits not in (NUM_IMAGENET_CLASSES, NUM_IMAGENET_CLASSES + 1):
            raise GuidedGradCamError(
                "the checkpoint has %d classes; only ImageNet checkpoints with 1000 or 1001 "
                "(background first) classes are supported" % num_logits)
        self.num_logits = num_logits
        self.offset = num_logits - NUM_IMAGENET_CLASSES

    def __len__(self):
        return NUM_IMAGENET_CLASSES

    def name(self, index):
        return short_name(index)

    def describe(self, index):
        return "%s (%d)" % (short_name(index), index)

    def resolve(self, label):
        """An index ('282', 282) or a class name ('tiger cat', 'Tabby') → ImageNet index."""
        text = str(label).strip()
        try:
            index = int(text)
        except ValueError:
            return self._resolve_name(text)
        if not 0 <= index < NUM_IMAGENET_CLASSES:
            raise GuidedGradCamError(
                "label %d is out of range: ImageNet classes are 0..%d"
                % (index, NUM_IMAGENET_CLASSES - 1))
        return index

    def _resolve_name(self, text):
        wanted = text.lower()
        matches = [
            index for index, names in enumerate(imagenet_class_names())
            if wanted in (synonym.strip().lower() for synonym in names.split(","))
        ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            choices = "; ".join("%d = %s" % (i, imagenet_class_names()[i]) for i in matches)
            raise GuidedGradCamError(
                "class name %r is ambiguous: %s; pass the index instead" % (text, choices))
        near = [
            "%s (%d)" % (short_name(i), i) for i, names in enumerate(imagenet_class_names())
            if wanted in names.lower()
        ][:5]
        hint = "; did you mean: %s" % ", ".join(near) if near else ""
        raise GuidedGradCamError("unknown class name %r%s" % (text, hint))
