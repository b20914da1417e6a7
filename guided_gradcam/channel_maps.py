"""The maps of channel weights found outside the graph (Score-CAM's, Ablation-CAM's), in numpy:
L = ReLU(Σ_k w_k A^k), or of the first principal component of w ⊙ A under eigen smoothing,
upsampled, normalised and guided exactly as the graph does it for every other method
(`graph.upsample_and_normalise`): bilinear with half-pixel centres, divided by the peak, times
GBP. In numpy because the weights arrive after the passes: one more session run to combine
them would cost a MobileNet explanation more than all of this (0.4-1.1 ms against ~0.1 ms).
"""
import numpy as np


def bilinear_matrix(out_size, in_size):
    """[out, in]: linear interpolation with half-pixel centres and edges clamped, as TF's
    ResizeBilinear(half_pixel_centers=True) and PIL."""
    position = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, in_size - 1)
    fraction = position - lower
    matrix = np.zeros((out_size, in_size))
    matrix[np.arange(out_size), lower] += 1.0 - fraction
    matrix[np.arange(out_size), upper] += fraction
    return matrix


# OpenBLAS (numpy's BLAS) runs a product of more than 4 · 65536 multiply-adds on every core, and
# its threads then spin for a while: on 2 cores the TF run that follows took 30 % longer
# (Score-CAM's masks made per run: 1.68x its masked passes, 1.09x with products in blocks).
ONE_THREAD_PRODUCT = 2 ** 17


def matmul_in_blocks(left, right, out=None):
    """left @ right ([..., M, K] @ [..., K, N]), in blocks of M small enough for one thread;
    into `out` where given."""
    rows, inner, columns = left.shape[-2], left.shape[-1], right.shape[-1]
    block = max(1, ONE_THREAD_PRODUCT // (inner * columns))
    if block >= rows:
        return np.matmul(left, right, out=out)
    if out is None:
        out = np.empty(np.broadcast_shapes(left.shape[:-2], right.shape[:-2]) + (rows, columns),
                       np.result_type(left, right))
    for start in range(0, rows, block):
        np.matmul(left[..., start:start + block, :], right, out=out[..., start:start + block, :])
    return out


def upsample(maps, height, width, repeat=1, out=None):
    """[n, h, w] → [n, H, W·repeat] float32, bilinear with half-pixel centres (separable: two
    products with the interpolation matrices), each output pixel repeated `repeat` times in a
    row: the layout of an [n, H, W, repeat] array; into `out` where given."""
    rows = bilinear_matrix(height, maps.shape[1]).astype(np.float32)
    columns = np.repeat(bilinear_matrix(width, maps.shape[2]), repeat, axis=0).astype(np.float32)
    return matmul_in_blocks(rows, matmul_in_blocks(maps.astype(np.float32), columns.T), out)


def principal_projection(weighted):
    """[B, h, w, K] → [B, h, w]: each pixel's projection on the first right singular vector of
    its image's h·w × K matrix centred over the pixels, signed to correlate positively with
    Σ_k of the same matrix (0 keeps the solver's sign): `methods.base.principal_projection`'s
    definition, by numpy's SVD in float64."""
    batch, height, width, channels = weighted.shape
    pixels = weighted.reshape(batch, height * width, channels).astype(np.float64)
    centred = pixels - pixels.mean(axis=1, keepdims=True)
    left, values, _ = np.linalg.svd(centred, full_matrices=False)
    projection = left[:, :, 0] * values[:, :1]  # centred · v1 = s1 u1
    agreement = np.einsum("bp,bp->b", projection, pixels.sum(axis=2))
    projection[agreement < 0] *= -1.0
    return projection.reshape(batch, height, width).astype(np.float32)


def weighted_maps(weights, activations, gbp, projection=False):
    """(lowres [B, h, w], cam [B, H, W], guided [B, H, W, C]) from per-channel weights w [B, K],
    the Grad-CAM layer's activations A [B, h, w, K] and GBP [B, H, W, C]."""
    weighted = weights[:, None, None, :].astype(np.float32) * activations
    lowres = principal_projection(weighted) if projection else weighted.sum(axis=3)
    lowres = np.maximum(lowres, 0.0).astype(np.float32)
    cam = upsample(lowres, *gbp.shape[1:3])
    peak = cam.max(axis=(1, 2), keepdims=True)
    cam /= np.where(peak > 0, peak, np.inf)  # an all-zero map stays zero, never NaN
    return lowres, cam, gbp * cam[..., None]
