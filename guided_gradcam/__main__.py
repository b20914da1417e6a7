"""`python -m guided_gradcam`: the command line, the same as `guided-gradcam` and inference.py."""
from guided_gradcam.cli.explain import run

if __name__ == "__main__":
    run()
