"""The CAM methods, each one unit: a module of this package defining `METHOD`
(`base.CamMethod`: name, title, paper, what it needs, its map). They are found here, in
`rank` order; adding a method is adding its module. No TensorFlow is imported here.

GRADCAM is the paper's map: the explanation's own fields hold it, whatever else is asked.
"""
import importlib
import pkgutil

from guided_gradcam.errors import GuidedGradCamError, parse_choices
from guided_gradcam.methods.base import CamMethod


def _discover():
    found = []
    for module in pkgutil.iter_modules(__path__):
        method = getattr(importlib.import_module("%s.%s" % (__name__, module.name)), "METHOD",
                         None)
        if isinstance(method, CamMethod):
            found.append(method)
    return {method.name: method for method in sorted(found, key=lambda m: m.rank)}


REGISTRY = _discover()  # {name: CamMethod}
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
