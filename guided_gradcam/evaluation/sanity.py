"""The randomisation steps of the sanity checks (Adebayo et al. 2018) as session feeds: cascading
from the logits down, then each block alone. Each block's random weights are drawn once and
reused in every step (and, seeded, in every run).

Every step feeds every weight, the blocks not randomised with their own values: a session run
with a new set of fed tensors prunes and optimises the graph anew (0.2 s on MobileNet), one with
the same set reuses it."""
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation import randomisation


class Randomiser:
    MODES = ("cascading", "independent")

    def __init__(self, explainer, seed=0, modes=MODES):
        unknown = sorted(set(modes) - set(self.MODES))
        if unknown or not modes:
            raise GuidedGradCamError("randomisation modes are %s; got %s"
                                     % (", ".join(self.MODES), ", ".join(modes) or "none"))
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
        if index not in self._feeds:
            self._feeds[index] = randomisation.randomised_feeds(self.blocks, (index,), self.seed)
        return self._feeds[index]

    def steps(self):
        """(mode, step number from 1, block name, feeds) of every step."""
        for mode, steps in (("cascading", randomisation.cascading_steps(self.blocks)),
                            ("independent", randomisation.independent_steps(self.blocks))):
            if mode not in self.modes:
                continue
            for number, (block, indices) in enumerate(steps, 1):
                feeds = dict(self._originals)
                for index in indices:
                    feeds.update(self._block_feeds(index))
                yield mode, number, block, feeds
