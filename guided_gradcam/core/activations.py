"""What guided backprop does with each activation between the input and the scores.

Guided backprop is defined for ReLU: every Relu/Relu6 created under the override is guided.
Other activations are passed with their ordinary gradient, and a run says which and how many
(a transformer's GELU and attention softmax too: without ReLUs GBP is the plain gradient).
Two imported ReLUs are no activations' ReLUs and get their ordinary gradient back:
- PReLU lowers to relu(x) − α·relu(−x): a learned leaky slope, not a gate;
- hard_silu (hard swish) lowers to x · relu6(x + 3) / 6, hard_sigmoid to relu6(x + 3) / 6:
  a clipped ramp centred at −3, not a rectifier at 0.
"""
import collections

from tensorflow.core.framework import attr_value_pb2
from tensorflow.python.framework import tensor_util

from guided_gradcam.core.graph_paths import skip_identities
from guided_gradcam.core.guided_relu import OVERRIDE_MAP

ORDINARY = ("Sigmoid", "Tanh", "Elu", "Selu", "LeakyRelu", "Softplus", "Softsign", "Erf", "Erfc",
            "Softmax")
_GELU_OPS = ("Erf", "Erfc")


def _constant_value(tensor):
    tensor = skip_identities(tensor)
    if tensor.op.type != "Const":
        return None
    return tensor_util.MakeNdarray(tensor.op.get_attr("value"))


def _is_prelu_relu(op):
    """relu(−x) beside a relu(x) of the same x (either of the two)."""
    x = op.inputs[0]
    if x.op.type == "Neg":
        return any(c.type == "Relu" for c in x.op.inputs[0].consumers())
    return any(c.type == "Neg" and any(r.type == "Relu" for r in c.outputs[0].consumers())
               for c in x.consumers())


def _hard_ramp_kind(op):
    """'hard_silu' or 'hard_sigmoid' for relu6(x + 3) (· x), else None."""
    shifted = op.inputs[0]
    if shifted.op.type not in ("Add", "AddV2"):
        return None
    x, three = shifted.op.inputs
    value = _constant_value(three)
    if value is None:
        x, three = three, x
        value = _constant_value(three)
    if value is None or value.size != 1 or float(value.reshape(-1)[0]) != 3.0:
        return None
    frontier, seen = [op], set()
    for _ in range(3):  # relu6 → (÷ 6) → · x
        frontier = [c for o in frontier for t in o.outputs for c in t.consumers() if c not in seen]
        seen.update(frontier)
        if any(c.type == "Mul" and x in list(c.inputs) for c in frontier):
            return "hard_silu"
    return "hard_sigmoid"


def _is_swish(op):
    """σ(βx) multiplied by x: swish/silu (Keras 3 wraps it in an IdentityN)."""
    x = op.inputs[0]
    sources = {x} | (set(x.op.inputs) if x.op.type == "Mul" else set())
    return any(c.type == "Mul" and sources & set(c.inputs) for c in op.outputs[0].consumers())


def unguide_non_activation_relus(ops):
    """Gives the ReLUs of PReLU and hard_silu/hard_sigmoid their ordinary gradient back;
    returns {kind: count of such layers' ops}."""
    counts = collections.Counter()
    for op in ops:
        if op.type not in OVERRIDE_MAP:
            continue
        kind = "PReLU" if op.type == "Relu" and _is_prelu_relu(op) else (
            _hard_ramp_kind(op) if op.type == "Relu6" else None)
        if kind:
            op._set_attr("_gradient_op_type", attr_value_pb2.AttrValue(s=op.type.encode()))
            counts[kind] += 1
    if counts.get("PReLU"):
        counts["PReLU"] //= 2  # two Relu ops per PReLU
    return dict(counts)


def ordinary_activations(ops):
    """{'Sigmoid (swish)': 16, 'LeakyRelu': 4, …}: activations GBP passes unguided."""
    counts = collections.Counter()
    for op in ops:
        if op.type in ORDINARY:
            name = op.type
            if op.type == "Sigmoid" and _is_swish(op):
                name = "Sigmoid (swish)"
            elif op.type in _GELU_OPS:
                name = "%s (gelu)" % op.type
            elif op.type == "Softmax" and op.outputs[0].shape.ndims == 4:
                name = "Softmax (attention)"  # a transformer's [B, heads, N, N] probabilities
            counts[name] += 1
    return dict(counts)


def describe(unguided):
    """'Sigmoid ×16 (swish), PReLU ×2' for a report line."""
    parts = []
    for name, count in sorted(unguided.items(), key=lambda item: (-item[1], item[0])):
        base, _, note = name.partition(" (")
        parts.append("%s ×%d%s" % (base, count, " (" + note if note else ""))
    return ", ".join(parts)



