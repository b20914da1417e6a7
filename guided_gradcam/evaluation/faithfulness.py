"""Faithfulness to occlusion, the Grad-CAM paper's measure (Sec. 5.3), in numpy and SciPy.

Selvaraju et al. occlude patches of the image, record the change of the class score and
report the rank correlation between the resulting occlusion map and an explanation map. The
caller runs the network; this module makes the occluded inputs, assembles the map from the
score changes Δ_n = y(image) - y(occluded_n), and correlates.

Arrays are in network-input space: float32 (H, W, C) after preprocessing, where 0 is the
preprocessing's neutral value, so an occluding patch is zeros in every channel.

The paper does not state its patch size or stride. Ours: a 32x32 patch moved by 8 pixels on a
224x224 input (25x25 = 625 occluded images), coarse enough to hide a part of an object and
fine enough that the map has the resolution of a late conv layer upsampled.
"""
import numpy as np
from scipy import stats

DEFAULT_PATCH = 32  # pixels of a 224x224 input, about 1/7 of its side
DEFAULT_STRIDE = 8  # every pixel is covered by up to (32/8)^2 = 16 patches


def _axis_positions(size, patch, stride):
    """0, stride, 2*stride, ... and, if the last one leaves pixels uncovered, size - patch."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)  # flush with the edge: the last pixels are covered too
    return starts


def occlusion_positions(height, width, patch=DEFAULT_PATCH, stride=DEFAULT_STRIDE):
    """The (top, left) of every patch, int array (N, 2), in row-major order (top, then left).

    Along each axis: 0, stride, 2*stride, ... while the patch fits, plus one last position
    flush with the bottom/right edge when the stride does not land on it, so every pixel is
    covered by at least one patch. A stride longer than the patch would leave gaps: refused.
    """
    height, width, patch, stride = int(height), int(width), int(patch), int(stride)
    if patch < 1 or stride < 1:
        raise ValueError("patch and stride must be >= 1, got %d and %d" % (patch, stride))
    if stride > patch:
        raise ValueError("stride %d > patch %d would leave pixels unoccluded" % (stride, patch))
    if patch > height or patch > width:
        raise ValueError("a %dx%d patch does not fit in a %dx%d image"
                         % (patch, patch, height, width))
    tops = _axis_positions(height, patch, stride)
    lefts = _axis_positions(width, patch, stride)
    grid = np.stack(np.meshgrid(tops, lefts, indexing="ij"), axis=-1)
    return grid.reshape(-1, 2).astype(np.int64)


def occluded(net_input, positions, patch=DEFAULT_PATCH):
    """Copies of net_input (H, W, C), one per position, with that patch set to 0 in every channel.

    Returns float32 (len(positions), H, W, C). The caller passes a chunk of the positions at a
    time, so only that chunk's copies exist at once.
    """
    net_input = np.asarray(net_input, dtype=np.float32)
    if net_input.ndim != 3:
        raise ValueError("net_input must be (H, W, C), got shape %s" % (net_input.shape,))
    positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    copies = np.repeat(net_input[None], len(positions), axis=0)
    for copy, (top, left) in zip(copies, positions):
        copy[top:top + patch, left:left + patch, :] = 0.0
    return copies


def occlusion_map(deltas, positions, patch, shape):
    """The occlusion map (H, W), float64: each pixel's mean Δ over the patches that cover it.

    deltas: Δ_n = y(image) - y(occluded_n), one per position; shape: (H, W) or (H, W, C) of
    the input. A pixel that no patch covers is NaN (never with `occlusion_positions`).
    """
    deltas = np.asarray(deltas, dtype=np.float64).reshape(-1)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    if len(deltas) != len(positions):
        raise ValueError("%d deltas for %d positions" % (len(deltas), len(positions)))
    height, width = (int(v) for v in shape[:2])
    offsets = np.arange(patch)
    rows = positions[:, 0, None, None] + offsets[None, :, None]  # (N, patch, 1)
    cols = positions[:, 1, None, None] + offsets[None, None, :]  # (N, 1, patch)
    # np.add.at rather than a cumulative sum: each pixel adds only its own patches' deltas, so
    # a pixel whose patches all have Δ = 0 is exactly 0, not the rounding residue (~1e-14) of
    # everything above-left of it, which would break the ties that the rank correlation sees.
    sums = np.zeros((height, width))
    counts = np.zeros((height, width))
    np.add.at(sums, (rows, cols), deltas[:, None, None])
    np.add.at(counts, (rows, cols), 1.0)
    return np.divide(sums, counts, out=np.full((height, width), np.nan), where=counts > 0)


def spearman(a, b):
    """Spearman's rank correlation of two maps of the same shape, flattened (ties: mean ranks).

    NaN when either map is constant (no ranking to correlate), and when either holds a NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("maps of different shapes %s and %s" % (a.shape, b.shape))
    a, b = a.reshape(-1), b.reshape(-1)
    # SciPy warns on constant input and returns NaN; say NaN without the warning.
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)
