"""The forward passes of the gradient-free CAMs, in batches through the explainer's own graph
and session: Score-CAM's masked inputs (the whole network) and Ablation-CAM's ablated
activations (only the network's tail after the Grad-CAM layer). Each (image, channel) pair is
one input; pairs of every image of a batch share runs of `batch_size`, so memory stays flat
whatever the number of channels K is. Numpy on the host; the graph only runs the model.

A MobileNet tail run takes a few milliseconds, so the host's work per run is kept to what
changes: each run's inputs are written in place into one buffer of `batch_size` rows (aligned
so that TF feeds it without a copy), an ablated row only has its previous channel restored
and its new one zeroed, and per-image feeds are rewritten only where a row's image changes.
"""
import os
import time

import numpy as np

from guided_gradcam.methods import scorecam

# TF feeds an array whose data start at a multiple of 64 bytes as it is; a misaligned one
# (numpy's large arrays start 16 bytes past a page) is copied into a new tensor every run.
ALIGNMENT = 64


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


def aligned_empty(shape, dtype=np.float32):
    """An uninitialised C-contiguous array whose data start at a multiple of ALIGNMENT."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size].view(dtype).reshape(shape)


class Buffers:
    """Aligned arrays kept from one call to the next: a new array of megabytes costs a page
    fault per 4 KiB page on its first write, every call (Score-CAM's batch of 16 masked
    MobileNet inputs is 9.6 MB)."""

    def __init__(self):
        self.arrays = {}

    def empty(self, name, shape, dtype=np.float32):
        """An uninitialised aligned array, the one handed out last under `name` where it has
        this shape and dtype."""
        array = self.arrays.get(name)
        if array is None or array.shape != tuple(shape) or array.dtype != dtype:
            array = self.arrays[name] = aligned_empty(shape, dtype)
        return array


class RowBuffer:
    """Per-image values [B, ...] laid out per run: row r holds the values of the image of the
    run's pair r, copied only when that image changes (image-major pairs: rarely)."""

    def __init__(self, values, rows, buffer=None):
        """buffer: an aligned [rows, ...] array to lay the rows out in (default: a new one)."""
        self.values = values
        self.buffer = aligned_empty((rows,) + values.shape[1:], values.dtype) \
            if buffer is None else buffer
        self.held = np.full(rows, -1)  # the image each row holds, -1: none yet

    def stale(self, images):
        """The rows whose image is not that of `images` (one image per row)."""
        return np.flatnonzero(self.held[:len(images)] != images)

    def rows(self, images):
        """The buffer's first len(images) rows, holding the values of `images`."""
        for row in self.stale(images):
            self.buffer[row] = self.values[images[row]]
            self.held[row] = images[row]
        return self.buffer[:len(images)]


def _pairs(channel_lists):
    """(images, channels) index arrays of every (image, channel) pair, image-major."""
    images = np.concatenate([np.full(len(c), b) for b, c in enumerate(channel_lists)])
    return images.astype(int), np.concatenate(channel_lists).astype(int)


def _chunks(count, batch_size):
    return (slice(start, min(start + batch_size, count))
            for start in range(0, count, batch_size))


def _image_runs(images):
    """(image, first row, end row) of each run of equal images in `images`."""
    starts = np.concatenate([[0], np.flatnonzero(np.diff(images)) + 1, [len(images)]])
    return [(images[start], start, end) for start, end in zip(starts[:-1], starts[1:])]


def _row_feeds(image_feeds, rows):
    """{tensor: RowBuffer} of the per-image feeds (a segmentation image's region)."""
    return {tensor: RowBuffer(values, rows) for tensor, values in (image_feeds or {}).items()}


def masked_input_scores(run, graph, net_inputs, activations, targets, batch_size, channels=None,
                        feeds=None, progress=None, image_feeds=None, buffers=None):
    """Score-CAM's s [B, K]: y^c of each preprocessed input [B, H, W, C] masked by each of its
    chosen channels' normalised maps (`scorecam.chosen_channels`; NaN for the others).
    targets: the explained column of `graph.head.explained` per image; image_feeds: {tensor:
    [B, ...] values} fed per pass with its image's row (a segmentation image's region);
    buffers: `Buffers` kept by the caller between calls."""
    height, width = net_inputs.shape[1:3]
    chosen = [scorecam.chosen_channels(a, channels) for a in activations]
    image_of, channel_of = _pairs(chosen)
    target_of = targets[image_of]
    scores = np.full((len(activations), activations.shape[-1]), np.nan, np.float32)
    size = min(batch_size, len(image_of))
    masked = (buffers or Buffers()).empty("masked", (size,) + net_inputs.shape[1:],
                                          net_inputs.dtype)
    per_image = _row_feeds(image_feeds, size)
    feed = dict(feeds or {})  # one dict, its changing entries replaced per run
    every_row = np.arange(size)
    report = PassProgress("score-cam masked inputs", len(image_of), progress)
    for chunk in _chunks(len(image_of), batch_size):
        images, channel = image_of[chunk], channel_of[chunk]
        # The masks are written where the masked inputs go, and multiplied in place.
        scorecam.channel_masks(activations[images, :, :, channel], height, width,
                               net_inputs.shape[-1], out=masked[:len(images)])
        for image, start, end in _image_runs(images):  # the input broadcast, not gathered
            np.multiply(masked[start:end], net_inputs[image], out=masked[start:end])
        feed[graph.net_input] = masked[:len(images)]
        feed.update({tensor: buffer.rows(images) for tensor, buffer in per_image.items()})
        explained = run(graph.head.explained, feed)
        scores[images, channel] = explained[every_row[:len(images)], target_of[chunk]]
        report.update(chunk.stop)
    return scores


def _diagonals(by_channel):
    """A writable view [K - n + 1, n, ...] of the channel-first buffer [n, K, ...] whose
    element [c, r] is the buffer's [r, c + r]: row r's channel c + r, for every r at once, so
    a run of one image's consecutive channels is ablated and restored by basic slicing (the
    views overlap across c, and are only written one c at a time)."""
    rows, channels = by_channel.shape[:2]
    return np.lib.stride_tricks.as_strided(
        by_channel, (channels - rows + 1, rows) + by_channel.shape[2:],
        (by_channel.strides[1], by_channel.strides[0] + by_channel.strides[1])
        + by_channel.strides[2:], writeable=True)


def ablated_scores(run, graph, net_inputs, layer_values, targets, batch_size, feeds=None,
                   progress=None, image_feeds=None, buffers=None):
    """Ablation-CAM's y^c_k [B, K]: the score with channel k of the image's A set to zero, the
    ablated layer output (`layer_values`, of `graph.layer_tensor`: A itself, or a token layer's
    tokens, whose patch tokens are ablated) fed in place of the layer's, so that only the tail
    runs (the input too, only where the tail reads it beside the layer)."""
    count, channels = layer_values.shape[0], layer_values.shape[-1]
    # Where channel k lives: every position of a 4-D layer, the patch tokens of a token layer.
    positions = () if graph.tokens is None else (slice(graph.tokens, None),)
    image_of, channel_of = _pairs([np.arange(channels)] * count)
    target_of = targets[image_of]
    scores = np.empty((count, channels), np.float32)
    size = min(batch_size, len(image_of))
    ablated = RowBuffer(layer_values, size, (buffers or Buffers()).empty(
        "ablated", (size,) + layer_values.shape[1:], layer_values.dtype))
    # Channel-first views [B, K, ...]: numpy indexes (row, channel) pairs there ~2.5x faster.
    by_channel, values_by_channel = np.moveaxis(ablated.buffer, -1, 1), \
        np.moveaxis(layer_values, -1, 1)
    diagonals = _diagonals(by_channel) if size <= channels else None
    zeroed = np.full(size, -1)  # the channel each row has set to zero, -1: none
    per_image = _row_feeds({graph.net_input: net_inputs} if graph.tail_reads_input else {},
                           size)
    per_image.update(_row_feeds(image_feeds, size))
    feed = dict(feeds or {})  # one dict, its changing entries replaced per run
    report = PassProgress("ablation-cam tail passes", len(image_of), progress)
    previous = None  # (image, first channel) of the last run, where it was a full diagonal
    every_row = np.arange(size)
    for chunk in _chunks(len(image_of), batch_size):
        images, channel = image_of[chunk], channel_of[chunk]
        first = channel[0]
        if previous is not None and len(images) == size and \
                previous[0] == images[0] == images[-1]:
            # The common case (K ≥ batch_size): the same image in every row, whose channels
            # (consecutive, one per row) move on by `size`.
            image, last = previous
            diagonals[last] = values_by_channel[image, last:last + size]
            diagonals[(first, slice(None), *positions)] = 0.0
            zeroed[:] = channel
            explained = run(graph.head.explained, feed)
            scores[image, first:first + size] = explained[:, targets[image]]
            previous = image, first
        else:
            rows = every_row[:len(images)]
            # Rows that keep their image get their last channel back; the others are rewritten.
            kept = np.flatnonzero((zeroed[:len(images)] >= 0) &
                                  (ablated.held[:len(images)] == images))
            by_channel[(kept, zeroed[kept])] = values_by_channel[(images[kept], zeroed[kept])]
            feed[graph.layer_tensor] = ablated.rows(images)
            feed.update({tensor: buffer.rows(images) for tensor, buffer in per_image.items()})
            by_channel[(rows, channel, *positions)] = 0.0
            zeroed = zeroed[:len(images)]
            zeroed[:] = channel
            explained = run(graph.head.explained, feed)
            scores[images, channel] = explained[rows, target_of[chunk]]
            previous = (images[0], first) if len(images) == size and \
                images[0] == images[-1] else None
        report.update(chunk.stop)
    return scores
