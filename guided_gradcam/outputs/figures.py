"""The paper's Figure 1 and its class-discrimination claim, from `Explanation`s (numpy + PIL only).

Figure 1 of Selvaraju et al. shows, for one photo and several classes: the photo, Guided
Backprop, Grad-CAM, Guided Grad-CAM and the counterfactual Grad-CAM. The paper's claim is that
GBP looks the same whatever the class while Grad-CAM and Guided Grad-CAM do not; the Pearson
correlation between two classes' maps puts a number on it.

Which representation is correlated: the maps exactly as `explain` returns them. GBP and Guided
Grad-CAM are the raw signed input gradients over all three channels (H·W·3 values), Grad-CAM is
the upsampled `cam` (H·W values). Of the representations tried on cat_dog.jpg (README, "Paper
figures"), the raw gradients come closest to an independent computation's numbers; per-pixel
gradient magnitudes give about 0.01 less for GBP and 0.08 less for Guided Grad-CAM.
"""
import numpy as np
from PIL import Image, ImageDraw

from guided_gradcam.outputs import rendering
from guided_gradcam.methods import TITLES
from guided_gradcam.outputs.files import heading

# The maps whose between-class correlation the figures command reports, in table order.
CORRELATED_MAPS = (("gbp", "GBP"), ("cam", "Grad-CAM"), ("guided_gradcam", "Guided Grad-CAM"))

BOX_COLOUR = (255, 255, 255)
BOX_EDGE_COLOUR = (0, 0, 0)
BOX_LINE_WIDTH = 2


def pearson(first, second):
    """Pearson correlation of two equally shaped arrays, flattened; NaN if either is constant."""
    first = np.asarray(first, dtype=np.float64).ravel()
    second = np.asarray(second, dtype=np.float64).ravel()
    if first.shape != second.shape:
        raise ValueError("cannot correlate %d values with %d" % (first.size, second.size))
    first = first - first.mean()
    second = second - second.mean()
    # Element-wise sums, not np.dot: BLAS threads fighting over busy cores made each call
    # of 50k values take 17 ms (the sanity checks call it thousands of times).
    norm = np.sqrt((first * first).sum() * (second * second).sum())
    return float((first * second).sum() / norm) if norm > 0 else float("nan")


def map_correlations(first, second):
    """{'gbp', 'cam', 'guided_gradcam'} → Pearson r between two explanations of one image."""
    return {name: pearson(getattr(first, name), getattr(second, name))
            for name, _ in CORRELATED_MAPS}


def draw_box(image, box):
    """A copy of a uint8 (H, W, 3) image with box (left, top, right, bottom; right/bottom
    exclusive) outlined in white, with a black edge outside so it shows on any colour."""
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = box
    draw.rectangle((left - 1, top - 1, right, bottom), outline=BOX_EDGE_COLOUR)
    draw.rectangle((left, top, right - 1, bottom - 1), outline=BOX_COLOUR, width=BOX_LINE_WIDTH)
    return np.asarray(picture)


def class_figure(explanation, counterfactual, class_name, box=None, method="gradcam",
                 with_inputs=True):
    """One row of Figure 1: original | GBP | Grad-CAM (with box) | Guided Grad-CAM |
    counterfactual Grad-CAM, headed by the class name and its probability; with `method`,
    that member of the Grad-CAM family in Grad-CAM's three places. with_inputs=False leaves
    out the original and GBP (the same in every method's row).

    explanation and counterfactual explain the same image and class (the second with
    counterfactual=True), both with `method` among their methods unless it is gradcam; box is
    the localisation box in network-input pixels, or None.
    """
    if (counterfactual.label, counterfactual.counterfactual) != (explanation.label, True):
        raise ValueError("counterfactual must be the counterfactual explanation of class %d"
                         % explanation.label)
    _, cam, guided = _maps(explanation, method)
    height, width = cam.shape
    whole = (0, 0, width, height)
    overlay = rendering.overlay_on_photo(explanation.image, cam, whole)
    if box is not None:
        overlay = draw_box(overlay, box)
    title = TITLES[method]
    inputs = [("Original", explanation.image),
              ("Guided Backprop", rendering.gradient_to_image(explanation.gbp))]
    tiles = (inputs if with_inputs else []) + [
        (title, overlay),
        ("Guided " + title, rendering.gradient_to_image(guided)),
        ("Counterfactual " + title,
         rendering.overlay_on_photo(explanation.image, _maps(counterfactual, method)[1], whole)),
    ]
    return rendering.make_panel(tiles, heading(explanation, class_name))


def _maps(explanation, method):
    """(lowres, cam, guided) of one method."""
    return explanation.maps(method)


def stack_figures(figures, align_right=False):
    """Figures (uint8 (H_i, W_i, 3)) one below the other on white, left-aligned (or
    right-aligned: a method's row under the columns it shares with the first row)."""
    if not figures:
        raise ValueError("stack_figures needs at least one figure")
    width = max(figure.shape[1] for figure in figures)
    height = sum(figure.shape[0] for figure in figures)
    stacked = np.empty((height, width, 3), np.uint8)
    stacked[...] = rendering.PANEL_BACKGROUND
    top = 0
    for figure in figures:
        left = width - figure.shape[1] if align_right else 0
        stacked[top:top + figure.shape[0], left:left + figure.shape[1]] = figure
        top += figure.shape[0]
    return stacked


def format_table(header, rows):
    """Rows of cells as aligned text lines (two spaces between columns), header first."""
    cells = [[str(cell) for cell in row] for row in [header] + list(rows)]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in cells]
