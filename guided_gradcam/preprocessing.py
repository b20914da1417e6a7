"""Input preprocessing: RGB (or gray) in [0, 255] → what the model was trained on.

Plain arithmetic, so each works on numpy arrays and on TF tensors alike; the explanation graph
applies it in-graph, and GBP is the gradient w.r.t. its output.
"""
import dataclasses
from typing import Callable

from guided_gradcam.errors import GuidedGradCamError

IMAGENET_MEANS = (123.68, 116.78, 103.94)  # RGB, 0..255 (the VGG/ResNet convention)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    name: str
    description: str
    apply: Callable

    def __call__(self, pixels):
        return self.apply(pixels)


def _per_channel(values, pixels):
    """`values` for RGB input, their mean for a 1-channel input (a gray photo)."""
    channels = pixels.shape[-1]
    return values if channels == 3 else (sum(values) / len(values),)


PREPROCESSINGS = {p.name: p for p in (
    Preprocessing("raw", "float pixels 0..255, unchanged", lambda x: x * 1.0),
    Preprocessing("unit", "pixels / 255", lambda x: x / 255.0),
    Preprocessing("inception", "pixels / 127.5 - 1", lambda x: x / 127.5 - 1.0),
    Preprocessing("vgg", "pixels - ImageNet means (123.68, 116.78, 103.94)",
                  lambda x: x - _per_channel(IMAGENET_MEANS, x)),
    Preprocessing("torch", "(pixels / 255 - ImageNet mean) / std",
                  lambda x: (x / 255.0 - _per_channel(TORCH_MEAN, x)) / _per_channel(TORCH_STD, x)),
)}


CHOICES = ("unit (/255), inception ([-1, 1]), vgg (minus ImageNet means) or torch "
           "(ImageNet mean/std)")


def describe_input(preprocessing, rescaling):
    """(the run header's words for the preprocessing, a note or None): what is known of how
    pixels reach a --model. rescaling: the model's own rescaling layers, described (`sources.
    base.ModelSource.rescaling`); () where it has none; None where its format cannot tell."""
    text = "%s: %s" % (preprocessing.name, preprocessing.description)
    found = "; ".join(rescaling or ())
    if preprocessing.name != "raw":
        note = None
        if found:
            note = ("--preprocess %s rescales the pixels, and the model has its own rescaling "
                    "too: %s; pass --preprocess raw unless it was trained that way"
                    % (preprocessing.name, found))
        return text, note
    if found:
        return "%s; the model's own rescaling: %s" % (text, found), None
    choose = ("if it was trained on rescaled pixels, choose --preprocess %s" % CHOICES)
    if rescaling is None:
        return text, ("cannot tell whether the model rescales its input (its graph keeps no "
                      "Keras layers): it receives float pixels 0..255; %s" % choose)
    return text, ("the model receives float pixels 0..255 and has no Rescaling or "
                  "Normalization layer; %s" % choose)


def get_preprocessing(name):
    try:
        return PREPROCESSINGS[name]
    except KeyError:
        raise GuidedGradCamError("unknown preprocessing %r; choose one of: %s"
                                 % (name, ", ".join(PREPROCESSINGS))) from None
