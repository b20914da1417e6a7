"""TF-Slim networks of the registry (`networks.py`), built in the graph and restored from a
checkpoint with `tf.train.Saver`."""
import sys

import tensorflow.compat.v1 as tf

from guided_gradcam.zoo import checkpoints
from guided_gradcam.labels import imagenet_class_names
from guided_gradcam.preprocessing import Preprocessing
from guided_gradcam.sources.base import ModelSource, PlacedModel


class SlimSource(ModelSource):
    """`spec`'s network with `num_logits` outputs; weights from `checkpoint` (a prefix whose
    variable shapes are `shapes`), or none (the caller initialises: tests, benchmarks)."""

    def __init__(self, spec, num_logits, checkpoint=None, shapes=None, background_logits=0):
        self.spec = spec
        self.name = spec.name
        self.num_logits = num_logits
        self.checkpoint = checkpoint
        self._shapes = shapes
        self.background_logits = background_logits
        self.preprocessing = spec.preprocess if isinstance(spec.preprocess, Preprocessing) else \
            Preprocessing(spec.preprocessing_name, spec.preprocessing_name, spec.preprocess)
        self.input_shape = tuple(spec.input_size) + (3,)
        self.fixed_input_size = spec.fixed_input_size
        if num_logits - background_logits == 1000:
            self.class_names = imagenet_class_names()

    @classmethod
    def from_checkpoint(cls, spec, checkpoint=None, checkpoints_dir=None, download=True,
                        progress=sys.stderr):
        """Finds (or downloads) `spec`'s checkpoint; the class count comes from its logits."""
        prefix = checkpoints.locate_checkpoint(
            spec, checkpoint, checkpoints_dir,
            download=download, progress=progress)
        shapes = checkpoints.variable_shapes(prefix)
        num_logits = checkpoints.count_logits(spec, shapes, prefix)
        # The official 1001-class checkpoints put "background" at logit 0.
        return cls(spec, num_logits, prefix, shapes, background_logits=int(num_logits == 1001))

    def place(self, net_input):
        logits, end_points = self.spec.build(net_input, self.num_logits)
        layers = {name: t for name, t in end_points.items() if t.shape.ndims == 4}
        variables = tf.global_variables()

        def restore(session):
            if self.checkpoint is not None:
                checkpoints.restore(session, variables, self.checkpoint, self._shapes,
                                    self.spec.name)
        return PlacedModel(output=logits, layers=layers, default_layer=self.spec.default_layer,
                           restore=restore, background_logits=self.background_logits)
