"""Test-time augmentation smoothing (pytorch-grad-cam's aug_smooth): every map is the mean of
its maps for the input flipped horizontally or not, times a brightness of 1.0, 1.1 and 0.9,
each mapped back (flipped again) before averaging. As there, the augmentations apply to the
preprocessed input the network sees, and the class stays the one explained on the input
itself. Numpy only: the explainer runs the augmented inputs.
"""
import numpy as np

AUGMENTATIONS = tuple((flip, brightness) for flip in (False, True) for brightness in
                      (1.0, 1.1, 0.9))  # the first is the input itself


def augment(net_inputs, flip, brightness):
    """[B, H, W, C] preprocessed inputs → the augmented ones."""
    flipped = net_inputs[:, :, ::-1] if flip else net_inputs
    return (np.float32(brightness) * flipped).astype(np.float32)


def restore(maps, flip):
    """A map [B, h, w, ...] of an augmented input, mapped back onto the input."""
    return maps[:, :, ::-1] if flip else maps


def average(lowres_maps, cams, gbp):
    """(lowres, cam, guided) of the restored maps of every augmentation: lowres the mean of the
    unnormalised maps, cam the mean of the normalised ones divided by its max (peak 1, or all
    zero), guided = GBP of the input itself ⊙ cam."""
    lowres = np.mean(lowres_maps, axis=0, dtype=np.float64).astype(np.float32)
    cam = np.mean(cams, axis=0, dtype=np.float64)
    peak = cam.max(axis=(1, 2), keepdims=True)
    cam = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0).astype(np.float32)
    return lowres, cam, gbp * cam[..., None]
