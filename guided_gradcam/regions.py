"""Regions of a photo for segmentation models, in numpy and PIL: a box or a mask file in photo
pixels, taken through the photo's crop and resize to the network input, then to the model's
output resolution. A region is a bool mask; non-zero pixels of a mask image are in it."""
import os
import threading

import numpy as np
from PIL import Image

from guided_gradcam.errors import GuidedGradCamError


def parse_box(text):
    """'x0,y0,x1,y1' → (x0, y0, x1, y1) ints, right and bottom exclusive."""
    try:
        box = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise GuidedGradCamError("--region takes x0,y0,x1,y1 in photo pixels with x0 < x1 and "
                                 "y0 < y1, e.g. 10,20,110,220; got %r" % (text,))
    return box


def box_mask(box, height, width):
    """The bool (height, width) mask of `box` (x0, y0, x1, y1), clipped to the image; an error
    when the box lies wholly outside it."""
    x0, y0, x1, y1 = (int(value) for value in box)
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height or x1 <= x0 or y1 <= y0:
        raise GuidedGradCamError("region %d,%d,%d,%d lies outside the %dx%d photo"
                                 % (x0, y0, x1, y1, width, height))
    mask = np.zeros((height, width), bool)
    mask[max(y0, 0):y1, max(x0, 0):x1] = True
    return mask


def load_mask(path):
    """The bool mask of an image file: its non-zero pixels (any colour channel; a palette
    image's non-zero indices)."""
    try:
        with Image.open(path) as image:
            if image.mode in ("RGBA", "LA", "PA"):  # an opaque alpha would fill the region
                image = image.convert("RGB" if image.mode == "RGBA" else "L")
            values = np.asarray(image)  # a palette image's class indices
    except (OSError, ValueError) as error:
        raise GuidedGradCamError("cannot read mask %s: %s" % (path, error)) from None
    return values.any(axis=-1) if values.ndim == 3 else values != 0


def resize_mask(mask, height, width):
    """A bool mask resized to (height, width) by nearest neighbour (pixel centres)."""
    mask = np.asarray(mask, bool)
    if mask.shape == (height, width):
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.resize((int(width), int(height)), Image.NEAREST)) > 0


def photo_mask_to_input(mask, crop_box, input_size):
    """A photo-sized mask → the network input's (H, W): the photo's crop box, then resized."""
    left, top, right, bottom = crop_box
    return resize_mask(np.asarray(mask, bool)[top:bottom, left:right], *input_size)


class RegionChoice:
    """What the user chose for every photo: a box or a mask (array or file), in photo pixels.
    `input_mask` maps it onto one photo's network input; a mask of another size than the photo
    is resized to it, said once through `note`."""

    def __init__(self, box=None, mask=None, note=None):
        if box is not None and mask is not None:
            raise GuidedGradCamError("pass a region or a mask, not both")
        self.box = None if box is None else parse_box(
            box if isinstance(box, str) else ",".join(str(int(value)) for value in box))
        if isinstance(mask, (str, os.PathLike)):  # a file: read once for every photo
            self.mask_name, self.mask = str(mask), load_mask(mask)
        else:
            self.mask_name, self.mask = None, mask
        self.note = note
        self._noted = False
        self._lock = threading.Lock()  # photos are decoded on several threads

    def __bool__(self):
        return self.box is not None or self.mask is not None

    def photo_mask(self, height, width):
        """The bool (height, width) mask of a photo of that size."""
        if self.box is not None:
            return box_mask(self.box, height, width)
        mask = np.asarray(self.mask) != 0
        if mask.ndim == 3:
            mask = mask.any(axis=-1)
        if mask.shape != (height, width):
            with self._lock:
                first, self._noted = not self._noted, True
            if self.note is not None and first:
                self.note("the mask%s is %dx%d, the photo %dx%d: resized to the photo" % (
                    " " + self.mask_name if self.mask_name else "", mask.shape[1],
                    mask.shape[0], width, height))
            mask = resize_mask(mask, height, width)
        return mask

    def input_mask(self, photo_shape, crop_box, input_size):
        """The bool mask at the network input size of a photo of `photo_shape`."""
        return photo_mask_to_input(self.photo_mask(*photo_shape[:2]), crop_box, input_size)


def outline(mask):
    """The bool outline of a mask: its pixels with a 4-neighbour outside it."""
    mask = np.asarray(mask, bool)
    padded = np.pad(mask, 1, constant_values=False)
    inside = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inside
