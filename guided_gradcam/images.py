"""Reading photos and fitting them to a network's input size (numpy + PIL only).

Every way a photo can be unreadable is reported as an ImageError whose message
is one line naming the file, so the CLI can print it and carry on.
"""

import glob
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from guided_gradcam.errors import ImageError, one_line

# Resampling filter used to shrink the crop to the network's input size.
# PIL's BILINEAR widens its kernel when downscaling, so it also antialiases.
RESAMPLE = Image.BILINEAR

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Modes holding 16-bit samples (mode "I" is 32-bit but is what 16-bit
# files decode to in some Pillow versions, so it is read as 16-bit too).
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


def _gray_to_rgb(gray):
    """(H, W) uint8 -> (H, W, 3) uint8."""
    return np.repeat(gray[:, :, np.newaxis], 3, axis=2)


def _to_rgb(image):
    """A decoded PIL image of any supported mode -> uint8 (H, W, 3) RGB array.

    Raises ValueError for a mode PIL cannot turn into RGB.
    """
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode in _SIXTEEN_BIT_MODES:
        # PIL's convert("L") clips values above 255; scale the full range instead.
        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        return _gray_to_rgb(np.round(values / 257.0).astype(np.uint8))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        return _gray_to_rgb(np.round(np.clip(values, 0, 255)).astype(np.uint8))
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        # Transparent pixels carry arbitrary colour values; show them as white.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    # 1, L, P, CMYK, YCbCr, ...: PIL's own conversions are right for these.
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


# A JPEG is decoded at 1/2, 1/4 or 1/8 of its size (its DCT scaled, Pillow's draft mode) as long
# as its short side keeps this many times the network's larger input side: a 12000x9000 photo
# becomes 1500x1125 for a 224x224 network, decoded in a 64th of the memory and time.
DRAFT_MARGIN = 4


def load_photo(path, network_size=None):
    """Read an image file as a uint8 (H, W, 3) RGB array, upright per its EXIF tag.

    Grey, palette, bilevel, 16-bit (scaled by 1/257), float (clipped to 0..255),
    CMYK and YCbCr images are converted to RGB; transparency is composited onto
    white. network_size: (height, width) of the network input the photo is for; a far larger
    JPEG is then decoded at reduced size (`DRAFT_MARGIN`). Raises ImageError (one-line message
    with the path) if the file is missing, a folder, empty, truncated, too large, or not an
    image.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"image file not found: {path}")
    if os.path.isdir(path):
        raise ImageError(f"expected an image file but got a folder: {path}")
    if os.path.getsize(path) == 0:
        raise ImageError(f"image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            # Above Pillow's warning size (89 Mpx) a JPEG decodes reduced and anything else in
            # full (3 bytes a pixel); twice that size is refused with DecompressionBombError.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            if network_size and image.format == "JPEG":
                needed = DRAFT_MARGIN * max(network_size)
                short = min(image.size)
                scale = max(1, short // needed)
                if scale >= 2:
                    image.draft("RGB", (-(-image.size[0] // scale), -(-image.size[1] // scale)))
            image.load()  # decode every pixel now so a truncated file fails here
            # In place: without an orientation tag a copy would cost a sixth of the load.
            ImageOps.exif_transpose(image, in_place=True)
            return np.ascontiguousarray(_to_rgb(image))
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"image is too large to decode safely ({one_line(exc)}): {path}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"not a readable image file (unknown format): {path}") from exc
    except PermissionError as exc:
        raise ImageError(f"no permission to read image file: {path}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        # PIL reports truncated or corrupt data with any of these types.
        raise ImageError(f"cannot decode image file ({one_line(exc)}): {path}") from exc


def crop_box(photo_width, photo_height, target_height, target_width):
    """Largest centred (left, top, right, bottom) box with the target's aspect ratio.

    For a square network input this is the central square of the photo.
    """
    for name, value in (("photo_width", photo_width), ("photo_height", photo_height),
                        ("target_height", target_height), ("target_width", target_width)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    photo_width, photo_height = int(photo_width), int(photo_height)
    target_height, target_width = int(target_height), int(target_width)
    # Integer arithmetic with rounding, so the box never exceeds the photo.
    if photo_width * target_height >= photo_height * target_width:
        box_height = photo_height  # photo is wider than the target: trim the sides
        box_width = (photo_height * target_width + target_height // 2) // target_height
        box_width = min(max(box_width, 1), photo_width)
    else:
        box_width = photo_width  # photo is taller than the target: trim top and bottom
        box_height = (photo_width * target_height + target_width // 2) // target_width
        box_height = min(max(box_height, 1), photo_height)
    left = (photo_width - box_width) // 2
    top = (photo_height - box_height) // 2
    return left, top, left + box_width, top + box_height


def fit_to_network(photo, target_height, target_width, channels=3):
    """Centre crop to the network's aspect ratio, then resize to its input size.

    Returns (network_input, box): network_input is uint8 (target_height,
    target_width, channels), gray (PIL's 'L', ITU-R 601 luma) for channels=1; box = (left, top, right, bottom) is the cropped region
    in photo pixels, which is what overlays are mapped back onto over the
    whole photo. The filter is the module constant RESAMPLE.
    """
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(
            f"photo must be a uint8 (H, W, 3) array, got {photo.dtype} {photo.shape}"
        )
    height, width = photo.shape[:2]
    box = crop_box(width, height, target_height, target_width)
    # Crop first: resize(box=...) would let the filter reach pixels outside the box.
    cropped = Image.fromarray(photo).crop(box)
    resized = cropped.resize((int(target_width), int(target_height)), resample=RESAMPLE)
    if channels == 1:
        return np.asarray(resized.convert("L"), dtype=np.uint8)[..., None], box
    return np.asarray(resized, dtype=np.uint8), box


def _is_image_name(name):
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _has_glob_magic(spec):
    return any(char in spec for char in "*?[")


def collect_image_paths(specs):
    """Expand file paths, folders and glob patterns into a list of image paths.

    A folder gives its image files (by extension, sorted, not recursive, hidden
    files skipped); a glob pattern gives its matching image files, sorted; a
    file path is taken as it is. Order is kept and duplicates dropped.
    Returns (paths, errors): errors holds a one-line message for each spec
    that matched nothing, so a run over many inputs can go on.
    """
    paths, errors, seen = [], [], set()

    def add(path):
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for spec in specs:
        spec = os.fspath(spec)
        if os.path.isdir(spec):
            names = sorted(
                name for name in os.listdir(spec)
                if not name.startswith(".") and _is_image_name(name)
                and os.path.isfile(os.path.join(spec, name))
            )
            if not names:
                errors.append(
                    f"folder has no image files ({' '.join(IMAGE_EXTENSIONS)}): {spec}"
                )
            for name in names:
                add(os.path.join(spec, name))
        elif os.path.exists(spec):
            add(spec)
        elif _has_glob_magic(spec):
            matches = sorted(
                match for match in glob.glob(spec, recursive=True)
                if os.path.isfile(match) and _is_image_name(match)
            )
            if not matches:
                errors.append(f"pattern matches no image files: {spec}")
            for match in matches:
                add(match)
        else:
            errors.append(f"no such file or folder: {spec}")
    return paths, errors
