"""Turning maps and gradients into pictures, and saving results (numpy + PIL only)."""

import functools
import os
import secrets

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from guided_gradcam.outputs.png import encode_png

# Brightness kept outside the crop box: the network never saw that area.
OUTSIDE_BOX_BRIGHTNESS = 0.4

_DIM_TABLE = [int(v * OUTSIDE_BOX_BRIGHTNESS + 0.5) for v in range(256)] * 3

PANEL_BACKGROUND = (255, 255, 255)
PANEL_TEXT = (0, 0, 0)
PANEL_GAP = 8  # pixels between tiles and around the edge
HEADING_FONT_SIZE = 20
TITLE_FONT_SIZE = 16
MIN_PICTURE_SIDE = 224  # smaller pictures (a 96x96 model's maps) are upscaled to at least this


def display_scale(height, width, minimum=MIN_PICTURE_SIDE):
    """The smallest integer factor that brings a picture's short side to `minimum` pixels or
    more; 1 for a picture that is that large already."""
    return max(1, -(-minimum // max(1, min(height, width))))


def upscale(image, factor, resample=Image.NEAREST):
    """A uint8 (H, W, 3) picture `factor` times larger: Image.NEAREST for maps (each value a
    factor x factor block), Image.BILINEAR for a photo. factor 1 returns it unchanged."""
    if factor == 1:
        return image
    height, width = image.shape[:2]
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return np.asarray(picture.resize((width * factor, height * factor), resample))


def normalize_map(m):
    """Scale a map (H, W), or each map of a batch (N, H, W), by its own maximum.

    Returns float32 in [0, 1]. Negative values (which Grad-CAM's ReLU removes
    anyway) become 0. A map whose maximum is <= 0 or not finite becomes all
    zeros, never NaN.
    """
    m = np.asarray(m, dtype=np.float32)
    if m.ndim < 2:
        raise ValueError(f"expected a (H, W) or (N, H, W) map, got shape {m.shape}")
    if m.size == 0:
        return np.zeros(m.shape, np.float32)
    peak = m.max(axis=(-2, -1), keepdims=True)
    usable = np.isfinite(peak) & (peak > 0)
    safe_peak = np.where(usable, peak, np.float32(1))
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.clip(np.maximum(m, 0) / safe_peak, 0, 1)
    scaled = np.where(usable, np.nan_to_num(scaled, nan=0.0), np.float32(0))
    return scaled.astype(np.float32)


def _jet_exact(x):
    centres = np.array([0.75, 0.5, 0.25], np.float32)  # R, G, B
    channels = np.clip(1.5 - np.abs(4 * x[..., np.newaxis] - 4 * centres), 0, 1)
    return np.floor(channels * 255 + 0.5).astype(np.uint8)


# jet on 4096 levels: one table look-up per pixel, 6x faster than the formula; a colour is
# off by at most one level (of 255) from the formula's.
JET_LEVELS = 4096
_JET_TABLE = _jet_exact(np.linspace(0, 1, JET_LEVELS, dtype=np.float32))


def jet(m):
    """Colour a [0, 1] map (H, W) with the classic jet colormap -> uint8 (H, W, 3).

    0 is dark blue, then blue, cyan, yellow, red, and 1 is dark red. Each
    channel is a trapezoid over [0, 1], peaking at 1/4 (blue), 1/2 (green)
    and 3/4 (red).
    """
    x = np.nan_to_num(np.asarray(m, dtype=np.float32), nan=0.0)
    index = np.clip(x, 0, 1) * np.float32(JET_LEVELS - 1) + np.float32(0.5)
    return np.take(_JET_TABLE, index.astype(np.intp), axis=0)


def gradient_to_image(g):
    """Show an (H, W, 3) input gradient (guided backprop) as a uint8 image.

    Standardise, shrink to std 0.1 around mid grey, clip to [0, 1]. An
    all-zero gradient gives uniform grey 128.
    """
    g = np.asarray(g, dtype=np.float32)
    if not np.isfinite(g).all():
        g = np.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    # float32 pixels, float64 sums: a folder run renders two of these per image.
    mean = np.float32(g.mean(dtype=np.float64))
    centred = g - mean
    std = np.sqrt(np.mean(np.square(centred), dtype=np.float64))
    # 255 * (0.1 z + 0.5) rounded half up: floor(25.5 z + 128), clipped to 0..255.
    centred *= np.float32(25.5 / (std + 1e-5))
    centred += np.float32(128.0)
    np.clip(centred, 0.5, 255.5, out=centred)
    return centred.astype(np.uint8)


def overlay_on_photo(photo, cam, box, alpha=0.5):
    """Blend a jet-coloured map over the part of the photo the network saw.

    photo: uint8 (Hp, Wp, 3) at full resolution; cam: float [0, 1] (h, w)
    covering box = (left, top, right, bottom) of the photo. Inside the box
    the photo is mixed with the coloured map (weight alpha); outside it the
    photo is dimmed, as the network never saw that area. Returns uint8
    (Hp, Wp, 3).
    """
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo must be (H, W, 3), got shape {photo.shape}")
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"cam must be (H, W), got shape {cam.shape}")
    left, top, right, bottom = (int(v) for v in box)
    height, width = photo.shape[:2]
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError(f"box {tuple(box)} is not inside a {width}x{height} photo")
    # Colour at map resolution, then let PIL scale and blend in C: photos can be megapixels,
    # and jet is piecewise linear, so scaling colours is scaling the map up to its kinks.
    picture = Image.fromarray(np.ascontiguousarray(photo, dtype=np.uint8))
    heat = Image.fromarray(jet(cam)).resize((right - left, bottom - top), Image.BILINEAR)
    inside = Image.blend(picture.crop((left, top, right, bottom)), heat, alpha)
    out = picture.point(_DIM_TABLE)
    out.paste(inside, (left, top))
    return np.asarray(out)


def _fit_text(draw, text, font, max_width):
    """The text, shortened with '...' if it is wider than max_width pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "...", font=font) > max_width:
        text = text[:-1]
    return text + "..."


def _text_height(font):
    left, top, right, bottom = font.getbbox("Hgjy(|")
    return bottom


@functools.lru_cache(maxsize=None)
def _font(size):
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=16)
def _panel_layout(tile_height, tile_width, titles, heading_width):
    """(white panel with the titles drawn, tile left edges, tile top) for one panel geometry.

    A folder run draws thousands of panels of one geometry: the titles and the text layout
    are done once here, only the heading and the tiles per panel."""
    title_font = _font(TITLE_FONT_SIZE)
    heading_height = _text_height(_font(HEADING_FONT_SIZE)) + PANEL_GAP
    title_height = _text_height(title_font) + PANEL_GAP // 2
    row_width = len(titles) * tile_width + (len(titles) - 1) * PANEL_GAP
    # Widen the panel rather than cut the heading, which names the class.
    width = max(row_width, heading_width) + 2 * PANEL_GAP
    height = PANEL_GAP + heading_height + title_height + tile_height + PANEL_GAP
    template = Image.new("RGB", (width, height), PANEL_BACKGROUND)
    draw = ImageDraw.Draw(template)
    title_top = PANEL_GAP + heading_height
    lefts = [(width - row_width) // 2 + i * (tile_width + PANEL_GAP) for i in range(len(titles))]
    for title, left in zip(titles, lefts):
        text = _fit_text(draw, title, title_font, tile_width)
        text_x = left + (tile_width - draw.textlength(text, font=title_font)) / 2
        draw.text((text_x, title_top), text, fill=PANEL_TEXT, font=title_font)
    return template, lefts, title_top + title_height


def make_panel(tiles, heading):
    """Lay tiles side by side under a heading, each with its title above it.

    tiles: list of (title, uint8 (H, W, 3) image), all the same size.
    heading: e.g. "tiger cat (282) p=0.49". Returns one uint8 RGB image on a
    white background.
    """
    if not tiles:
        raise ValueError("make_panel needs at least one tile")
    images = [np.asarray(image) for _, image in tiles]
    shape = images[0].shape
    for (title, _), image in zip(tiles, images):
        if image.shape != shape or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"tile {title!r} has shape {image.shape}; all tiles must be (H, W, 3) "
                f"of the same size {shape}"
            )
    heading_font = _font(HEADING_FONT_SIZE)
    heading_width = int(np.ceil(heading_font.getlength(heading)))
    template, lefts, tile_top = _panel_layout(
        shape[0], shape[1], tuple(str(title) for title, _ in tiles), heading_width)
    panel = template.copy()
    ImageDraw.Draw(panel).text((PANEL_GAP, PANEL_GAP), heading, fill=PANEL_TEXT, font=heading_font)
    for left, image in zip(lefts, images):
        panel.paste(Image.fromarray(image.astype(np.uint8, copy=False)), (left, tile_top))
    return np.asarray(panel)


def write_atomically(path, write):
    """Run write(file) on a temporary file beside path, then rename it onto path.

    Readers never see a half-written file; on any failure the temporary file
    is removed and path is left as it was.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    while True:
        temp_path = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            # os.open with mode 0o666 lets the umask decide permissions
            # (mkstemp would make every result private to its owner).
            fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        # No fsync: the rename alone guarantees readers never see a partial file after a
        # crash of this process, and a folder run writes thousands of files.
        os.replace(temp_path, path)
    except BaseException:
        try:
            os.remove(temp_path)
        except FileNotFoundError:
            pass
        raise


def save_png(path, image):
    """Save a uint8 image array as PNG at path, atomically."""
    data = encode_png(image)  # fails before any file is made
    write_atomically(path, lambda handle: handle.write(data))


def save_npz(path, **arrays):
    """Save arrays to an uncompressed .npz at exactly path, atomically."""
    write_atomically(path, lambda handle: np.savez(handle, **arrays))
