"""A segmentation explanation's panel tiles, numpy and PIL: the photo with the explained
region's outline, and the predicted class map (one colour per class) with the same outline."""
import numpy as np
from PIL import Image

from guided_gradcam.regions import outline, resize_mask

OUTLINE = np.array([255, 255, 0], np.uint8)  # yellow: seen on the photo and the class colours


def class_colours(count):
    """(count, 3) uint8 colours: black for class 0 (often the background), then hues apart."""
    hues = (np.arange(1, count) * 0.618034) % 1.0  # golden-ratio steps: neighbours differ
    hsv = np.stack([hues * 255, np.full_like(hues, 200), np.full_like(hues, 230)], axis=-1)
    coloured = np.asarray(Image.fromarray(hsv.astype(np.uint8)[None], "HSV").convert("RGB"))[0]
    return np.concatenate([np.zeros((1, 3), np.uint8), coloured]).astype(np.uint8)


def _with_outline(picture, region):
    picture = picture.copy()
    picture[outline(resize_mask(region, *picture.shape[:2]))] = OUTLINE
    return picture


def region_tiles(explanation, original):
    """[(title, uint8 RGB)] of the region over `original` (the network input as displayed) and
    the predicted classes, both at `original`'s size."""
    height, width = original.shape[:2]
    classes = len(explanation.probabilities)
    prediction = np.asarray(Image.fromarray(explanation.prediction.astype(np.int32)).resize(
        (width, height), Image.NEAREST))
    colours = class_colours(classes)[np.clip(prediction, 0, classes - 1)]
    blended = (0.4 * original + 0.6 * colours).astype(np.uint8)
    return [("Region (%.0f %%)" % (100 * explanation.region_area),
             _with_outline(original, explanation.region)),
            ("Prediction", _with_outline(blended, explanation.region))]
