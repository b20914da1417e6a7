"""The bookkeeping of `forward_passes` (batch buffers rewritten in place, ablated channels
restored, per-image feeds following their rows) against one direct numpy pass per (image,
channel), for batchings whose runs straddle images, repeat one image's rows and end short. The
"network" is numpy, called as the session would be, so any K and batch size is cheap."""
from types import SimpleNamespace

import numpy as np
import pytest

from guided_gradcam import forward_passes
from guided_gradcam.methods import scorecam

CLASSES = 4
TARGETS = np.array([3, 0, 2])


def _graph(tokens=None, tail_reads_input=False):
    return SimpleNamespace(head=SimpleNamespace(explained="explained"), layer_tensor="layer",
                           net_input="input", tokens=tokens, tail_reads_input=tail_reads_input)


def _model(shape, seed):
    """y [n, CLASSES] of fed values [n, *shape], plus the region's and the input's sums."""
    weights = np.random.default_rng(seed).normal(size=(int(np.prod(shape)), CLASSES))

    def scores(values, inputs=None, regions=None):
        y = values.reshape(len(values), -1).astype(np.float64) @ weights
        for extra in (inputs, regions):
            if extra is not None:
                y += extra.reshape(len(extra), -1).sum(axis=1, keepdims=True)
        return y
    return scores


def _session(model, batch_size, fed_key):
    """A `run` that checks the feed and keeps no reference to its arrays (as TF copies them)."""
    def run(fetch, feed):
        assert fetch == "explained" and len(feed[fed_key]) <= batch_size
        beside = None if fed_key == "input" else feed.get("input")  # a skip around the layer
        return model(feed[fed_key].copy(), beside, feed.get("region"))
    return run


BATCHINGS = [(37, 5, 3), (40, 16, 3), (6, 16, 3), (32, 16, 2), (7, 1, 2), (48, 16, 1)]


@pytest.mark.parametrize("channels,batch_size,count", BATCHINGS)
@pytest.mark.parametrize("layer", ["4-d", "tokens", "skip"])
def test_ablated_scores_equal_one_direct_ablation_per_channel(channels, batch_size, count,
                                                               layer):
    rng = np.random.default_rng(channels + batch_size)
    tokens = 2 if layer == "tokens" else None
    shape = (tokens + 6, channels) if tokens else (2, 3, channels)
    values = rng.normal(size=(count,) + shape).astype(np.float32)
    inputs = rng.normal(size=(count, 4, 4, 3)).astype(np.float32)
    regions = rng.normal(size=(count, 2, 2)).astype(np.float32)
    graph = _graph(tokens, tail_reads_input=layer == "skip")
    model = _model(shape, channels)
    scores = forward_passes.ablated_scores(
        _session(model, batch_size, "layer"), graph, inputs, values, TARGETS[:count],
        batch_size, image_feeds={"region": regions})
    for image in range(count):
        for channel in range(channels):
            ablated = values[image].copy()
            ablated[(slice(tokens, None) if tokens else Ellipsis, channel)] = 0.0
            expected = model(ablated[None], inputs[image:image + 1] if layer == "skip"
                             else None, regions[image:image + 1])[0, TARGETS[image]]
            assert scores[image, channel] == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("channels,batch_size,count", BATCHINGS)
def test_masked_input_scores_equal_one_direct_masked_input_per_channel(channels, batch_size,
                                                                       count):
    rng = np.random.default_rng(channels * batch_size)
    activations = rng.normal(size=(count, 3, 3, channels)).astype(np.float32)
    inputs = rng.normal(size=(count, 6, 6, 3)).astype(np.float32)
    regions = rng.normal(size=(count, 2, 2)).astype(np.float32)
    model = _model(inputs.shape[1:], channels)
    chosen = None if channels < 10 else channels // 3
    scores = forward_passes.masked_input_scores(
        _session(model, batch_size, "input"), _graph(), inputs, activations, TARGETS[:count],
        batch_size, channels=chosen, image_feeds={"region": regions})
    for image in range(count):
        evaluated = scorecam.chosen_channels(activations[image], chosen)
        assert np.isnan(np.delete(scores[image], evaluated)).all()
        masks = scorecam.channel_masks(activations[image].transpose(2, 0, 1), 6, 6)
        for channel in evaluated:
            masked = inputs[image] * masks[channel][:, :, None]
            expected = model(masked[None], None, regions[image:image + 1])[0, TARGETS[image]]
            assert scores[image, channel] == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_buffers_kept_between_calls_give_the_same_scores_as_new_ones():
    """An explainer keeps its passes' batch arrays (`Buffers`); the rows a call leaves in them
    (an ablated channel, another image's masked input) must not leak into the next call."""
    rng = np.random.default_rng(5)
    buffers = forward_passes.Buffers()
    for count, channels in [(3, 12), (2, 12), (3, 7), (3, 12)]:
        values = rng.normal(size=(count, 2, 3, channels)).astype(np.float32)
        inputs = rng.normal(size=(count, 6, 6, 3)).astype(np.float32)
        layer_model, input_model = _model(values.shape[1:], channels), _model((6, 6, 3), count)
        for kept in (None, buffers):
            ablated = forward_passes.ablated_scores(
                _session(layer_model, 5, "layer"), _graph(), inputs, values, TARGETS[:count], 5,
                buffers=kept)
            masked = forward_passes.masked_input_scores(
                _session(input_model, 5, "input"), _graph(), inputs, values[:, :, :2],
                TARGETS[:count], 5, buffers=kept)
            if kept is None:
                expected = ablated, masked
        np.testing.assert_array_equal(ablated, expected[0])
        np.testing.assert_array_equal(masked, expected[1])
    # Kept: the same array for the same shape, a new one (aligned) for another.
    first = buffers.empty("masked", (5, 6, 6, 3))
    assert buffers.empty("masked", (5, 6, 6, 3)) is first
    other = buffers.empty("masked", (4, 6, 6, 3))
    assert other is not first and other.ctypes.data % forward_passes.ALIGNMENT == 0
