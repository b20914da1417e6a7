"""The Grad-CAM family's names (no TensorFlow here: rendering and the CLI's flag checks use
them); the formulas are in `cam_methods`."""
from guided_gradcam.errors import GuidedGradCamError

METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam")
TITLES = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "xgradcam": "XGrad-CAM",
          "layercam": "LayerCAM", "hirescam": "HiResCAM"}


def parse_methods(text_or_list):
    """'gradcam,layercam' or ['gradcam', …] → a tuple of known method names, in order."""
    names = text_or_list.split(",") if isinstance(text_or_list, str) else list(text_or_list)
    names = tuple(dict.fromkeys(name.strip().lower() for name in names if name.strip()))
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise GuidedGradCamError("methods are a comma-separated subset of %s; got %r"
                                 % (",".join(METHODS), text_or_list))
    return names
