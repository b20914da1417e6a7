"""The CAM methods, each one unit: a module of this package defining `METHOD`
(`base.CamMethod`: name, title, paper, what it needs, its map). They are found here, in
`rank` order; adding a method is adding its module. No TensorFlow is imported here.

GRADCAM is the paper's map: the explanation's own fields hold it, whatever else is asked.
"""
import sys

from guided_gradcam.errors import parse_choices
from guided_gradcam.methods.base import CamMethod
from guided_gradcam.registry import discover

REGISTRY = discover(sys.modules[__name__], "METHOD", CamMethod)  # {name: CamMethod}
METHODS = tuple(REGISTRY)
TITLES = {name: method.title for name, method in REGISTRY.items()}
GRADCAM = "gradcam"


def parse_methods(text_or_list):
    """'gradcam,layercam' or ['gradcam', …] → a tuple of known method names, in order."""
    return parse_choices(text_or_list, METHODS, "methods are", normalise=str.lower)
