"""Score-CAM (Wang et al., CVPR-W 2020, arXiv 1910.01279): each channel's map A^k, upsampled
to the input (bilinear, half-pixel centres) and min-max normalised to [0, 1], masks the
preprocessed input; the class score s_k of each masked input, softmax-normalised over the
channels, weights them: L = ReLU(Σ_k softmax(s)_k A^k).

The score is y^c before softmax, the score every map of this toolkit explains (and
pytorch-grad-cam's), not the paper's probability: probabilities squash every channel into
[0, 1], where a softmax over the channels is nearly uniform. The paper subtracts the score of
a baseline input; a constant over the channels cancels in the softmax, so it is left out. A
counterfactual explains −y^c: softmax(−s).

Faster Score-CAM (tf-keras-vis): only the `channels` channels of largest spatial variance are
masked and weighted, the others get weight 0.
"""
import numpy as np

from guided_gradcam.channel_maps import upsample
from guided_gradcam.methods.base import MASKED_INPUTS, CamMethod

# Faster Score-CAM's default. With MobileNet V1 0.75 (768 channels), the upsampled maps of
# 256 channels correlate with every channel's at 0.9997 (astronaut), 0.948 (cat), 1.0000
# (coffee, cat_dog); 128: 0.999, 0.920, 1.000, 0.999; 64: 0.92, 0.71, 0.97, 0.98. The softmax
# over raw scores is led by a few channels, and the largest variance does not always find them.
DEFAULT_CHANNELS = 256


def channel_masks(maps, height, width, channels=None, out=None):
    """[n, h, w] channel maps → [n, H, W] float32 masks: upsampled, min-max normalised to
    [0, 1]; a constant map masks everything (0), as 0/0 must not become NaN. channels: the
    masks [n, H, W, channels] of an input of that many channels, made in that layout: masking
    is then one contiguous product (~5x faster than a mask broadcast over 3 channels).
    out: a C-contiguous float32 array of that shape to write them into."""
    masks = upsample(maps, height, width, channels or 1,
                     None if out is None else out.reshape(len(maps), height, -1))
    low = masks.min(axis=(1, 2), keepdims=True)
    spread = masks.max(axis=(1, 2), keepdims=True) - low
    # In place, and no `where=` (which is not vectorised): a constant map is 0 - 0 = 0 divided
    # by inf.
    masks -= low
    masks /= np.where(spread > 0, spread, np.inf)
    return masks.reshape(len(maps), height, width, channels) if channels else masks


def chosen_channels(activations, count=None):
    """The channels of one image's A [h, w, K] that are masked: all, or the `count` of largest
    spatial variance (ties: the lower index), in index order."""
    channels = activations.shape[-1]
    if count is None or count >= channels:
        return np.arange(channels)
    variance = activations.reshape(-1, channels).var(axis=0)
    return np.sort(np.argsort(-variance, kind="stable")[:count])


def score_weights(scores, target_scores, counterfactual):
    """w [B, K] = softmax over the evaluated channels of ±s (NaN: a channel not evaluated,
    weight 0). target_scores (y^c of the image itself) cancel in the softmax."""
    signed = -scores if counterfactual else scores
    evaluated = np.isfinite(signed)
    shifted = np.where(evaluated, signed, -np.inf)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.where(evaluated, np.exp(shifted), 0.0)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


METHOD = CamMethod("scorecam", "Score-CAM", "Wang et al., CVPR-W 2020, arXiv 1910.01279", 5,
                   needs=MASKED_INPUTS, score_weights=score_weights)
