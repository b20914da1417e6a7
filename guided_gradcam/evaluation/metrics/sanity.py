"""Sanity checks (Adebayo et al., NeurIPS 2018): the maps after the weights are randomised,
cascading from the logits down, then each block alone, compared with the original maps by
Spearman's ρ of |map| and of the signed map, SSIM and HOG correlation (`similarity`); rows go
to sanity.csv. Each block's random weights are drawn once and reused in every step (and,
seeded, in every run).

Every step feeds every weight, the blocks not randomised with their own values: a session run
with a new set of fed tensors prunes and optimises the graph anew (0.2 s on MobileNet), one with
the same set reuses it."""
import dataclasses

import numpy as np

from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation.metric import Metric


@dataclasses.dataclass
class SanityRow:
    mode: str  # cascading or independent
    step: int  # 1 = the top block
    block: str  # the block randomised at this step (cascading: and all above it)
    map: str
    spearman_abs: float
    spearman_signed: float
    ssim: float
    hog: float


class Randomiser:
    MODES = ("cascading", "independent")

    def __init__(self, explainer, seed=0, modes=MODES):
        unknown = sorted(set(modes) - set(self.MODES))
        if unknown or not modes:
            raise GuidedGradCamError("randomisation modes are %s; got %s"
                                     % (", ".join(self.MODES), ", ".join(modes) or "none"))
        from guided_gradcam.evaluation import randomisation  # TF-side; only when asked

        self.blocks = randomisation.weight_blocks(explainer)
        self.seed = seed
        self.modes = tuple(modes)
        self._feeds = {}  # block index → {tensor: random value}
        self._originals = {tensor: weight.value for block in self.blocks
                           for weight in block.weights for tensor in weight.tensors}

    @property
    def block_names(self):
        return tuple(block.name for block in self.blocks)

    def _block_feeds(self, index):
        from guided_gradcam.evaluation import randomisation

        if index not in self._feeds:
            self._feeds[index] = randomisation.randomised_feeds(self.blocks, (index,), self.seed)
        return self._feeds[index]

    def steps(self):
        """(mode, step number from 1, block name, feeds) of every step."""
        from guided_gradcam.evaluation import randomisation

        for mode, steps in (("cascading", randomisation.cascading_steps(self.blocks)),
                            ("independent", randomisation.independent_steps(self.blocks))):
            if mode not in self.modes:
                continue
            for number, (block, indices) in enumerate(steps, 1):
                feeds = dict(self._originals)
                for index in indices:
                    feeds.update(self._block_feeds(index))
                yield mode, number, block, feeds


def prepare(explainer, settings):
    return Randomiser(explainer, settings.seed, settings.randomisation)


def measure(photo, randomiser):
    """Each step's maps against the original ones (counterfactual maps left out)."""
    from guided_gradcam.evaluation import similarity
    from guided_gradcam.evaluation.runner import maps_of

    references = [{name: similarity.Reference(saliency) for name, saliency in m.items()
                   if "counterfactual" not in name} for m in photo.maps]
    images = np.repeat(photo.network_input[None], len(photo.classes), 0)
    for mode, step, block, feeds in randomiser.steps():
        explanations = photo.explainer.explain(images, photo.classes,
                                               methods=photo.settings.methods, feeds=feeds)
        for class_result, originals, explanation in zip(photo.result.classes, references,
                                                        explanations):
            for name, randomised in maps_of(explanation).items():
                scores = originals[name].compare(randomised)
                class_result.sanity.append(SanityRow(mode, step, block, name, **scores))


def cost(settings, height, width, maps):
    """Explanations (a forward and a backward pass) per class: one per randomisation step."""
    return "one explanation per block and mode (MobileNet V1: 28 blocks)"


METRIC = Metric(
    name="sanity", description="weight randomisation", rank=3, measure=measure, cost=cost,
    prepare=prepare,
    describe=lambda s: [("sanity", "%s randomisation, seed %d"
                         % (" and ".join(s.randomisation), s.seed))])
