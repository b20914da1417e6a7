"""Alias of `guided_gradcam.zoo.slim_models.mobilenet_v1` (MobileNet V1 in TF-Slim)."""
from guided_gradcam.zoo.slim_models.mobilenet_v1 import *  # noqa: F401,F403
from guided_gradcam.zoo.slim_models.mobilenet_v1 import mobilenet_v1  # noqa: F401
