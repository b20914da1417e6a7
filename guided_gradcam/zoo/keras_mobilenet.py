"""Keras 3 MobileNet V1 0.75 (224, ImageNet) with the real weights of the TF.js export.

The TF-Slim path is not the only way users bring a model: model-source tests and the bench also
need a real-weights Keras 3 model. keras.applications cannot fetch its weights offline, so this
builds `keras.applications.MobileNet(alpha=0.75)` and sets every weight, by layer name, from the
Keras 2.1.4 TF.js shards that `convert_tfjs` reads (the same arrays as the slim checkpoint).

    python -m guided_gradcam.zoo.keras_mobilenet --model_dir DIR [--sha256 FILE] --output PATH

PATH ending in .keras or .h5 is written with model.save, anything else is a SavedModel folder
(model.export). The model ends in softmax: its logits are model.get_layer("predictions").input.
"""
import argparse
import sys

from guided_gradcam.zoo.convert_tfjs import read_tfjs_weights, verify_sha256
from guided_gradcam.errors import CheckpointError, GuidedGradCamError
from guided_gradcam.core.tf_eager import eager
from guided_gradcam.core.tf_startup import import_tensorflow_quietly

_EPSILON = 1e-3  # BatchNorm epsilon of the TF.js export (Keras 2.1.4's MobileNet)


def _tfjs_name(layer, variable):
    # Keras 3 names a DepthwiseConv2D's kernel "kernel"; Keras 2, and so the export, "depthwise_kernel".
    param = variable.name
    if type(layer).__name__ == "DepthwiseConv2D" and param == "kernel":
        param = "depthwise_kernel"
    return f"{layer.name}/{param}"


def build_keras_mobilenet(model_dir, sha256_file=None):
    """Return the keras.Model MobileNet V1 0.75 with every weight set from the TF.js export in model_dir.

    Each Keras weight must match one stored weight by name and shape and every stored weight must
    be used; otherwise CheckpointError. sha256_file (sha256sum format) verifies the shards first.
    """
    if sha256_file is not None:
        verify_sha256(model_dir, sha256_file)
    stored = read_tfjs_weights(model_dir)
    import keras  # here, not at the top: importing Keras imports TensorFlow, noisily

    with eager():  # Keras 3 needs it, whatever mode the caller's process is in
        return _set_weights(keras.applications.MobileNet(
        input_shape=(224, 224, 3), alpha=0.75, include_top=True, weights=None, classes=1000,
        classifier_activation="softmax"), stored, model_dir)


def _set_weights(model, stored, model_dir):
    unused = dict(stored)
    for layer in model.layers:
        # Keras 3 uses the export's 1e-3 today; a different default would shift every activation.
        if hasattr(layer, "epsilon") and layer.epsilon != _EPSILON:
            raise CheckpointError(f"Keras layer {layer.name} has BatchNorm epsilon {layer.epsilon}, "
                                  f"the TF.js weights were trained with {_EPSILON}")
        for variable in layer.weights:
            name, shape = _tfjs_name(layer, variable), tuple(variable.shape)
            if name in stored and name not in unused:
                raise CheckpointError(f"two Keras weights map to {name} in {model_dir}/model.json")
            if name not in unused:
                raise CheckpointError(f"{model_dir}/model.json has no weight {name} (Keras needs {list(shape)})")
            value = unused.pop(name)
            if value.shape != shape:
                raise CheckpointError(f"{model_dir}/model.json stores {name} as {list(value.shape)}, "
                                      f"the Keras model needs {list(shape)}")
            variable.assign(value)
    if unused:
        names = sorted(unused)
        raise CheckpointError(f"{model_dir}/model.json has {len(names)} weight(s) the Keras MobileNet lacks: "
                              f"{', '.join(names[:5])}{', ...' if len(names) > 5 else ''}")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m guided_gradcam.zoo.keras_mobilenet",
        description="Build Keras 3 MobileNet V1 0.75 from TF.js layers-model weights and save it.")
    parser.add_argument("--model_dir", required=True, help="folder holding model.json and its weight shards")
    parser.add_argument("--sha256", default=None, help="sha256sum-format list to verify the shards against")
    parser.add_argument("--output", required=True,
                        help="a .keras or .h5 file (model.save), or else a SavedModel folder (model.export)")
    args = parser.parse_args(argv)
    import_tensorflow_quietly()
    try:
        model = build_keras_mobilenet(args.model_dir, sha256_file=args.sha256)
        with eager():
            if args.output.endswith((".keras", ".h5")):
                model.save(args.output)
            else:
                model.export(args.output, verbose=False)
    except GuidedGradCamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot write {args.output} ({e.strerror or e})", file=sys.stderr)
        return 1
    print(f"wrote Keras MobileNet V1 0.75 ({len(model.weights)} weights) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
