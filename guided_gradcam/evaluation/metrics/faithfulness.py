"""Faithfulness (Grad-CAM paper, section 5.3): Spearman's ρ between a map and the occlusion
map of the same class, the mean drop of y^c over the patches covering each pixel. A
counterfactual map is compared with −Δ: what speaks against the class."""
import numpy as np

from guided_gradcam.evaluation.metric import Column, Metric


def occlusion_deltas(explainer, net_input, classes, patch, stride, batch_size):
    """(Δ (N, len(classes)), positions): y^c(image) − y^c(occluded) for every patch position;
    each batch of occluded copies serves every class."""
    from guided_gradcam.evaluation import faithfulness as occlusion

    height, width = net_input.shape[:2]
    positions = occlusion.occlusion_positions(height, width, patch, stride)
    reference = explainer.forward(net_input[None])[0][0, classes]
    scores = np.concatenate([
        explainer.forward(occlusion.occluded(net_input, positions[start:start + batch_size],
                                             patch))[0][:, classes]
        for start in range(0, len(positions), batch_size)])
    return reference[None, :] - scores, positions


def measure(photo, state=None):
    from guided_gradcam.evaluation import faithfulness as occlusion
    from guided_gradcam.evaluation.similarity import absolute

    s = photo.settings
    deltas, positions = occlusion_deltas(photo.explainer, photo.net_input, photo.classes,
                                         s.patch, s.stride, s.batch_size)
    for column, (class_result, class_maps) in enumerate(zip(photo.result.classes, photo.maps)):
        occlusion_map = occlusion.occlusion_map(deltas[:, column], positions, s.patch,
                                                photo.net_input.shape[:2])
        for name, saliency in class_maps.items():
            against = -occlusion_map if "counterfactual" in name else occlusion_map
            class_result.faithfulness[name] = occlusion.spearman(absolute(saliency), against)


def cost(settings, height, width, maps):
    """Forward passes per photo (all classes share the occluded copies)."""
    from guided_gradcam.evaluation.faithfulness import occlusion_positions

    return 1 + len(occlusion_positions(height, width, settings.patch, settings.stride))


METRIC = Metric(
    name="faithfulness", description="rank correlation with occlusion", rank=0,
    measure=measure, cost=cost, columns=(Column("faithfulness", "faithful ρ", "ρ"),),
    counterfactual=True,
    describe=lambda s: [("occlusion", "patch %d, stride %d" % (s.patch, s.stride))])
