"""Segmentation models (issue 24), on the tiny encoder-decoder of conftest.trained_segmentation:
Score-CAM over a region against an eager reference, and the pointing game and localisation
against the explained regions when there are no VOC boxes (the Evaluator and evaluate.py)."""
import csv

import keras
import numpy as np
import pytest
import tensorflow as tf2
from PIL import Image

from conftest import run_cli
from guided_gradcam import GuidedGradCam
from guided_gradcam.core.tf_eager import eager
from helpers import SEGMENTATION_SIZE as SIZE
from helpers import scenes

SQUARE, DISC = 1, 2


def _features_and_classifier(model):
    """(the model up to the decoder, the 1x1 classifier's kernel and bias): z = A * W + b."""
    features = keras.Model(model.input, model.get_layer("decoder").output)
    kernel, bias = model.get_layer("classes").get_weights()
    return features, kernel, bias


def scorecam_reference(model, images, column, regions):
    """Score-CAM as methods/scorecam.py states it, one eager forward pass per channel: the
    channel's map, upsampled (bilinear, half-pixel centres) and min-max normalised to [0, 1],
    masks the input (raw pixels: the model rescales them itself); s_k = Σ_R z^c of the masked
    input, z the scores before the softmax, R the region explained on the unmasked image;
    L = ReLU(Σ_k softmax(s)_k A^k)."""
    with eager():
        features, kernel, bias = _features_and_classifier(model)
        x = images.astype(np.float32)
        activations = features(x).numpy()
        maps = []
        for b in range(len(images)):
            scores = []
            for k in range(activations.shape[-1]):
                up = tf2.image.resize(activations[b, :, :, k][None, :, :, None], (SIZE, SIZE),
                                      "bilinear").numpy()[0]
                spread = up.max() - up.min()
                mask = (up - up.min()) / spread if spread > 0 else np.zeros_like(up)
                z = tf2.nn.conv2d(features(x[b:b + 1] * mask), kernel, 1, "VALID") + bias
                scores.append(float(tf2.reduce_sum(regions[b] * z[0, :, :, column])))
            scores = np.array(scores, np.float64)
            weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
            maps.append(np.maximum(np.tensordot(activations[b], weights, axes=([2], [0])), 0))
        return np.array(maps)


@pytest.mark.parametrize("how", ["predicted", "box"])
def test_score_cam_over_a_region_equals_an_eager_reference(trained_segmentation, how):
    model, _ = trained_segmentation
    images, _ = scenes(20, 3)
    box = (2, 4, 21, 19)
    with GuidedGradCam(model, methods=("scorecam",), batch_size=7) as explainer:
        explanations = explainer.explain(images, SQUARE, region=box if how == "box" else None)
    regions = np.array([e.output_region for e in explanations])
    if how == "box":  # the box's own pixels: the output is at the input's resolution
        expected_region = np.zeros((SIZE, SIZE), np.float32)
        expected_region[box[1]:box[3], box[0]:box[2]] = 1
        np.testing.assert_array_equal(regions, np.repeat(expected_region[None], 3, 0))
    expected = scorecam_reference(model, images, SQUARE, regions)
    actual = np.array([e.maps("scorecam").lowres for e in explanations])
    # Measured (largest difference / the map's peak): 8.8e-8 over the box, 6.9e-108 over the
    # predicted square (its softmax is led by one channel): float32 sums in another order;
    # 1e-5 leaves a 110x margin. Masked passes scored over the whole output instead of R
    # differ by 0.82 and 0.78 (measured).
    difference = np.abs(actual - expected).max() / np.abs(expected).max()
    assert np.abs(expected).max() > 0
    assert difference <= 1e-5, difference
