"""The one interface between a model format and the explanation graph.

A `ModelSource` knows how to put its model's ops into a graph: `place(net_input)` is called by
`graph.build_explanation_graph` inside the guided-gradient override, with the preprocessed
input tensor, and returns a `PlacedModel`: the output tensor, the layers by name, extra feeds
and how to restore weights. Everything after that (the head, Grad-CAM, GBP) knows no format.
"""
import dataclasses
from typing import Callable, Dict, Optional, Tuple

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.preprocessing import Preprocessing


@dataclasses.dataclass
class PlacedModel:
    output: object  # tf.Tensor [B, C] (or [B]): scores or probabilities; heads.py finds the head
    layers: Dict[str, object]  # {name: 4-D tf.Tensor}, in graph order; the Grad-CAM candidates
    default_layer: Optional[str]  # None: the model has no spatial 4-D layer; --layer must say
    restore: Callable  # restore(session): loads the weights (frozen graphs: nothing to do)
    feeds: Dict[object, object] = dataclasses.field(default_factory=dict)  # extra placeholders
    background_logits: int = 0  # leading logits that are never a predicted class (slim 1001)
    scope: str = ""  # prefix of the model's op names in the graph ("" or "model/")
    layer_aliases: Dict[str, str] = dataclasses.field(default_factory=dict)  # alias → layer name
    # {name: 3-D tf.Tensor [B, tokens, channels]}, in graph order: a transformer's token layers
    token_layers: Dict[str, object] = dataclasses.field(default_factory=dict)


def checked_input_size(name, native, size, fixed=False):
    """(height, width) to build `name` with: `size`, or its `native` (h, w) when None; refused
    where fully connected layers fix the size, or below 32x32."""
    if size is None:
        return tuple(native)
    if fixed and tuple(size) != tuple(native):
        raise GuidedGradCamError(
            "%s takes only %dx%d input (its fully connected layers fix the size); got %dx%d"
            % ((name,) + tuple(native) + tuple(size)))
    if min(size) < 32:
        raise GuidedGradCamError("input size %dx%d is too small (32x32 at least)" % tuple(size))
    return tuple(size)


class ModelSource:
    """A model in some format. Subclasses set the attributes and implement `place`."""
    name: str = "model"
    preprocessing: Preprocessing
    # (height, width, channels) from the model's signature; None where the model leaves it open
    input_shape: Tuple[Optional[int], Optional[int], Optional[int]] = (None, None, 3)
    fixed_input_size: bool = False  # fully connected layers need exactly the native size
    class_names: Optional[Tuple[str, ...]] = None  # the model's own class names, if it has them
    # The model's own input-rescaling layers, described ('rescaling (Rescaling: x / 255)');
    # () where it has none; None where the format cannot tell (a graph keeps no Keras layers)
    rescaling: Optional[Tuple[str, ...]] = None

    def check_input_size(self, size=None):
        """(height, width, channels) to build with: `size` (h, w) or the model's own."""
        native_height, native_width, channels = self.input_shape
        height, width = checked_input_size(self.name, (native_height, native_width), size,
                                           self.fixed_input_size)
        if height is None or width is None:
            raise GuidedGradCamError(
                "%s leaves its input size open: pass --input_size HxW" % self.name)
        if channels not in (1, 3):
            raise GuidedGradCamError(
                "%s takes %s input channels; only 1 (grayscale) or 3 (RGB) are supported"
                % (self.name, channels))
        return height, width, channels

    def place(self, net_input):
        """Creates the model's ops on `net_input` in the default graph → PlacedModel."""
        raise NotImplementedError
