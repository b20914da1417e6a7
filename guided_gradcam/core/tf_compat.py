"""TensorFlow / tf-slim / tf-keras compatibility shims, applied once on import.

tf-slim 1.1.0's `slim.batch_norm` goes through `tensorflow.python.layers.normalization`, which
lazily imports `tf_keras.legacy_tf_layers.normalization`. tf-keras 2.x ships that package as
`tf_keras.src.legacy_tf_layers` only; tf-slim's fix is unreleased. We alias the module names.
"""
import importlib
import sys
import warnings

_ALIASES = {
    "tf_keras.legacy_tf_layers": "tf_keras.src.legacy_tf_layers",
    "tf_keras.legacy_tf_layers.normalization": "tf_keras.src.legacy_tf_layers.normalization",
}


def install():
    for alias, real in _ALIASES.items():
        if alias in sys.modules:
            continue
        try:
            importlib.import_module(alias)
        except ImportError:
            sys.modules[alias] = importlib.import_module(real)


install()

# tf-slim calls the deprecated `layer.apply` on every layer it builds; users can't act on it.
warnings.filterwarnings("ignore", message="`layer.apply` is deprecated", category=UserWarning)
