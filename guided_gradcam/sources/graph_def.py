"""Models that arrive as a GraphDef (frozen `.pb`, and what the Keras and SavedModel sources
freeze to): imported with `import_graph_def` into the explanation graph, under the override
that is active while `place` runs, so every imported Relu/Relu6 gets the guided gradient.
"""
import difflib
import re

import tensorflow.compat.v1 as tf

from guided_gradcam.errors import GuidedGradCamError, first_line
from guided_gradcam.core import model_safety
from guided_gradcam.core.graph_paths import ops_between
from guided_gradcam.core.guided_relu import OVERRIDE_MAP
from guided_gradcam.sources.base import ModelSource, PlacedModel

SCOPE = "model"
CALL_OPS = {"If", "StatelessIf", "While", "StatelessWhile", "PartitionedCall",
            "StatefulPartitionedCall", "Case", "StatelessCase"}


def read_graph_def(path):
    """A GraphDef from a binary (or text) `.pb` file."""
    from google.protobuf import text_format

    graph_def = tf.GraphDef()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise GuidedGradCamError("cannot read %s: %s" % (path, error.strerror)) from None
    try:
        graph_def.ParseFromString(data)
    except Exception:  # protobuf's DecodeError; a .pbtxt is text
        try:
            text_format.Merge(data.decode("utf-8"), graph_def)
        except Exception:
            raise GuidedGradCamError("%s is not a GraphDef (.pb)" % path) from None
    if not graph_def.node:
        raise GuidedGradCamError("%s is not a GraphDef (.pb): it has no nodes" % path)
    return graph_def


def check_no_guided_ops_in_functions(graph_def, name):
    """Ops inside function bodies (If/While branches, un-inlined calls) are created from the
    function library, not under the override: a Relu there would silently stay unguided."""
    hidden = sorted({function.signature.name for function in graph_def.library.function
                     for node in function.node_def if node.op in OVERRIDE_MAP})
    calls = [node.name for node in graph_def.node if node.op in CALL_OPS]
    if hidden and calls:
        raise GuidedGradCamError(
            "%s has ReLUs inside function bodies (%s, called by %s), where they would not get "
            "guided gradients: save it with control flow lowered (e.g. freeze with "
            "convert_variables_to_constants_v2(..., lower_control_flow=True))"
            % (name, ", ".join(hidden[:3]), ", ".join(calls[:3])))


def refuse_training_batch_norm(graph, scope, library, name):
    """A BatchNorm that normalises with batch statistics (is_training fed True into a TF 1
    graph's cond) would make each image's maps depend on its batch: refused, as the lean
    gradient refuses one outside a cond. The predicate is a constant here: feeds are bound at
    import."""
    training = {function.signature.name for function in library.function
                if any(node.op.startswith("FusedBatchNorm") and node.attr["is_training"].b
                       for node in function.node_def)}
    if not training:
        return
    for op in graph.get_operations():
        if not op.name.startswith(scope) or op.type not in ("If", "StatelessIf"):
            continue
        predicate = tf.get_static_value(op.inputs[0])  # None: not fed (refused later), or
        if predicate is None:                           # a default that decides at run time
            continue
        if op.get_attr("then_branch" if predicate else "else_branch").name in training:
            raise GuidedGradCamError(
                "%s normalises with batch statistics in %s (is_training=True): explanations "
                "need the inference-mode network; feed is_training=false" % (
                    name, op.name[len(scope):]))


def _placeholders(graph_def):
    return [node for node in graph_def.node if node.op == "Placeholder"]


def _shape_of(node):
    if "shape" not in node.attr or node.attr["shape"].shape.unknown_rank:
        return None
    return tuple(d.size if d.size >= 0 else None for d in node.attr["shape"].shape.dim)


def _sinks(graph_def):
    """Nodes whose outputs nothing reads (the candidate outputs)."""
    read = {re.sub(r"^\^|:\d+$", "", name) for node in graph_def.node for name in node.input}
    return [node for node in graph_def.node
            if node.name not in read and node.op not in ("NoOp", "Const", "Placeholder", "Assert",
                                                         "SaveV2", "RestoreV2")]


def default_input_name(graph_def, fed, name):
    candidates = [node.name for node in _placeholders(graph_def) if node.name not in fed]
    if len(candidates) != 1:
        raise GuidedGradCamError(
            "%s has %d placeholders (%s): name the image input with --input%s"
            % (name, len(candidates), ", ".join(candidates[:8]) or "none",
               " and feed the others with --feed NAME=VALUE" if len(candidates) > 1 else ""))
    return candidates[0] + ":0"


def default_output_name(graph_def, name):
    sinks = [node.name for node in _sinks(graph_def)]
    if len(sinks) != 1:
        raise GuidedGradCamError(
            "%s has %d candidate outputs (%s): name the scores with --output"
            % (name, len(sinks), ", ".join(sinks[:8]) or "none"))
    return sinks[0] + ":0"


def input_shape_of(graph_def, input_name):
    """(height, width, channels) of the named placeholder, None where open."""
    op_name = input_name.split(":")[0]
    for node in graph_def.node:
        if node.name == op_name:
            shape = _shape_of(node)
            if shape is None:
                return (None, None, 3)
            if len(shape) != 4:
                raise GuidedGradCamError(
                    "input %s has shape %s; images need (batch, height, width, channels)"
                    % (input_name, list(shape)))
            return shape[1:]
    raise GuidedGradCamError("no input named %r in the model" % input_name)


class GraphDefSource(ModelSource):
    """A GraphDef with every weight a constant. feeds: {placeholder name: value}, bound as
    constants at import."""

    def __init__(self, graph_def, name, preprocessing, input_name=None, output_name=None,
                 feeds=None, rename_scope=None, input_shape=None, trust_model=False):
        self.graph_def = graph_def
        self.name = name
        self.preprocessing = preprocessing
        self.feeds = dict(feeds or {})
        self.input_name, self.output_name = input_and_output_names(
            graph_def, name, input_name, output_name, self.feeds)
        if not trust_model:  # what computing the output runs: the allow-list, before any run
            model_safety.check_graph_def(graph_def, [self.output_name], name)
        check_no_guided_ops_in_functions(graph_def, name)
        self.input_shape = input_shape or input_shape_of(graph_def, self.input_name)
        self.rename_scope = rename_scope  # raw scope → layer name users know (Keras)
        self.rescaling = rescaling_scopes(graph_def)

    def place(self, net_input):
        input_map = {self.input_name: net_input}
        placeholders = {node.name: node for node in _placeholders(self.graph_def)}
        for name, value in self.feeds.items():
            node = placeholders.get(name.split(":")[0])
            if node is None:
                raise GuidedGradCamError("--feed %s: the model has no placeholder %r (it has: "
                                         "%s)" % (name, name, ", ".join(placeholders)))
            input_map[tensor_name(name)] = tf.constant(value, dtype=node.attr["dtype"].type)
        try:
            output, = tf.import_graph_def(self.graph_def, input_map=input_map,
                                          return_elements=[self.output_name], name=SCOPE)
        except (ValueError, KeyError) as error:
            raise _import_error(error, self.graph_def, self.name) from None
        scope = SCOPE + "/"
        refuse_training_batch_norm(tf.get_default_graph(), scope, self.graph_def.library,
                                   self.name)
        layers, aliases = scope_layers(scope, net_input, output, self.rename_scope)
        token_layers, token_aliases = scope_layers(scope, net_input, output, self.rename_scope,
                                                   rank=3)
        return PlacedModel(output=output, layers=layers, default_layer=default_layer(layers),
                           restore=lambda session: None, scope=scope,
                           layer_aliases={**token_aliases, **aliases}, token_layers=token_layers)


KERAS_RESCALING_SCOPE = re.compile(r"^(rescaling|normalization)(_\d+)?$")


def rescaling_scopes(graph_def):
    """A graph keeps no Keras layers, but a SavedModel or frozen graph of a Keras model keeps
    their names in its op names (`StatefulPartitionedCall/functional_1/rescaling_1/mul`): the
    scopes named as Keras names its Rescaling and Normalization layers, described; None where
    there is none (the graph cannot tell whether it rescales its input)."""
    scopes = {}
    for node in graph_def.node:
        parts = node.name.split("/")[:-1]
        for end, part in enumerate(parts, 1):
            if KERAS_RESCALING_SCOPE.match(part):
                kind = "Rescaling" if part.startswith("rescaling") else "Normalization"
                scope = "/".join(p for p in parts[:end] if p != "StatefulPartitionedCall")
                scopes.setdefault(scope, "%s (a scope named like a Keras %s layer)"
                                  % (scope, kind))
                break
    return tuple(scopes.values()) or None


def input_and_output_names(graph_def, name, input_name, output_name, feeds):
    """The input and output tensor names: as given, or the graph's only candidates; each
    given name, fed ones too, checked against the graph with close matches for a typo."""
    input_name = tensor_name(input_name or default_input_name(
        graph_def, {fed.split(":")[0] for fed in feeds}, name))
    output_name = tensor_name(output_name or default_output_name(graph_def, name))
    node_names = [node.name for node in graph_def.node]
    for flag, tensor in [("--input", input_name), ("--output", output_name)] + [
            ("--feed", tensor_name(fed)) for fed in feeds]:
        op_name = tensor.split(":")[0]
        if op_name not in node_names:
            close = difflib.get_close_matches(op_name, node_names, n=5, cutoff=0.5)
            raise GuidedGradCamError("%s %s: the model has no op %r%s" % (
                flag, tensor, op_name, "; close matches: " + ", ".join(close) if close else ""))
    return input_name, output_name


def tensor_name(name):
    return name if ":" in name else name + ":0"


def _import_error(error, graph_def, name):
    return GuidedGradCamError("cannot import %s: %s" % (name, first_line(error)))


def scope_layers(scope, model_input, output, rename=None, rank=4):
    """({layer name: 4-D tensor}, {alias: layer name}) of an imported graph (`rank=3`: its
    token layers, [batch, tokens, channels]).

    A layer is a name scope on the path from the input to the output, and its tensor the last
    4-D tensor that leaves that scope (a Keras layer's output, a slim block's). `rename` maps
    the raw scopes to {raw: the name users know (Keras 3 adds `_1` to every scope of a traced
    model), or None for scopes that are no layer}; the raw scope stays usable as an alias.
    A 4-D op in no layer's scope (a `tf.Module`'s `StatefulPartitionedCall/Relu`, a TF 1 graph
    built without scopes) is a layer of its own, named by its op name.
    """
    on_path = ops_between(model_input, output)
    position = {op: index for index, op in enumerate(on_path)}
    four_d = [op for op in on_path if op.name.startswith(scope) and op.outputs
              and op.outputs[0].shape.ndims == rank]
    exits = {}
    for op in four_d:
        parts = op.name[len(scope):].split("/")[:-1]
        consumers = [c for c in op.outputs[0].consumers() if c in position]
        for depth in range(1, len(parts) + 1):
            prefix = scope + "/".join(parts[:depth]) + "/"
            if op is output.op or any(not c.name.startswith(prefix) for c in consumers):
                exits["/".join(parts[:depth])] = op.outputs[0]  # a later exit replaces it
    ordered = sorted(exits.items(), key=lambda item: position[item[1].op])
    names = rename([raw for raw, _ in ordered]) if rename else {}
    layers, aliases, layer_scopes = {}, {}, set()
    for raw, tensor in ordered:
        name = names.get(raw, raw) if rename else raw
        if not name or name in layers:
            continue
        layers[name] = tensor
        layer_scopes.add(raw)
        if name != raw:
            aliases[raw] = name
    for op in four_d:
        parts = op.name[len(scope):].split("/")[:-1]
        if op.type not in PLUMBING_OPS and not any(
                "/".join(parts[:depth]) in layer_scopes for depth in range(1, len(parts) + 1)):
            layers.setdefault(op.name[len(scope):], op.outputs[0])
    ordered_names = sorted(layers, key=lambda name: position[layers[name].op])
    return {name: layers[name] for name in ordered_names}, aliases


PLUMBING_OPS = {"Identity", "IdentityN", "Placeholder", "PlaceholderWithDefault", "Const"}


def default_layer(layers):
    """The last 4-D layer output with a spatial extent (the last conv block's activation);
    None when there is none (then `--layer` must name a tensor)."""
    spatial = [name for name, tensor in layers.items()
               if (tensor.shape[1] or 2) * (tensor.shape[2] or 2) > 1]
    return spatial[-1] if spatial else None
