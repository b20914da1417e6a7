"""The TF-Slim network definitions that `tf_slim.nets` lacks, by the name the design card gives
them: a thin alias of `guided_gradcam.zoo.slim_models` for the checkout (not in the wheel)."""
from guided_gradcam.zoo.slim_models import *  # noqa: F401,F403
