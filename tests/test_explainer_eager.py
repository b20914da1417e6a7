"""The Python API as a researcher meets it: a fresh interpreter with TF 2's default eager mode on.

The test session itself runs in graph mode (conftest), so this one runs in a subprocess.
"""
import os
import subprocess
import sys

from conftest import REPO

SCRIPT = """
from guided_gradcam import GuidedGradCam, load_photo
GuidedGradCam  # the API imports TensorFlow, quietly
import tensorflow as tf

assert tf.executing_eagerly()
with GuidedGradCam("mobilenet_v1_075", checkpoint=%r, progress=None) as explainer:
    explanation, = explainer.explain_photos([load_photo(%r)])
assert tf.executing_eagerly()  # the caller's mode is left as it was
print(explanation.label, explanation.cam.shape, explanation.gbp.shape)

# The notebook case: an in-memory Keras 3 model, its probabilities as Keras computes them.
import keras
import numpy as np
inputs = keras.Input((32, 32, 3))
hidden = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(hidden))
model = keras.Model(inputs, outputs)
images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
with GuidedGradCam(model) as explainer:
    explanations = explainer.explain(images)
assert tf.executing_eagerly()
expected = model.predict(images.astype(np.float32), verbose=0)
np.testing.assert_allclose([e.probabilities for e in explanations], expected, rtol=1e-5, atol=1e-6)
print(explainer.layer, explanations[0].cam_lowres.shape)
"""


def test_api_works_with_eager_execution_left_on(mobilenet_075_checkpoint, cat_dog_path):
    env = {k: v for k, v in os.environ.items()  # TF's log level as a user has it: unset
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "GUIDED_GRADCAM_TF_LOGS")}
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT % (str(mobilenet_075_checkpoint), str(cat_dog_path))],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.split("\n")
    assert lines[0] == "282 (224, 224) (224, 224, 3)", completed.stdout
    assert lines[1] == "conv (30, 30)", completed.stdout
    assert completed.stderr == "", completed.stderr  # as quiet as the CLI: no oneDNN, no cuInit
