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
    """(name, tensor) of the Grad-CAM layer, 4-D or a token layer (batch, tokens, channels):
    a layer name (Keras names also inside nested models), an alias, a tensor or op name;
    None → the model's default layer."""
    name = name or placed.default_layer
    if name is None:
        raise GuidedGradCamError("the model has no 4-D (batch, height, width, channels) layer "
                                 "between its input and output for Grad-CAM")
    layers = {**placed.layers, **placed.token_layers}
    if name in layers:
        return name, layers[name]
    if name in placed.layer_aliases:
        real = placed.layer_aliases[name]
        return real, layers[real]
    nested = [layer for layer in layers if layer.endswith("/" + name)]
    if not nested:  # traced Keras 3 scopes carry `_1` suffixes: conv_pw_13_relu_1
        pattern = re.compile(r"(^|.*/)%s$" % "/".join(
            re.escape(part) + r"(_\d+)?" for part in name.split("/")))
        nested = [layer for layer in layers if pattern.match(layer)]
    if len(nested) == 1:
        return nested[0], layers[nested[0]]
    if len(nested) > 1:
        raise GuidedGradCamError("layer name %r is ambiguous: %s" % (name, ", ".join(nested)))
    try:
        tensor = find_tensor(graph, name, placed.scope, what="layer or tensor")
    except GuidedGradCamError:
        raise GuidedGradCamError(unknown_layer_message(name, layers)) from None
    if tensor.shape.ndims not in (3, 4):
        raise GuidedGradCamError(
            "layer %r has shape %s; Grad-CAM needs a 4-D (batch, height, width, channels) "
            "activation or a token layer (batch, tokens, channels)" % (name, tensor.shape))
    return name, tensor


def unknown_layer_message(name, layers):
    """'unknown layer ...' on its first line, then every valid layer one a line with its size
    (`block_13_expand_relu  6x6x576`; a token layer's tokens x channels, `block1_norm1  17x32`),
    the names nearest to `name` first (difflib's ratio to
    the whole name or its last part, for nested layers; ties in graph order)."""
    def size(tensor):
        dims = tensor.shape.as_list()[1:] if tensor.shape.ndims in (3, 4) else []
        return "x".join("?" if dim is None else str(dim) for dim in dims)

    def closeness(layer):
        return max(difflib.SequenceMatcher(None, name.lower(), candidate.lower()).ratio()
                   for candidate in (layer, layer.rsplit("/", 1)[-1]))

    ordered = sorted(layers, key=closeness, reverse=True)  # stable: graph order among ties
    width = max((len(layer) for layer in ordered), default=0)
    lines = ["  %s  %s" % (layer.ljust(width), size(layers[layer])) for layer in ordered]
    return "\n".join(["unknown layer %r; the %d valid layers (height x width x channels), "
                      "nearest names first:" % (name, len(ordered))] + lines)


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
