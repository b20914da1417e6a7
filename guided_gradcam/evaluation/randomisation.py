"""Weight randomisation for the sanity checks of Adebayo et al., *Sanity Checks for Saliency
Maps* (NeurIPS 2018): cascading (from the logits down, block by block) and independent (one
block at a time) re-initialisation of the network's weights, as session feeds.

Nothing in the explainer changes: `randomised_feeds` returns {tensor: value} for one
`GuidedGradCam.explain(images, labels, feeds=...)` (or `forward`) run, and a run without them
gives the original maps. The graph is finalized, so no op is added; existing tensors are fed:

- variables (TF-Slim networks, TF 1 `.meta` graphs): every read of the variable, i.e. the
  outputs of all ReadVariableOps of a resource handle (slim reads each one several times), or
  the Identity `read` snapshots of a ref variable (VariableV2);
- frozen models (`.keras`, `.h5`, SavedModel, `.pb`): the float Const ops in the model's scope
  (only where the network reads no variable: elsewhere consts are fixed, not learned).

Only weights that the logits depend on through the network input's path count; scalars and
non-float tensors are never weights.

Blocks: a slim (or `.meta`, or frozen `.pb`) weight belongs to its variable's scope without the
last component, a trailing `/BatchNorm` folded into its layer, so a conv and its BatchNorm are
one block ("MobilenetV1/Conv2d_13_pointwise"). A Keras model's weight belongs to the Keras
layer that owns it ("conv_pw_13"); a BatchNormalization layer is a layer of its own there
("conv_pw_13_bn"), hence a block of its own. Blocks are in graph order, input to output.

Re-initialisation (`random_value`), our stated choice: a truncated normal (resampled beyond
2σ) with the original tensor's own mean and standard deviation, σ floored at
1e-2·max(1, |mean|) so that a constant tensor (untrained gammas of ones) still changes; a
tensor that is non-negative everywhere and not all zero (BatchNorm variances and scales; a dead
channel's variance may be exactly 0) takes the absolute value, so it stays valid. Each layer
keeps its scale, so activations neither vanish nor explode (which would make every map
trivially zero or NaN), while what was learned is gone.
Values are deterministic: numpy's `default_rng` seeded from (seed, crc32 of the weight's name),
so a weight gets the same random value in every step and every run, whatever else is
randomised.
"""
import dataclasses
import weakref
import zlib

import numpy as np
import tensorflow.compat.v1 as tf

from guided_gradcam.core.graph_paths import ops_between

READ_OPS = {"VarHandleOp": "ReadVariableOp", "VariableV2": "Identity"}  # variable: its reads
VARIABLE_OPS = tuple(READ_OPS)


@dataclasses.dataclass(frozen=True)
class Weight:
    name: str  # the variable's or const's op name, without the model's scope
    tensors: tuple  # every tf.Tensor to feed: together they replace the weight for a run
    value: np.ndarray = dataclasses.field(compare=False, repr=False)  # the original value


@dataclasses.dataclass(frozen=True)
class WeightBlock:
    name: str  # "MobilenetV1/Conv2d_0", "resnet_v1_50/logits"; a Keras layer name
    weights: tuple  # of Weight


_CACHE = weakref.WeakKeyDictionary()  # explainer → its blocks: values read once


def weight_blocks(explainer):
    """[WeightBlock] of `explainer`'s network in graph order, input → output (the last holds
    the logits layer)."""
    if explainer not in _CACHE:
        _CACHE[explainer] = _find_blocks(explainer)
    return _CACHE[explainer]


def _find_blocks(explainer):
    g = explainer.graph
    scope = g.model.scope
    path = ops_between(g.net_input, g.logits)
    on_path = set(path) | {g.net_input.op}  # nothing before the network input is a weight
    found, seen = [], set()  # weight source ops, in the order of their first consumer
    for op in path:
        frontier = [t.op for t in op.inputs if t.op not in on_path]
        while frontier:
            source = frontier.pop()
            if source in seen:
                continue
            seen.add(source)
            if _is_weight(source, scope):
                found.append(source)
            frontier.extend(t.op for t in source.inputs if t.op not in on_path)
    if any(source.type in VARIABLE_OPS for source in found):
        # Weights are variables: consts there are fixed parts (slim's BatchNorm without a
        # scale multiplies by a Const of ones), not learned.
        found = [source for source in found if source.type in VARIABLE_OPS]
    tensors = [_feeds_of(source, on_path) for source in found]
    values = explainer.session.run([fed[0] for fed in tensors])
    layer_of = _keras_layers(explainer, [source.name[len(scope):] for source in found])
    blocks = {}  # dicts keep insertion order: a block sits where its first weight is read
    for source, fed, value in zip(found, tensors, values):
        name = source.name[len(scope):]
        weight = Weight(name, fed, np.asarray(value, np.float32))
        blocks.setdefault(layer_of.get(name) or _scope_block(name), []).append(weight)
    return [WeightBlock(name, tuple(weights)) for name, weights in blocks.items()]


def _is_weight(op, scope):
    if op.type in VARIABLE_OPS:
        dtype, shape = op.get_attr("dtype"), tf.TensorShape(op.get_attr("shape"))
    elif op.type == "Const" and op.name.startswith(scope):  # not fed values bound at import
        dtype, shape = op.outputs[0].dtype, op.outputs[0].shape
    else:
        return False
    return dtype.is_floating and shape.ndims is not None and shape.ndims > 0


def _feeds_of(source, on_path):
    """The tensors that together carry a weight's value into every op that reads it."""
    if source.type == "Const":
        return (source.outputs[0],)
    handle = source.outputs[0]
    if any(consumer in on_path for consumer in handle.consumers()):
        raise ValueError("%s is read directly by the network, not through a read op: it "
                         "cannot be fed" % source.name)
    reads = tuple(c.outputs[0] for c in handle.consumers() if c.type == READ_OPS[source.type])
    if not reads:
        raise ValueError("variable %s has no read op to feed" % source.name)
    return reads


def _scope_block(name):
    """The variable's scope without its last component, BatchNorm folded into its layer."""
    block = name.rsplit("/", 1)[0] if "/" in name else name
    return block[:-len("/BatchNorm")] if block.endswith("/BatchNorm") else block


def _keras_layers(explainer, names):
    """{weight name: Keras layer path} where the source knows its Keras layers: the longest
    traced scope of each name that the source's renamer maps to a layer."""
    # KerasSource's renamer (raw traced scope → layer path): graph_def.scope_layers uses it
    # for 4-D layers only, and Dense or BatchNorm weights need it too.
    rename = getattr(explainer.source, "rename_scope", None)
    if rename is None:
        return {}
    prefixes = {name: ["/".join(name.split("/")[:depth])
                       for depth in range(len(name.split("/")) - 1, 0, -1)] for name in names}
    layers = rename(sorted({p for candidates in prefixes.values() for p in candidates}))
    return {name: next((layers[p] for p in candidates if layers.get(p)), None)
            for name, candidates in prefixes.items()}


def random_value(weight, seed=0):
    """The re-initialised value of `weight` (float32, its shape): see the module docstring."""
    rng = np.random.default_rng([int(seed), zlib.crc32(weight.name.encode("utf-8"))])
    original = weight.value.astype(np.float64)
    mean = float(original.mean())
    sigma = max(float(original.std()), 1e-2 * max(1.0, abs(mean)))
    draws = rng.standard_normal(original.shape)
    outside = np.abs(draws) > 2.0
    while outside.any():  # truncated: resample beyond 2σ, as tf.truncated_normal
        draws[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(draws) > 2.0
    value = mean + sigma * draws
    if original.min() >= 0 and original.max() > 0:  # variances, scales: stay valid
        value = np.abs(value)
    return value.astype(np.float32)


def cascading_steps(blocks):
    """[(label, block indices)]: step k randomises the top k blocks, logits first; the label
    is the block added at that step."""
    return [(blocks[first].name, tuple(range(first, len(blocks))))
            for first in reversed(range(len(blocks)))]


def independent_steps(blocks):
    """[(label, (index,))]: one block at a time, from the top down."""
    return [(blocks[index].name, (index,)) for index in reversed(range(len(blocks)))]


def randomised_feeds(blocks, indices, seed=0):
    """{tensor: random value} replacing every weight of blocks[i] for i in `indices`."""
    feeds = {}
    for index in indices:
        for weight in blocks[index].weights:
            value = random_value(weight, seed)
            feeds.update((tensor, value) for tensor in weight.tensors)
    return feeds
