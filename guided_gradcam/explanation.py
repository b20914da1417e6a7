"""What one explained image gives back (`Explanation`) and the numpy the scores need: the
probabilities of each head's task and the top classes. No TensorFlow: rendering, the outputs and
the evaluation read explanations without it."""
import collections
import dataclasses

import numpy as np

from guided_gradcam.core import tasks
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.methods import GRADCAM, REGISTRY


class MethodMaps(collections.namedtuple("MethodMaps", "lowres cam guided")):
    """One CAM method's maps of one image: (h, w) unnormalised, (H, W) upsampled and divided by
    its max, and (H, W, C) = gbp ⊙ cam (its guided version)."""


def softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(scores):
    return 0.5 * (1.0 + np.tanh(0.5 * scores))  # no overflow for large |z|


def probabilities_of(task, scores, offset=0):
    """[B, K] probabilities per explainable class, from the raw scores [B, C]."""
    if task == tasks.CLASSIFICATION:
        return softmax(scores)[:, offset:]  # a background logit keeps its share
    if task == tasks.BINARY:
        positive = sigmoid(scores)
        return np.concatenate([1.0 - positive, positive], axis=1)
    if task == tasks.MULTILABEL:
        return sigmoid(scores)
    return None


class TopClass(tuple):
    """(index, probability), unpacked as a pair, with the class's `.name`."""

    def __new__(cls, index, probability, name):
        pair = super().__new__(cls, (index, probability))
        pair.name = name
        return pair

    index = property(lambda self: self[0])
    probability = property(lambda self: self[1])

    def __repr__(self):
        return "TopClass(%d, %r, %.4f)" % (self[0], self.name, self[1])


def top_classes(probabilities, k, name_of):
    """[TopClass] of the k most probable classes (ties: the first, as argmax)."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [TopClass(int(i), float(probabilities[i]), name_of(int(i))) for i in order]


@dataclasses.dataclass
class Explanation:
    """Every map of one image; class indices are the model's (ImageNet's 0..999 for 1001-logit
    checkpoints, whose background logit is left out)."""
    label: int  # the explained class (binary: 1 explains z, 0 explains −z; regression: 0)
    logits: np.ndarray  # float32 (C,): the raw scores, before softmax / sigmoid
    probabilities: np.ndarray  # float32: softmax (C,), binary (2,), multi-label σ (C,); None
    #                            for regression
    cam_lowres: np.ndarray  # float32 (h, w) at the layer's resolution, after ReLU, unnormalised
    cam: np.ndarray  # float32 (H, W) at the network input size, in [0, 1]
    gbp: np.ndarray  # float32 (H, W, 3): guided backprop w.r.t. the preprocessed input
    guided_gradcam: np.ndarray  # float32 (H, W, 3): gbp * cam
    image: np.ndarray  # uint8 (H, W, C): the network input (photo after crop and resize)
    counterfactual: bool = False
    task: str = tasks.CLASSIFICATION  # classification, binary, multilabel or regression
    class_names: tuple = dataclasses.field(default=None, repr=False)  # short name per class
    # {method: MethodMaps(lowres, cam, guided)} of the requested Grad-CAM family members;
    # gradcam's are cam_lowres, cam and guided_gradcam
    methods: dict = dataclasses.field(default_factory=dict, repr=False)
    # Segmentation (else None): logits and probabilities are each class's Σ_R z and mean
    # probability over the region R; the region (bool (H, W) at the input size), the predicted
    # class per output pixel, R's share of the output and R itself at the output's resolution.
    region: np.ndarray = dataclasses.field(default=None, repr=False)
    prediction: np.ndarray = dataclasses.field(default=None, repr=False)
    region_area: float = None
    output_region: np.ndarray = dataclasses.field(default=None, repr=False)

    def __repr__(self):
        score = ("y=%.4g" % self.value if self.task == tasks.REGRESSION
                 else "p=%.3f" % self.probabilities[self.label])
        return "Explanation(%s, label=%d, %s, cam_lowres=%s, cam=%s%s)" % (
            self.task, self.label, score, self.cam_lowres.shape, self.cam.shape,
            ", counterfactual" if self.counterfactual else "")

    @property
    def value(self):
        """A regression model's output y."""
        return float(self.logits[0])

    def top_k(self, k=5):
        """[(class index, probability)] of the k most probable classes; each also has `.name`."""
        if self.probabilities is None:
            raise GuidedGradCamError("a regression model has no classes: see .value")
        return top_classes(self.probabilities, k, lambda i: (
            self.class_names[i] if self.class_names else "class %d" % i))

    @property
    def class_name(self):
        """The explained class's name."""
        return self.class_names[self.label] if self.class_names else "class %d" % self.label

    def arrays(self):
        """The arrays saved to `<stem>.npz`."""
        return {
            "logits": self.logits, "label": np.int64(self.label),
            "cam_lowres": self.cam_lowres, "cam": self.cam, "gbp": self.gbp,
            "guided_gradcam": self.guided_gradcam, "image": self.image,
            "task": np.str_(self.task),
            **{key: array for method, maps in self.methods.items()
               for key, array in zip(REGISTRY[method].npz_keys, maps)},
            **({} if self.region is None else {"region": self.region,
                                               "prediction": self.prediction}),
        }

    def maps(self, method=GRADCAM):
        """MethodMaps(lowres, cam, guided) of one CAM method; Grad-CAM's are always there."""
        if method == GRADCAM:
            return MethodMaps(self.cam_lowres, self.cam, self.guided_gradcam)
        return self.methods[method]
