"""The deletion and insertion metrics of Petsiuk et al. (RISE, BMVC 2018), in numpy and SciPy.

Deletion removes the pixels from the most to the least salient, `step` at a time, and records
the class probability after each step: a good map makes it fall fast (low area under the
curve). Insertion starts from a blurred copy and puts the pixels back in the same order: a
good map makes it rise fast (high area). The caller runs the network on `curve_inputs`, chunk
by chunk; this module orders the pixels, builds the inputs and integrates the curve.

Arrays are in network-input space: float32 (H, W, C) after preprocessing. A pixel is a spatial
position; a 3-channel saliency map must be reduced to one channel first (see similarity).

The baseline is the image a deleted pixel takes its value from, and the one insertion starts
from (`baseline`): `zero` (0 of the network input: the preprocessing's neutral value, black
for raw or unit pixels, grey for inception's, the mean pixel for VGG's), `black` and `grey`
(pixels 0 and 127.5, through the preprocessing), `mean` (the photo's mean colour) or `blur`.
RISE's code deletes to zeros of its ImageNet-normalised tensor, i.e. to ImageNet's mean colour
(123.7, 116.8, 103.9), and inserts onto the blur. Our defaults (DEFAULT_BASELINES): deletion to
grey, insertion from the blur. Both are defined on the pixels, so a photo's curves do not
depend on how a model scales its input (`zero` is black for a raw-pixel model, grey for
MobileNet); grey is the constant nearest RISE's mean colour that belongs to no dataset, and
unlike black it is no extreme a model may have learned a class from. Grey is exactly 0 of
inception's input: MobileNet's and Inception's deletion numbers are the same as with `zero`.
"""
import numpy as np
from scipy import ndimage

DEFAULT_STEP = 224  # pixels per step, one row of a 224x224 input: 224 steps, as in RISE
BLUR_KERNEL = 11  # RISE's insertion baseline: cv2.GaussianBlur(img, (11, 11), 5)
BLUR_SIGMA = 5.0

MODES = ("deletion", "insertion")
BASELINES = ("zero", "black", "grey", "mean", "blur")
DEFAULT_BASELINES = {"deletion": "grey", "insertion": "blur"}
GREY = 127.5  # the pixel value of `grey`: mid-way between black and white


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


def describe_baseline(name):
    """'grey (pixels 127.5)': a baseline's name and what it is, for headers and pages."""
    return "%s (%s)" % (name, {
        "zero": "0 of the network input", "black": "pixels 0", "grey": "pixels %g" % GREY,
        "mean": "the photo's mean colour",
        "blur": "Gaussian %dx%d, sigma %g" % (BLUR_KERNEL, BLUR_KERNEL, BLUR_SIGMA)}[name])


def baseline(name, net_input, preprocess=None):
    """The baseline image `name` (one of BASELINES) of net_input, float32 (H, W, C).

    `preprocess` maps float pixels (0..255) to the network input (a `Preprocessing`); `black`
    and `grey` need it. `mean` is each channel's mean over the photo: the same as the mean
    pixel preprocessed, since every preprocessing is affine per channel (so is the blur).
    """
    net_input = np.asarray(net_input, dtype=np.float32)
    if name == "zero":
        return np.zeros_like(net_input)
    if name == "blur":
        return blurred(net_input)
    if name == "mean":
        means = net_input.astype(np.float64).mean(axis=(0, 1))
        return np.broadcast_to(means, net_input.shape).astype(np.float32)
    if name in ("black", "grey"):
        if preprocess is None:
            raise ValueError("the %s baseline needs the preprocessing" % name)
        pixels = np.full(net_input.shape, 0.0 if name == "black" else GREY, np.float32)
        return np.asarray(preprocess(pixels), dtype=np.float32)
    raise ValueError("baseline must be one of %s, got %r" % (", ".join(BASELINES), name))


def curve_inputs(net_input, order, step, mode, start, stop, baseline=None):
    """The network inputs of curve points start..stop-1: float32 (stop - start, H, W, C).

    Point k changes the first min(k * step, N) pixels of `order` (N = H * W), in every channel.
    "deletion": those pixels take `baseline`'s values (default 0), the rest as in net_input.
    "insertion": the input is `baseline` (default `blurred(net_input)`) with those pixels
    restored from net_input. Pass the baseline to compute it once per image. Point 0 is the
    untouched start, the last point changes all: deletion ends, insertion starts on `baseline`.
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
    if baseline is None:
        baseline = np.zeros_like(net_input) if mode == "deletion" else blurred(net_input)
    baseline = np.asarray(baseline, dtype=np.float32)
    if baseline.shape != net_input.shape:
        raise ValueError("baseline shape %s differs from the input's %s"
                         % (baseline.shape, net_input.shape))
    if mode == "deletion":
        return np.where(changed, baseline[None], net_input[None])
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
