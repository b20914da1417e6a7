"""SavedModel folders: the signature function (default `serving_default`), frozen with
`convert_variables_to_constants_v2` and placed as a GraphDef."""
import os
import re

from guided_gradcam.core import model_safety
from guided_gradcam.errors import GuidedGradCamError, first_line
from guided_gradcam.sources.graph_def import GraphDefSource
from guided_gradcam.core.tf_eager import eager


def is_saved_model(path):
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, name)) for name in ("saved_model.pb", "saved_model.pbtxt"))


class SavedModelSource(GraphDefSource):
    def __init__(self, path, preprocessing, signature=None, output_name=None, trust_model=False):
        signature = signature or "serving_default"
        if not trust_model:  # from saved_model.pb: loading already runs restore and initialisers
            model_safety.check_saved_model(path)
        with eager():
            import tensorflow as tf
            from tensorflow.python.framework.convert_to_constants import (
                convert_variables_to_constants_v2)

            try:
                loaded = tf.saved_model.load(path)
            except Exception as error:
                raise GuidedGradCamError("cannot load SavedModel %s: %s"
                                         % (path, first_line(error))) from None
            if signature not in loaded.signatures:
                raise GuidedGradCamError("SavedModel %s has no signature %r; it has: %s" % (
                    path, signature, ", ".join(loaded.signatures) or "none"))
            function = loaded.signatures[signature]
            try:
                frozen = convert_variables_to_constants_v2(function)
            except Exception as error:
                raise GuidedGradCamError("cannot freeze signature %r of %s: %s"
                                         % (signature, path, first_line(error))) from None
            graph_def = frozen.graph.as_graph_def()
            if len(frozen.inputs) != 1:
                raise GuidedGradCamError("signature %r of %s has %d inputs; only one image "
                                         "input is supported" % (signature, path,
                                                                 len(frozen.inputs)))
            input_name = frozen.inputs[0].name
            shape = tuple(frozen.inputs[0].shape.as_list() or ())
            keys = sorted(function.structured_outputs)  # flattened in sorted key order
            outputs = dict(zip(keys, (t.name for t in frozen.outputs)))
        if output_name in outputs:
            output_name = outputs[output_name]  # an output key of the signature
        elif output_name is None:
            if len(outputs) != 1:
                raise GuidedGradCamError("signature %r of %s has %d outputs (%s): name one "
                                         "with --output" % (signature, path, len(outputs),
                                                            ", ".join(outputs)))
            output_name = next(iter(outputs.values()))
        if len(shape) != 4:
            raise GuidedGradCamError("signature %r of %s takes input of shape %s; images need "
                                     "(batch, height, width, channels)" % (signature, path, shape))
        super().__init__(graph_def, path, preprocessing, input_name=input_name,
                         output_name=output_name, input_shape=shape[1:],
                         rename_scope=_signature_scopes, trust_model=trust_model)


def _signature_scopes(raws):
    """A frozen signature inlines its function: `StatefulPartitionedCall/model_1/conv_1` is
    the layer `model_1/conv_1`, and `Func/…` scopes hold the call's plumbing, no layers. When
    the scopes are a Keras 3 trace's (one model scope, `_N` on it and on every layer), layers
    get their Keras names, `model_1/conv_1` → `conv`, and scopes inside a layer
    (`conv_bn_1/batchnorm`) are no layers."""
    inner = {}
    for raw in raws:
        name = raw
        while name.startswith("StatefulPartitionedCall/"):
            name = name[len("StatefulPartitionedCall/"):]
        if not (name == "Func" or name.startswith("Func/") or name == "StatefulPartitionedCall"):
            inner[raw] = name
    parts = {raw: name.split("/") for raw, name in inner.items()}
    tops = {components[0] for components in parts.values()}
    if len(tops) == 1 and re.search(r"_\d+$", next(iter(tops))):
        for raw, components in parts.items():
            keras_scope = all(re.search(r"_\d+$", c) for c in components)
            inner[raw] = "/".join(re.sub(r"_\d+$", "", c) for c in components[1:]) \
                if keras_scope and len(components) > 1 else None
    return {raw: inner.get(raw) for raw in raws}
