"""Guided Grad-CAM for TF-Slim networks (Selvaraju et al., arXiv 1610.02391).

The public API is imported lazily, so `import guided_gradcam` does not load TensorFlow until
something that needs it is used.
"""
import importlib

_EXPORTS = {
    "GuidedGradCam": "guided_gradcam.explainer",
    "Explanation": "guided_gradcam.explanation",
    "GuidedGradCamError": "guided_gradcam.errors",
    "EmptyRegionError": "guided_gradcam.segmentation",
    "NETWORKS": "guided_gradcam.zoo.networks",
    "load_photo": "guided_gradcam.images",
    "fit_to_network": "guided_gradcam.images",
    "render_outputs": "guided_gradcam.outputs.files",
    "save_outputs": "guided_gradcam.outputs.files",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module 'guided_gradcam' has no attribute %r" % name)
    return getattr(importlib.import_module(_EXPORTS[name]), name)
