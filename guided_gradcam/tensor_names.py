"""Tensors and layers by the names users know: `input:0`, `logits/BiasAdd`, Keras layer names.

Names are looked up inside the model's scope in the explanation graph (imported models live
under `model/`), so users write the names of their own graph. Unknown names list close matches.
"""
import difflib
import re

from guided_gradcam.errors import GuidedGradCamError


def find_tensor(graph, name, scope="", what="tensor"):
    """The tensor `name` ('op:0', or an op name for its first output) in `scope` of `graph`."""
    full = scope + name
    try:
        if ":" in name:
            return graph.get_tensor_by_name(full)
        op = graph.get_operation_by_name(full)
    except (KeyError, ValueError):
        names = [op.name[len(scope):] for op in graph.get_operations()
                 if op.name.startswith(scope)]
        close = difflib.get_close_matches(name.split(":")[0], names, n=5, cutoff=0.5)
        hint = "; close matches: %s" % ", ".join(close) if close else ""
        raise GuidedGradCamError("no %s named %r in the model%s" % (what, name, hint)) from None
    if not op.outputs:
        raise GuidedGradCamError("op %r has no outputs; name one of its tensors" % name)
    return op.outputs[0]


def select_layer(placed, graph, name=None):
    """(name, 4-D tensor) of the Grad-CAM layer: a layer name (Keras names also inside nested
    models), an alias, a tensor or op name; None → the model's default layer."""
    name = name or placed.default_layer
    if name in placed.layers:
        return name, placed.layers[name]
    if name in placed.layer_aliases:
        real = placed.layer_aliases[name]
        return real, placed.layers[real]
    nested = [layer for layer in placed.layers if layer.endswith("/" + name)]
    if not nested:  # traced Keras 3 scopes carry `_1` suffixes: conv_pw_13_relu_1
        pattern = re.compile(r"(^|.*/)%s$" % "/".join(
            re.escape(part) + r"(_\d+)?" for part in name.split("/")))
        nested = [layer for layer in placed.layers if pattern.match(layer)]
    if len(nested) == 1:
        return nested[0], placed.layers[nested[0]]
    if len(nested) > 1:
        raise GuidedGradCamError("layer name %r is ambiguous: %s" % (name, ", ".join(nested)))
    try:
        tensor = find_tensor(graph, name, placed.scope, what="layer or tensor")
    except GuidedGradCamError:
        raise GuidedGradCamError(
            "unknown layer %r; valid layers: %s" % (name, ", ".join(placed.layers))) from None
    if tensor.shape.ndims != 4:
        raise GuidedGradCamError(
            "layer %r has shape %s; Grad-CAM needs a 4-D (batch, height, width, channels) "
            "activation" % (name, tensor.shape))
    return name, tensor


def parse_feed(text):
    """'is_training=false' → ('is_training', False); numbers become numbers."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise GuidedGradCamError("--feed takes NAME=VALUE, e.g. is_training=false; got %r" % text)
    value = value.strip()
    lowered = value.lower()
    if lowered in ("true", "false"):
        return name.strip(), lowered == "true"
    for kind in (int, float):
        try:
            return name.strip(), kind(value)
        except ValueError:
            pass
    return name.strip(), value
