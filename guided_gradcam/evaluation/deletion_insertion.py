"""The deletion and insertion metrics of Petsiuk et al. (RISE, BMVC 2018), in numpy and SciPy.

Deletion removes the pixels from the most to the least salient, `step` at a time, and records
the class probability after each step: a good map makes it fall fast (low area under the
curve). Insertion starts from a blurred copy and puts the pixels back in the same order: a
good map makes it rise fast (high area). The caller runs the network on `curve_inputs`, chunk
by chunk; this module orders the pixels, builds the inputs and integrates the curve.

Arrays are in network-input space: float32 (H, W, C) after preprocessing, where 0 is the
preprocessing's neutral value (a deleted pixel is 0 in every channel). A pixel is a spatial
position; a 3-channel saliency map must be reduced to one channel first (see similarity).
"""
import numpy as np
from scipy import ndimage

DEFAULT_STEP = 224  # pixels per step, one row of a 224x224 input: 224 steps, as in RISE
BLUR_KERNEL = 11  # RISE's insertion baseline: cv2.GaussianBlur(img, (11, 11), 5)
BLUR_SIGMA = 5.0

MODES = ("deletion", "insertion")


def pixel_order(saliency):
    """Flat pixel indices (int64) of a 2-D map, most salient first.

    Ties keep raster order (a stable sort); NaN counts as -inf, so NaN pixels come last.
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.ndim != 2:
        raise ValueError("saliency must be a 2-D map, got shape %s" % (saliency.shape,))
    keys = -np.nan_to_num(saliency.reshape(-1), nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    return np.argsort(keys, kind="stable").astype(np.int64)


def _num_points(num_pixels, step):
    return -(-num_pixels // step) + 1  # ceil(N / step) steps, plus the untouched input


def step_fractions(num_pixels, step=DEFAULT_STEP):
    """The fraction of pixels changed at each curve point: 0, step/N, 2*step/N, ..., 1.

    float64, length ceil(N/step) + 1; the last step may change fewer than `step` pixels.
    """
    num_pixels, step = int(num_pixels), int(step)
    if num_pixels < 1 or step < 1:
        raise ValueError("num_pixels and step must be >= 1, got %d and %d" % (num_pixels, step))
    counts = np.minimum(np.arange(_num_points(num_pixels, step)) * step, num_pixels)
    return counts / float(num_pixels)


def blurred(net_input):
    """RISE's insertion baseline: each channel blurred by an 11x11 Gaussian of sigma 5.

    Borders are mirrored without repeating the edge pixel (SciPy's 'mirror', OpenCV's
    BORDER_REFLECT_101 that cv2.GaussianBlur uses); channels are never mixed. float32.
    """
    net_input = np.asarray(net_input, dtype=np.float64)
    if net_input.ndim not in (2, 3):
        raise ValueError("net_input must be (H, W) or (H, W, C), got shape %s"
                         % (net_input.shape,))
    sigma = (BLUR_SIGMA, BLUR_SIGMA) + (0.0,) * (net_input.ndim - 2)
    # SciPy's radius is int(truncate * sigma + 0.5): truncate = 5 / 5 gives radius 5, 11 taps.
    truncate = (BLUR_KERNEL // 2) / BLUR_SIGMA
    return ndimage.gaussian_filter(net_input, sigma, mode="mirror",
                                   truncate=truncate).astype(np.float32)


def curve_inputs(net_input, order, step, mode, start, stop, baseline=None):
    """The network inputs of curve points start..stop-1: float32 (stop - start, H, W, C).

    Point k changes the first min(k * step, N) pixels of `order` (N = H * W), in every channel.
    "deletion": those pixels are 0, the rest as in net_input. "insertion": the input is
    `baseline` (default `blurred(net_input)`; pass it to compute it once per image) with those
    pixels restored from net_input. Point 0 is the untouched start, the last point changes all.
    """
    if mode not in MODES:
        raise ValueError("mode must be one of %s, got %r" % (", ".join(MODES), mode))
    net_input = np.asarray(net_input, dtype=np.float32)
    if net_input.ndim != 3:
        raise ValueError("net_input must be (H, W, C), got shape %s" % (net_input.shape,))
    height, width, _ = net_input.shape
    num_pixels, step = height * width, int(step)
    if step < 1:
        raise ValueError("step must be >= 1, got %d" % step)
    num_points = _num_points(num_pixels, step)
    if not 0 <= start <= stop <= num_points:
        raise ValueError("points %d..%d are outside the curve's 0..%d"
                         % (start, stop - 1, num_points - 1))
    order = np.asarray(order, dtype=np.int64).reshape(-1)
    if len(order) != num_pixels:
        raise ValueError("order has %d pixels, the input %d" % (len(order), num_pixels))
    # Rank each pixel once; point k changes the pixels whose rank is below its count.
    rank = np.full(num_pixels, -1, np.int64)
    rank[order] = np.arange(num_pixels)
    if rank.min() < 0:
        raise ValueError("order is not a permutation of the %d pixels" % num_pixels)
    counts = np.minimum(np.arange(start, stop) * step, num_pixels)
    changed = (rank.reshape(1, height, width) < counts[:, None, None])[..., None]
    if mode == "deletion":
        return np.where(changed, np.float32(0.0), net_input[None])
    if baseline is None:
        baseline = blurred(net_input)
    baseline = np.asarray(baseline, dtype=np.float32)
    if baseline.shape != net_input.shape:
        raise ValueError("baseline shape %s differs from the input's %s"
                         % (baseline.shape, net_input.shape))
    return np.where(changed, net_input[None], baseline[None])


def auc(scores, fractions):
    """Area under the curve of scores against fractions (trapezoid rule).

    fractions run over [0, 1] (`step_fractions`), so the area of probabilities is in [0, 1]
    and a partial last step counts for its true width.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    fractions = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if len(scores) != len(fractions) or len(scores) < 2:
        raise ValueError("need as many scores as fractions (at least 2), got %d and %d"
                         % (len(scores), len(fractions)))
    if fractions[0] < 0 or fractions[-1] > 1 or np.any(np.diff(fractions) < 0):
        raise ValueError("fractions must rise within [0, 1]")
    return float(np.trapezoid(scores, fractions))
