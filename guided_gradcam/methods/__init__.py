"""The CAM methods, each one unit: a module of this package defining `METHOD`
(`base.CamMethod`: name, title, paper, what it needs, its map). They are found here, in
`rank` order; adding a method is adding its module. No TensorFlow is imported here.

GRADCAM is the paper's map: the explanation's own fields hold it, whatever else is asked.
"""
import sys

from guided_gradcam.errors import GuidedGradCamError, parse_choices
from guided_gradcam.methods.base import CamMethod
from guided_gradcam.registry import discover

REGISTRY = discover(sys.modules[__name__], "METHOD", CamMethod)  # {name: CamMethod}
METHODS = tuple(REGISTRY)
TITLES = {name: method.title for name, method in REGISTRY.items()}
GRADCAM = "gradcam"


def parse_methods(text_or_list):
    """'gradcam,layercam' or ['gradcam', …] → a tuple of known method names, in order."""
    names = (text_or_list.lower() if isinstance(text_or_list, str)
             else [name.lower() for name in text_or_list])
    try:
        return parse_choices(names, METHODS, "methods")
    except GuidedGradCamError:  # the message quotes what was given, as given
        raise GuidedGradCamError("methods are a comma-separated subset of %s; got %r"
                                 % (",".join(METHODS), text_or_list)) from None
