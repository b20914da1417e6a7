"""Where models come from. `open_source` turns what the user names into a `ModelSource`:

- a TF-Slim network name (`mobilenet_v1_075`, …)          → slim.SlimSource
- an in-memory Keras model, a `.keras` or `.h5` file      → keras_model.KerasSource
- a SavedModel folder                                     → saved_model.SavedModelSource
- a frozen GraphDef `.pb`                                 → graph_def.GraphDefSource
- a TF 1 `.meta` graph with its checkpoint                → meta_graph.MetaGraphSource
"""
import os
import sys

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.preprocessing import get_preprocessing
from guided_gradcam.sources.base import ModelSource, PlacedModel  # noqa: F401

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".pb", ".pbtxt", ".meta")


def describe_model_kinds():
    return "a .keras/.h5 Keras file, a SavedModel folder, a frozen .pb GraphDef or a TF 1 .meta"


def open_source(model, checkpoint=None, checkpoints_dir=None, download=True, progress=sys.stderr,
                input=None, output=None, feeds=None, signature=None, preprocess=None,
                input_size=None, trust_model=False):
    """The ModelSource for `model`: a network name, a path (a `str`, or an `os.PathLike`, which
    is always a path), a Keras model or a ModelSource. A model's graph (and a Keras file's
    stored config) is checked before anything of it runs (`model_safety`), unless
    `trust_model`."""
    if isinstance(model, ModelSource):
        return model
    if isinstance(model, str) and _is_network_name(model, progress):
        from guided_gradcam.zoo.networks import get_network
        from guided_gradcam.sources.slim import SlimSource

        spec = get_network(model)
        spec.check_input_size(input_size)  # before any download
        source = SlimSource.from_checkpoint(spec, checkpoint, checkpoints_dir, download, progress)
        if preprocess is not None:
            source.preprocessing = get_preprocessing(preprocess)
        if input or feeds or signature:
            raise GuidedGradCamError("--input, --feed and --signature are for --model graphs, "
                                     "not TF-Slim networks")
        if output is not None:
            raise GuidedGradCamError("--output is for --model graphs, not TF-Slim networks")
        return source
    preprocessing = get_preprocessing(preprocess or "raw")
    from guided_gradcam.sources import keras_model

    if keras_model.is_keras_model(model):
        return keras_model.KerasSource(model, getattr(model, "name", "keras model"),
                                       preprocessing, output_name=output, trust_model=trust_model)
    path = os.fspath(model)
    if not os.path.exists(path):
        raise GuidedGradCamError("model %s does not exist" % path)
    suffix = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        from guided_gradcam.sources.saved_model import SavedModelSource, is_saved_model

        if not is_saved_model(path):
            raise GuidedGradCamError("folder %s is not a SavedModel (no saved_model.pb)" % path)
        return SavedModelSource(path, preprocessing, signature, output_name=output,
                                trust_model=trust_model)
    if suffix in (".keras", ".h5", ".hdf5"):
        return keras_model.KerasSource(keras_model.load_keras_model(path, trust_model), path,
                                       preprocessing, output_name=output, trust_model=trust_model)
    if suffix in (".pb", ".pbtxt"):
        from guided_gradcam.sources.graph_def import GraphDefSource, read_graph_def

        return GraphDefSource(read_graph_def(path), path, preprocessing, input, output, feeds,
                              trust_model=trust_model)
    if suffix == ".meta":
        from guided_gradcam.sources.meta_graph import MetaGraphSource

        return MetaGraphSource(path, preprocessing, checkpoint, input, output, feeds,
                               trust_model=trust_model)
    raise GuidedGradCamError("cannot tell what kind of model %s is: expected %s"
                             % (path, describe_model_kinds()))


def _is_network_name(name, progress=None):
    """A built-in network's name is the network; any other name that exists, or reads as a
    path, is a path (a SavedModel folder `mnet_savedmodel` too). A name that is both says so."""
    from guided_gradcam.zoo.networks import NETWORKS

    if name in NETWORKS:
        if os.path.exists(name) and progress is not None:
            print("note: %r is a built-in network and also a path here; using the network "
                  "(pass ./%s for the path)" % (name, name), file=progress, flush=True)
        return True
    looks_like_path = os.sep in name or name.endswith(MODEL_SUFFIXES)
    return not (looks_like_path or os.path.exists(name))
