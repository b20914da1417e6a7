"""The Python API: `GuidedGradCam` owns one graph and one session; `explain` is one run.

    from guided_gradcam import GuidedGradCam, load_photo
    with GuidedGradCam("mobilenet_v1_075") as explainer:
        explanation, = explainer.explain_photos([load_photo("cat.jpg")], labels=["tiger cat"])
        explanation.cam, explanation.gbp, explanation.guided_gradcam
"""
import dataclasses
import sys

import numpy as np
import tensorflow.compat.v1 as tf

from guided_gradcam import checkpoints
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.graph import PREDICTED_CLASS, build_explanation_graph
from guided_gradcam.images import fit_to_network
from guided_gradcam.labels import LabelSpace
from guided_gradcam.networks import DEFAULT_NETWORK, get_network


@dataclasses.dataclass
class Explanation:
    """Every map of one image; class indices are ImageNet's 0..999."""
    label: int  # the explained class
    logits: np.ndarray  # float32 (1000,), pre-softmax
    probabilities: np.ndarray  # float32 (1000,)
    cam_lowres: np.ndarray  # float32 (h, w) at the layer's resolution, after ReLU, unnormalised
    cam: np.ndarray  # float32 (H, W) at the network input size, in [0, 1]
    gbp: np.ndarray  # float32 (H, W, 3): guided backprop w.r.t. the preprocessed input
    guided_gradcam: np.ndarray  # float32 (H, W, 3): gbp * cam
    image: np.ndarray  # uint8 (H, W, 3): the network input (photo after crop and resize)
    counterfactual: bool = False

    def __repr__(self):
        return "Explanation(label=%d, p=%.3f, cam_lowres=%s, cam=%s%s)" % (
            self.label, self.probabilities[self.label], self.cam_lowres.shape, self.cam.shape,
            ", counterfactual" if self.counterfactual else "")

    def top_k(self, k=5):
        """[(class index, probability)] of the k most probable classes."""
        order = np.argsort(-self.probabilities)[:k]
        return [(int(i), float(self.probabilities[i])) for i in order]

    def arrays(self):
        """The arrays saved to `<stem>.npz`."""
        return {
            "logits": self.logits, "label": np.int64(self.label),
            "cam_lowres": self.cam_lowres, "cam": self.cam, "gbp": self.gbp,
            "guided_gradcam": self.guided_gradcam, "image": self.image,
        }


def session_config():
    """One op at a time, each on every core: TF's intra-op pool already spreads a conv over all
    cores, and letting independent ops run side by side (VGG's two backward passes over fc6)
    oversubscribed them: up to 1.4x slower and erratic on 2 cores, no gain elsewhere."""
    return tf.ConfigProto(inter_op_parallelism_threads=1)


def softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class GuidedGradCam:
    """Grad-CAM, Guided Backprop and Guided Grad-CAM for one TF-Slim network and checkpoint."""

    def __init__(self, network=DEFAULT_NETWORK, checkpoint=None, layer=None,
                 checkpoints_dir=checkpoints.DEFAULT_CHECKPOINTS_DIR, download=True,
                 input_size=None, progress=sys.stderr):
        self.spec = get_network(network)
        input_size = self.spec.check_input_size(input_size)  # before any download
        prefix = checkpoints.locate_checkpoint(
            self.spec, checkpoint, checkpoints_dir, download=download, progress=progress)
        shapes = checkpoints.variable_shapes(prefix)
        self.labels = LabelSpace(checkpoints.count_logits(self.spec, shapes, prefix))
        self.checkpoint = prefix
        self._graph = build_explanation_graph(
            self.spec, self.labels.num_logits, layer, input_size, self.labels.offset)
        self.layer = self._graph.layer
        self.layer_names = self._graph.layer_names
        self.input_size = tuple(self._graph.images.shape.as_list()[1:3])
        self._session = tf.Session(graph=self._graph.graph, config=session_config())
        with self._graph.graph.as_default():
            variables = tf.global_variables()
        checkpoints.restore(self._session, variables, prefix, shapes, self.spec.name)
        self._graph.graph.finalize()  # nothing may add ops per batch

    # -- running ------------------------------------------------------------------------------
    def explain(self, images, labels=None, counterfactual=False):
        """Explains a batch of network inputs (uint8 (B, H, W, 3)) in one session run.

        labels: None (each image's top-1 class), one label for all images, or one per image
        (None entries mean top-1). A label is an ImageNet index or a class name.
        """
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim != 4 or images.shape[1:] != self.input_size + (3,):
            raise GuidedGradCamError(
                "images must be uint8 (B, %d, %d, 3); got shape %s"
                % (self.input_size + (images.shape,)))
        feed = {
            self._graph.images: images,
            self._graph.labels: self._logit_indices(labels, len(images)),
            self._graph.counterfactual: bool(counterfactual),
        }
        g = self._graph
        targets, logits, cam_lowres, cam, gbp, guided = self._session.run(
            [g.targets, g.logits, g.cam_lowres, g.cam, g.gbp, g.guided_gradcam], feed)
        offset = self.labels.offset
        probabilities = softmax(logits)[:, offset:]  # background (if any) keeps its share
        return [
            Explanation(
                label=int(targets[b]) - offset, logits=logits[b, offset:],
                probabilities=probabilities[b], cam_lowres=cam_lowres[b], cam=cam[b],
                gbp=gbp[b], guided_gradcam=guided[b], image=images[b],
                counterfactual=bool(counterfactual))
            for b in range(len(images))
        ]

    def fit(self, photo):
        """(network input, crop box): the photo centre-cropped to the input's aspect, resized."""
        return fit_to_network(photo, *self.input_size)

    def explain_photos(self, photos, labels=None, counterfactual=False):
        """Like `explain`, for photos of any size (uint8 (H, W, 3) each)."""
        inputs = np.stack([self.fit(photo)[0] for photo in photos])
        return self.explain(inputs, labels, counterfactual)

    def _logit_indices(self, labels, batch_size):
        if labels is None or isinstance(labels, (str, int, np.integer)):
            labels = [labels] * batch_size
        if len(labels) != batch_size:
            raise GuidedGradCamError("%d labels for %d images" % (len(labels), batch_size))
        return np.array([
            PREDICTED_CLASS if label is None else self.labels.resolve(label) + self.labels.offset
            for label in labels
        ], dtype=np.int32)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
