#!/usr/bin/env python3
"""Grad-CAM, Guided Backprop and Guided Grad-CAM for an image:

    python inference.py --image cat.jpg --label 282

See `python inference.py --helpshort` and the README.
"""
from guided_gradcam.cli.explain import run

if __name__ == "__main__":
    run()
