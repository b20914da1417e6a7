"""ImageNet class names and the label space of a checkpoint.

Users always speak the 1000-class ImageNet index (0 = tench, 282 = tiger cat). Checkpoints with
1001 logits (the official slim MobileNets) put a background class at logit 0; `offset` maps
between the two.
"""
import difflib
import functools
import re
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


_SYNSET_LINE = re.compile(r"(n\d{8})\s+(\S.*)")


def _labels_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f.read().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise GuidedGradCamError("cannot read labels file %s: %s" % (
            path, getattr(error, "strerror", None) or error)) from None


def read_synsets(path):
    """The WordNet IDs of a labels file in ILSVRC's LOC_synset_mapping.txt form ('n01440764
    tench, Tinca tinca' a line), in its order; None for any other file."""
    if path is None or path == "imagenet":
        return None
    matches = [_SYNSET_LINE.fullmatch(line) for line in _labels_lines(path)]
    if not matches or not all(matches):
        return None
    return tuple(match.group(1) for match in matches)


def read_labels_file(path, num_classes):
    """Class names from a file with one name per line ('imagenet': ImageNet's 1000 names), or
    in the LOC_synset_mapping.txt form (a WordNet ID, then the names)."""
    if path == "imagenet":
        names = imagenet_class_names()
    else:
        lines = _labels_lines(path)
        matches = [_SYNSET_LINE.fullmatch(line) for line in lines]
        names = tuple(match.group(2).strip() for match in matches) if lines and all(
            matches) else tuple(lines)
    if len(names) != num_classes:
        raise GuidedGradCamError("labels file %s has %d names; the model has %d classes"
                                 % (path, len(names), num_classes))
    return names


def _squeezed(name):
    """A name in lower case without spaces, hyphens or other punctuation."""
    return re.sub(r"[^a-z0-9]+", "", name.lower())


class LabelSpace:
    """The classes a model explains, by index and by name.

    `LabelSpace(1000)` and `LabelSpace(1001)` are ImageNet's classes (1001: a background class
    at logit 0, which `offset` skips: users speak the 1000-class index). Any other model gets
    `names` (one per class) or 'class 0', 'class 1', ….
    """

    def __init__(self, num_logits, names=None, offset=0, wnids=None):
        self.wnids = tuple(wnids) if wnids else None  # a synsets file's (boxes name them)
        imagenet = names is None and num_logits in (NUM_IMAGENET_CLASSES, NUM_IMAGENET_CLASSES + 1)
        self.num_logits = num_logits
        self.offset = num_logits - NUM_IMAGENET_CLASSES if imagenet else offset
        if imagenet:
            names = imagenet_class_names()
        elif names is None:
            names = tuple("class %d" % index for index in range(num_logits - offset))
        if len(names) != num_logits - self.offset:
            raise GuidedGradCamError("%d class names for %d classes" % (len(names), num_logits))
        self.names = tuple(names)

    def __len__(self):
        return len(self.names)

    def name(self, index):
        """'tiger cat' for ImageNet's 282: the first synonym of the class."""
        return self.names[index].split(",")[0].strip()

    def describe(self, index):
        return "%s (%d)" % (self.name(index), index)

    def resolve(self, label):
        """An index ('282', 282) or a class name ('tiger cat', 'Tabby') → class index."""
        text = str(label).strip()
        try:
            index = int(text)
        except ValueError:
            return self._resolve_name(text)
        if not 0 <= index < len(self):
            raise GuidedGradCamError(
                "label %d is out of range: the classes are 0..%d" % (index, len(self) - 1))
        return index

    def _suggestions(self, wanted):
        """Classes whose names contain `wanted`: as a whole word first ('cat' → Egyptian cat,
        Persian cat), then at a word's start, then anywhere ('catesbeiana')."""
        ranked = []
        for index, names in enumerate(self.names):
            text = names.lower()
            if wanted not in text:
                continue
            words = re.split(r"[^a-z0-9']+", text)
            rank = 0 if wanted in words else 1 if any(w.startswith(wanted) for w in words) else 2
            ranked.append((rank, index))
        if ranked:
            return [index for _, index in sorted(ranked)]
        # No name contains it: names alike but for spaces, hyphens or a typo ('bottomright' →
        # bottom-right, 'tigr cat' → tiger cat), by difflib's similarity ratio.
        synonyms = {}
        for index, names in enumerate(self.names):
            for synonym in names.split(","):
                synonyms.setdefault(_squeezed(synonym), index)
        close = difflib.get_close_matches(_squeezed(wanted), list(synonyms), n=5, cutoff=0.8)
        return list(dict.fromkeys(synonyms[name] for name in close))

    def _resolve_name(self, text):
        wanted = text.lower()
        matches = [
            index for index, names in enumerate(self.names)
            if wanted in (synonym.strip().lower() for synonym in names.split(","))
        ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            choices = "; ".join("%d = %s" % (i, self.names[i]) for i in matches)
            raise GuidedGradCamError(
                "class name %r is ambiguous: %s; pass the index instead" % (text, choices))
        near = [self.describe(i) for i in self._suggestions(wanted)][:5]
        hint = "; did you mean: %s" % ", ".join(near) if near else ""
        raise GuidedGradCamError("unknown class name %r%s" % (text, hint))
