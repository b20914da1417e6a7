#!/usr/bin/env python3
"""The README's segmentation figure: the tiny encoder-decoder of the tests (a square and a disc
on noise, trained here in about 10 s) explained for "square" and for "disc" over their predicted
regions, one panel each (the region's outline, the predicted classes, Grad-CAM, Ablation-CAM).

    python scripts/segmentation_figure.py --output docs/segmentation_panel.png
"""
import os
import sys

import numpy as np
from absl import app, flags
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))  # the tests' model and scenes, one definition

flags.DEFINE_string("output", os.path.join(REPO, "docs", "segmentation_panel.png"),
                    "Where the figure goes.")
flags.DEFINE_integer("seed", 12, "The scene's seed.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from guided_gradcam.core.tf_startup import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow.compat.v1 as tf

    tf.disable_eager_execution()
    from guided_gradcam import GuidedGradCam
    from guided_gradcam.core.tf_eager import eager
    from guided_gradcam.outputs.files import render_outputs
    from helpers import build_and_train_segmentation, scenes

    with eager():
        model = build_and_train_segmentation()
    image, _ = scenes(FLAGS.seed, 1)
    names = ("background", "square", "disc")
    panels = []
    with GuidedGradCam(model, methods=("gradcam", "ablationcam"), progress=None) as explainer:
        for name in ("square", "disc"):
            explanation, = explainer.explain(image, names.index(name))
            size = image.shape[1:3]
            panels.append(render_outputs(explanation, image[0], (0, 0) + size[::-1], name,
                                         kinds=("panel",))["panel"])
    width = max(panel.shape[1] for panel in panels)
    figure = np.concatenate([np.pad(panel, ((0, 0), (0, width - panel.shape[1]), (0, 0)),
                                    constant_values=255) for panel in panels])
    # 256 colours: the figure is flat tiles and a colour map; the README's copy stays small.
    Image.fromarray(figure).quantize(256).save(FLAGS.output, optimize=True)
    print("wrote %s" % FLAGS.output)


if __name__ == "__main__":
    app.run(main)
