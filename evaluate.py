#!/usr/bin/env python3
"""Measure the maps as the papers do: faithfulness to occlusion, deletion / insertion,
localisation error and pointing game on VOC boxes, and the sanity checks:

    python evaluate.py --image images/ --boxes images/boxes

See `python evaluate.py --helpshort` and the README.
"""
from guided_gradcam.cli.evaluate import run

if __name__ == "__main__":
    run()
