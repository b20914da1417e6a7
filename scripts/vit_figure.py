#!/usr/bin/env python3
"""The README's vision-transformer figure: the tiny Keras 3 ViT of `zoo.tiny_vit` trained on
where a bright square is (no package this project can reach ships real ViT weights), then
explained on held-out images: original (the square outlined), Guided Backprop, Grad-CAM on the
default layer, attention rollout, gradient-weighted attention and its guided version.

    python scripts/vit_figure.py --output docs/vit/tiny_vit.png

Also prints the held-out accuracy and how often each map's peak lies in the square (the
measure of tests/sources/test_vit.py). Trains in about 10 s on 2 cores; the PNG can differ by a
few pixels on another CPU.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_gradcam.core.tf_startup import import_tensorflow_quietly  # noqa: E402

METHODS = ("gradcam", "rollout", "gradattention")
SHORT_TITLES = {"gradcam": "Grad-CAM", "rollout": "Rollout", "gradattention": "Grad. attention"}
SCALE = 4  # 32x32 pictures shown at 128x128, each map value a 4x4 block


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/vit/tiny_vit.png")
    parser.add_argument("--images", type=int, default=3, help="held-out images in the figure")
    args = parser.parse_args()
    import_tensorflow_quietly()
    import numpy as np

    from guided_gradcam import GuidedGradCam
    from guided_gradcam.outputs import rendering
    from guided_gradcam.outputs.figures import draw_box, stack_figures
    from guided_gradcam.zoo.tiny_vit import build_vit, class_names, square_images, train_vit

    from guided_gradcam.core.tf_eager import eager

    with eager():  # the CLI's start-up leaves TF in graph mode; Keras trains eagerly
        model = build_vit(final_norm=False)  # why: zoo/tiny_vit.py's docstring
        images, labels, _ = square_images(2048, seed=0)
        train_vit(model, images, labels)
    held_out, held_labels, boxes = square_images(200, seed=1, empty=0.0)
    with GuidedGradCam(model, methods=METHODS, labels_file=None) as explainer:
        print("layer %s; unguided: %s" % (explainer.layer_description,
                                          explainer.unguided_activations))
        explanations = explainer.explain(held_out)
    accuracy = np.mean([e.label == label for e, label in zip(explanations, held_labels)])
    print("held-out accuracy %.3f" % accuracy)
    for method in METHODS:
        inside = [e.maps(method).cam.max() > 0 and (
            e.maps(method).cam >= e.maps(method).cam.max() - 1e-6)[y0:y1, x0:x1].any()
            for e, (y0, x0, y1, x1) in zip(explanations, boxes)]
        print("%s: peak in the square on %.3f of the held-out images" % (method, np.mean(inside)))

    names = class_names()
    rows = []
    for explanation, (y0, x0, y1, x1) in list(zip(explanations, boxes))[:args.images]:
        whole = (0, 0, 32, 32)

        def overlay(method):
            return rendering.overlay_on_photo(explanation.image, explanation.maps(method).cam,
                                              whole)
        tiles = [("Original", draw_box(explanation.image, (x0, y0, x1, y1))),
                 ("GBP", rendering.gradient_to_image(explanation.gbp))]
        tiles += [(SHORT_TITLES[method], overlay(method)) for method in METHODS]
        tiles.append(("Guided grad. att.", rendering.gradient_to_image(
            explanation.maps("gradattention").guided)))
        heading = "%s (%d) p=%.2f" % (names[explanation.label], explanation.label,
                                      explanation.probabilities[explanation.label])
        rows.append(rendering.make_panel(
            [(title, rendering.upscale(tile, SCALE)) for title, tile in tiles], heading))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    rendering.save_png(args.output, stack_figures(rows))
    print("wrote %s" % args.output)


if __name__ == "__main__":
    main()
