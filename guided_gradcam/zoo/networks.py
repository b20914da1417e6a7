"""The network registry: everything the toolkit needs to know about one TF-Slim network.

`sources.slim.SlimSource` places one of these, restored from its checkpoint, in the
explanation graph.
"""
import dataclasses
import os
from typing import Callable, Tuple

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.preprocessing import PREPROCESSINGS

OFFICIAL_MODELS_URL = "http://download.tensorflow.org/models"
# Set to a mirror of download.tensorflow.org/models (same file layout) on closed networks.
MIRROR_ENV = "GUIDED_GRADCAM_MODELS_URL"

inception_preprocess = PREPROCESSINGS["inception"]  # RGB in [0, 255] → [-1, 1] (MobileNet)
vgg_preprocess = PREPROCESSINGS["vgg"]  # minus the ImageNet channel means (ResNet V1, VGG)


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    name: str
    build: Callable  # (preprocessed images, num_classes) -> (logits [B, C], end_points)
    preprocess: Callable
    preprocessing_name: str
    input_size: Tuple[int, int]  # (height, width)
    default_layer: str
    logits_variable: str  # its last dimension tells the checkpoint's number of classes
    archive: str  # official archive, relative to OFFICIAL_MODELS_URL
    checkpoint_name: str  # checkpoint prefix inside the archive
    fixed_input_size: bool = False  # fully connected layers need exactly `input_size`

    def check_input_size(self, size):
        """The (height, width) to build with: `size`, or the native one when None."""
        from guided_gradcam.sources.base import checked_input_size

        return checked_input_size(self.name, self.input_size, size, self.fixed_input_size)

    @property
    def checkpoint_url(self):
        base = os.environ.get(MIRROR_ENV) or OFFICIAL_MODELS_URL
        return "%s/%s" % (base.rstrip("/"), self.archive)


def _mobilenet_builder(depth_multiplier):
    def build(images, num_classes):
        import tf_slim as slim
        from guided_gradcam.zoo.slim_models import mobilenet_v1

        with slim.arg_scope(mobilenet_v1.mobilenet_v1_arg_scope()):
            return mobilenet_v1.mobilenet_v1(images, num_classes, depth_multiplier=depth_multiplier)
    return build


def _resnet_builder(depth):
    def build(images, num_classes):
        import tensorflow.compat.v1 as tf
        import tf_slim as slim
        from tf_slim.nets import resnet_v1

        from guided_gradcam.core import tf_compat  # noqa: F401  (slim.batch_norm)

        network = getattr(resnet_v1, "resnet_v1_%d" % depth)
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            logits, end_points = network(images, num_classes, is_training=False, global_pool=True)
        return tf.squeeze(logits, [1, 2], name="SpatialSqueeze"), end_points
    return build


def _build_vgg_16(images, num_classes):
    import tf_slim as slim
    from tf_slim.nets import vgg

    with slim.arg_scope(vgg.vgg_arg_scope()):
        return vgg.vgg_16(images, num_classes, is_training=False)


def _mobilenet(name, multiplier, tag):
    return NetworkSpec(
        name=name, build=_mobilenet_builder(multiplier), preprocess=inception_preprocess,
        preprocessing_name="RGB / 127.5 - 1", input_size=(224, 224),
        default_layer="Conv2d_13_pointwise",
        logits_variable="MobilenetV1/Logits/Conv2d_1c_1x1/weights",
        archive="mobilenet_v1_2018_08_02/mobilenet_v1_%s_224.tgz" % tag,
        checkpoint_name="mobilenet_v1_%s_224.ckpt" % tag)


def _resnet(depth):
    name = "resnet_v1_%d" % depth
    return NetworkSpec(
        name=name, build=_resnet_builder(depth), preprocess=vgg_preprocess,
        preprocessing_name="RGB - ImageNet means", input_size=(224, 224),
        default_layer="%s/block4" % name, logits_variable="%s/logits/weights" % name,
        archive="%s_2016_08_28.tar.gz" % name, checkpoint_name="%s.ckpt" % name)


NETWORKS = {
    spec.name: spec for spec in (
        _mobilenet("mobilenet_v1", 1.0, "1.0"),
        _mobilenet("mobilenet_v1_075", 0.75, "0.75"),
        _resnet(50),
        _resnet(101),
        NetworkSpec(
            name="vgg_16", build=_build_vgg_16, preprocess=vgg_preprocess,
            preprocessing_name="RGB - ImageNet means", input_size=(224, 224),
            default_layer="vgg_16/conv5/conv5_3", logits_variable="vgg_16/fc8/weights",
            archive="vgg_16_2016_08_28.tar.gz", checkpoint_name="vgg_16.ckpt",
            fixed_input_size=True),
    )
}
DEFAULT_NETWORK = "mobilenet_v1_075"


def get_network(name):
    try:
        return NETWORKS[name]
    except KeyError:
        raise GuidedGradCamError(
            "unknown network %r; choose one of: %s" % (name, ", ".join(NETWORKS))) from None
