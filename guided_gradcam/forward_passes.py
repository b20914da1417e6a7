"""The forward passes of the gradient-free CAMs, in batches through the explainer's own graph
and session: Score-CAM's masked inputs (the whole network) and Ablation-CAM's ablated
activations (only the network's tail after the Grad-CAM layer). Each (image, channel) pair is
one input; pairs of every image of a batch share runs of `batch_size`, so memory stays flat
whatever the number of channels K is. Numpy on the host; the graph only runs the model.
"""
import os
import time

import numpy as np

from guided_gradcam.methods import scorecam


class PassProgress:
    """A line now and then on `stream` for passes that take more than a few seconds."""

    def __init__(self, what, total, stream, quiet_for=3.0, interval=None):
        if interval is None:
            interval = float(os.environ.get("GUIDED_GRADCAM_PROGRESS_INTERVAL", 5.0))
        self.what, self.total, self.stream = what, total, stream
        self.start = time.monotonic()
        self.next = self.start + quiet_for
        self.interval = interval

    def update(self, done):
        now = time.monotonic()
        if self.stream is None or now < self.next or done >= self.total:
            return
        self.next = now + self.interval
        left = (self.total - done) * (now - self.start) / max(done, 1)
        self.stream.write("%s: %d/%d, %s left\n" % (
            self.what, done, self.total, time.strftime("%H:%M:%S", time.gmtime(left))))
        self.stream.flush()


def _pairs(channel_lists):
    """(images, channels) index arrays of every (image, channel) pair, image-major."""
    images = np.concatenate([np.full(len(c), b) for b, c in enumerate(channel_lists)])
    return images.astype(int), np.concatenate(channel_lists).astype(int)


def _rows(image_feeds, images):
    """Per-image feeds for the passes of `images` (one row each)."""
    return {tensor: values[images] for tensor, values in (image_feeds or {}).items()}


def _chunks(count, batch_size):
    return (slice(start, min(start + batch_size, count))
            for start in range(0, count, batch_size))


def masked_input_scores(run, graph, net_inputs, activations, targets, batch_size, channels=None,
                        feeds=None, progress=None, image_feeds=None):
    """Score-CAM's s [B, K]: y^c of each preprocessed input [B, H, W, C] masked by each of its
    chosen channels' normalised maps (`scorecam.chosen_channels`; NaN for the others).
    targets: the explained column of `graph.head.explained` per image; image_feeds: {tensor:
    [B, ...] values} fed per pass with its image's row (a segmentation image's region)."""
    height, width = net_inputs.shape[1:3]
    chosen = [scorecam.chosen_channels(a, channels) for a in activations]
    image_of, channel_of = _pairs(chosen)
    scores = np.full((len(activations), activations.shape[-1]), np.nan, np.float32)
    report = PassProgress("score-cam masked inputs", len(image_of), progress)
    for chunk in _chunks(len(image_of), batch_size):
        images, channel = image_of[chunk], channel_of[chunk]
        masks = scorecam.channel_masks(activations[images, :, :, channel], height, width)
        explained = run(graph.head.explained, {
            graph.net_input: net_inputs[images] * masks[..., None], **(feeds or {}),
            **_rows(image_feeds, images)})
        scores[images, channel] = explained[np.arange(len(images)), targets[images]]
        report.update(chunk.stop)
    return scores


def ablated_scores(run, graph, net_inputs, layer_values, targets, batch_size, feeds=None,
                   progress=None, image_feeds=None):
    """Ablation-CAM's y^c_k [B, K]: the score with channel k of the image's A set to zero, the
    ablated layer output (`layer_values`, of `graph.layer_tensor`: A itself, or a token layer's
    tokens, whose patch tokens are ablated) fed in place of the layer's, so that only the tail
    runs (the input too, only where the tail reads it beside the layer)."""
    count, channels = layer_values.shape[0], layer_values.shape[-1]
    # Where channel k lives: every position of a 4-D layer, the patch tokens of a token layer.
    positions = (slice(None),) * (layer_values.ndim - 2) if graph.tokens is None else \
        (slice(graph.tokens, None),)
    image_of, channel_of = _pairs([np.arange(channels)] * count)
    scores = np.empty((count, channels), np.float32)
    report = PassProgress("ablation-cam tail passes", len(image_of), progress)
    ablated, previous = None, None
    for chunk in _chunks(len(image_of), batch_size):
        images, channel = image_of[chunk], channel_of[chunk]
        rows = np.arange(len(images))
        if previous is not None and np.array_equal(previous[0], images):
            # The same images as the last run: restore its channels, not the whole copy.
            ablated[(rows, *positions, previous[1])] = \
                layer_values[(images, *positions, previous[1])]
        else:
            ablated = layer_values[images]  # a copy: fancy indexing
        ablated[(rows, *positions, channel)] = 0.0
        previous = images, channel
        feed = {graph.layer_tensor: ablated, **(feeds or {}), **_rows(image_feeds, images)}
        if graph.tail_reads_input:
            feed[graph.net_input] = net_inputs[images]
        explained = run(graph.head.explained, feed)
        scores[images, channel] = explained[np.arange(len(images)), targets[images]]
        report.update(chunk.stop)
    return scores
