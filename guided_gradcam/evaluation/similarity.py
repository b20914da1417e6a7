"""The similarity measures of the sanity checks (Adebayo et al., NeurIPS 2018), numpy + skimage.

"Sanity Checks for Saliency Maps" compares a map of the trained network with the map after
its weights are randomised: if they stay similar, the method does not depend on what the
network learned. Four measures: Spearman's rank correlation of the absolute maps and of the
signed maps, SSIM and the correlation of HOG features of the (normalised) absolute maps.
"""
import numpy as np
from scipy import stats
from skimage.feature import hog
from skimage.metrics import structural_similarity

from guided_gradcam.outputs.figures import pearson



def single_channel(saliency):
    """(absolute, signed) 2-D float64 maps of a saliency map (H, W) or (H, W, C).

    For (H, W, C): absolute = max over channels of |x|, the convention of Simonyan et al.
    (2014) for gradient maps; signed = sum over channels. For (H, W): |map| and the map.
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.ndim == 3:
        return np.abs(saliency).max(axis=2), saliency.sum(axis=2)
    if saliency.ndim == 2:
        return np.abs(saliency), saliency
    raise ValueError("saliency must be (H, W) or (H, W, C), got shape %s" % (saliency.shape,))


def absolute(saliency):
    """The one-channel magnitude of a map (`single_channel`'s first): what is ranked, ordered
    and peaked."""
    return single_channel(saliency)[0]


def _unit_max(absolute):
    """The map divided by its maximum; an all-zero map stays zero."""
    peak = absolute.max()
    return absolute / peak if peak > 0 else absolute


def _ranks(values):
    """Mean ranks of a map's values, flattened (Spearman's ρ is Pearson's r of the ranks)."""
    return stats.rankdata(values.reshape(-1))


class Reference:
    """An original map with what every comparison needs of it computed once (its ranks and HOG
    features): the sanity checks compare one original with dozens of randomised maps."""

    def __init__(self, original):
        self.original = np.asarray(original, dtype=np.float64)
        absolute, signed = single_channel(self.original)
        self._ranks = _ranks(absolute), _ranks(signed)
        # Each map by its own maximum: the scale of a randomised network's gradients is arbitrary.
        self._unit = _unit_max(absolute)
        self._hog = hog(self._unit, feature_vector=True)

    def compare(self, randomised):
        """The four similarities of the original and `randomised` (see `compare`)."""
        randomised = np.asarray(randomised, dtype=np.float64)
        if self.original.shape != randomised.shape:
            raise ValueError("maps of different shapes %s and %s"
                             % (self.original.shape, randomised.shape))
        absolute, signed = single_channel(randomised)
        unit = _unit_max(absolute)
        return {
            "spearman_abs": pearson(self._ranks[0], _ranks(absolute)),
            "spearman_signed": pearson(self._ranks[1], _ranks(signed)),
            "ssim": float(structural_similarity(self._unit, unit, data_range=1.0)),
            "hog": pearson(self._hog, hog(unit, feature_vector=True)),
        }


def compare(original, randomised):
    """The four similarities of two saliency maps of the same shape, (H, W) or (H, W, C).

    Returns {"spearman_abs", "spearman_signed", "ssim", "hog"}: Spearman of the absolute and
    of the signed maps (`single_channel`; NaN for a constant map), SSIM (data_range 1) of the
    absolute maps each divided by its own maximum, and Pearson's correlation of the HOG
    feature vectors (skimage defaults: 8x8 cells, 3x3 blocks, so at least 24x24 pixels) of
    those normalised maps (NaN when a vector is constant, e.g. for an all-zero map).
    """
    return Reference(original).compare(randomised)
