"""The Python API as a researcher meets it: a fresh interpreter with TF 2's default eager mode on.

The test session itself runs in graph mode (conftest), so this one runs in a subprocess.
"""
import subprocess
import sys

from conftest import REPO

SCRIPT = """
import tensorflow as tf
from guided_gradcam import GuidedGradCam, load_photo

assert tf.executing_eagerly()
with GuidedGradCam("mobilenet_v1_075", checkpoint=%r, progress=None) as explainer:
    explanation, = explainer.explain_photos([load_photo(%r)])
assert tf.executing_eagerly()  # the caller's mode is left as it was
print(explanation.label, explanation.cam.shape, explanation.gbp.shape)
"""


def test_api_works_with_eager_execution_left_on(mobilenet_075_checkpoint, cat_dog_path):
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT % (str(mobilenet_075_checkpoint), str(cat_dog_path))],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split("\n")[0] == "282 (224, 224) (224, 224, 3)", completed.stdout
