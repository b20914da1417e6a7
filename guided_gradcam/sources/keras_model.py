"""Keras models (Keras 3 `.keras`/`.h5`, tf-keras `.h5`/`.keras`, or in memory): traced with
`tf.function`, frozen with `convert_variables_to_constants_v2`, then placed as a GraphDef.

Keras layer names name the Grad-CAM layer, also inside nested models: a traced Keras 3 model
names its scopes `<model>_1/<layer>_1/…`; each scope is renamed to the layer path without the
outer model, e.g. `conv_pw_13_relu` or `base/conv1`.
"""
import os
import re
import zipfile

from guided_gradcam.core import model_safety
from guided_gradcam.errors import MESSAGE_LIMIT, GuidedGradCamError, first_line, shorten
from guided_gradcam.sources.graph_def import GraphDefSource
from guided_gradcam.core.tf_eager import eager


def is_keras_model(model):
    return any(cls.__module__.split(".")[0] in ("keras", "tf_keras") and cls.__name__ in (
        "Model", "Functional", "Sequential") for cls in type(model).__mro__)


def load_keras_model(path, trust_model=False):
    """A model saved by Keras 3 or tf-keras (each reads its own files; try Keras 3 first).
    Layers that run stored Python code (`Lambda`) are refused from the stored config before
    either loader runs, unless `trust_model`, which loads in the libraries' unsafe mode."""
    if not os.path.exists(path):
        raise GuidedGradCamError("model file %s does not exist" % path)
    # Keras reports a damaged .keras archive as "File not found": say what it is.
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise GuidedGradCamError("cannot load Keras model %s: not a .keras archive (a zip file)"
                                 % path)
    if not trust_model:
        model_safety.check_keras_file(path)
    errors = []
    with eager():
        for module in ("keras", "tf_keras"):
            try:
                library = __import__(module)
                return library.models.load_model(path, compile=False, safe_mode=not trust_model)
            except Exception as error:  # each library fails in its own way on the other's file
                errors.append("%s: %s" % (module, first_line(error, 110)))
    raise GuidedGradCamError(shorten("cannot load Keras model %s (%s)" % (path, "; ".join(errors)),
                                     MESSAGE_LIMIT, first_sentence=False))


def _layer_paths(model, prefix=()):
    """Every (nested) layer's name path: ('base', 'conv1'), ...; models are layers too."""
    for layer in model.layers:
        yield prefix + (layer.name,)
        if hasattr(layer, "layers"):
            yield from _layer_paths(layer, prefix + (layer.name,))


def _numbers(value):
    """A few numbers as text: '0.5', '(1, 2, 3)' (one number where all are equal); None for
    more than 4 or anything unreadable (a Normalization layer never adapted)."""
    import numpy as np

    try:
        array = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    if not 0 < array.size <= 4 or not np.isfinite(array).all():
        return None
    if np.all(array == array[0]):
        return "%.4g" % array[0]
    return "(%s)" % ", ".join("%.4g" % number for number in array)


def _describe_rescaling(layer):
    """What a Rescaling or Normalization layer computes: 'Rescaling: x / 255 - 1',
    'Normalization: (x - (123.7, 116.8, 103.9)) / (58.4, 57.1, 57.4)'."""
    import numpy as np

    if type(layer).__name__ == "Rescaling":
        scale, offset = _numbers(layer.scale), _numbers(layer.offset)
        if scale is None or offset is None:
            return "Rescaling: x * scale + offset"
        first = float(np.ravel(np.asarray(layer.scale, dtype=np.float64))[0])
        inverse = 1.0 / first if "(" not in scale and first else 0.0
        divisor = round(inverse, 3)  # 1/255 → x / 255, 1/127.5 → x / 127.5
        text = ("x / %g" % divisor if inverse and abs(divisor - inverse) <= 1e-6 * abs(inverse)
                else "x * %s" % scale)
        if offset != "0":
            text += " - %s" % offset[1:] if offset.startswith("-") else " + %s" % offset
        return "Rescaling: " + text
    mean = _numbers(getattr(layer, "mean", None))
    try:
        std = _numbers(np.sqrt(np.asarray(layer.variance, dtype=np.float64)))
    except (AttributeError, TypeError, ValueError):
        std = None
    if mean is None or std is None:
        return "Normalization: (x - mean) / std"
    return "Normalization: (x - %s) / %s" % (mean, std)


def rescaling_layers(model, prefix=()):
    """The model's own input-rescaling layers (Keras Rescaling and Normalization, inside nested
    models too), each as 'path (what it computes)': `rescaling (Rescaling: x / 255)`."""
    found = ()
    for layer in model.layers:
        path = prefix + (layer.name,)
        if type(layer).__name__ in ("Rescaling", "Normalization"):
            found += ("%s (%s)" % ("/".join(path), _describe_rescaling(layer)),)
        if hasattr(layer, "layers"):
            found += rescaling_layers(layer, path)
    return found


def scope_renamer(model):
    """raw traced scope → Keras layer path (None for scopes that are no layer)."""
    known = {path: "/".join(path) for path in _layer_paths(model)}
    names = {name for path in known for name in path} | {model.name}

    def strip(component):
        if component in names:
            return component
        stripped = re.sub(r"_\d+$", "", component)
        return stripped if stripped in names else component

    def rename(raw):
        parts = tuple(strip(part) for part in raw.split("/"))
        if parts and parts[0] == model.name:
            parts = parts[1:]
        return known.get(parts)
    return lambda raws: {raw: rename(raw) for raw in raws}


class KerasSource(GraphDefSource):
    def __init__(self, model, name, preprocessing, output_name=None, trust_model=False):
        with eager():
            import tensorflow as tf
            from tensorflow.python.framework.convert_to_constants import (
                convert_variables_to_constants_v2)

            if len(model.inputs) != 1:
                raise GuidedGradCamError("%s has %d inputs; only one image input is supported"
                                         % (name, len(model.inputs)))
            shape = tuple(model.inputs[0].shape)
            if len(shape) != 4:
                raise GuidedGradCamError("%s takes input of shape %s; images need (batch, "
                                         "height, width, channels)" % (name, shape))
            try:
                function = tf.function(lambda x: model(x, training=False))
                concrete = function.get_concrete_function(
                    tf.TensorSpec((None,) + shape[1:], tf.float32))
                frozen = convert_variables_to_constants_v2(concrete)
            except Exception as error:
                raise GuidedGradCamError("cannot trace Keras model %s: %s"
                                         % (name, first_line(error))) from None
            graph_def = frozen.graph.as_graph_def()
            input_name = frozen.inputs[0].name
            outputs = [t.name for t in frozen.outputs]
        if output_name is None and len(outputs) != 1:
            raise GuidedGradCamError("%s has %d outputs: name the scores with --output"
                                     % (name, len(outputs)))
        super().__init__(graph_def, name, preprocessing, input_name=input_name,
                         output_name=output_name or outputs[0], rename_scope=scope_renamer(model),
                         input_shape=shape[1:], trust_model=trust_model)
        with eager():
            self.rescaling = rescaling_layers(model)  # a graph keeps no layers: read them here
