"""Localisation on VOC boxes (--boxes): the Grad-CAM paper's localisation error (a photo is
correct at top-1 / top-5 when a predicted class's Grad-CAM box overlaps one of its boxes with
IoU ≥ 0.5) and Zhang et al.'s pointing game (a map's peak within `tolerance` photo pixels of a
box of the class) for every factual map of each ground-truth class.

A segmentation photo without a VOC file is measured against the regions its classes were
explained on (`Photo.regions`): the pointing game hits when the peak lies within `tolerance`
photo pixels of a pixel of the class's region (0: on one), and the explained classes, in
order, stand for the predicted ones: top-1 is correct when the first one's Grad-CAM box
overlaps the bounding box of its region with IoU ≥ 0.5 (top-5: one of the first five)."""
from guided_gradcam.evaluation.metric import Column, Metric


def _localised(value):
    return "" if value is None else ("true" if value else "false")


def measure(photo, state=None):
    """Top-1 / top-5 localisation (the Grad-CAM box of each predicted class) and the pointing
    game of each ground-truth class; None where VOC's difficult rule leaves the photo out."""
    from guided_gradcam.evaluation import boxes as gt_boxes
    from guided_gradcam.evaluation.localization import box_to_photo, gradcam_box, region_hit
    from guided_gradcam.evaluation.similarity import absolute

    if photo.truth is None:
        return
    required, difficult = photo.truth
    result, crop = photo.result, photo.result.crop
    input_size = photo.explainer.input_size
    if photo.predicted:
        cam_boxes = {}
        for c in photo.predicted:
            box = gradcam_box(photo.cams[c])
            cam_boxes[c] = None if box is None else box_to_photo(box, crop, input_size)
        for k in (1, 5):
            correct = gt_boxes.localisation_correct(photo.predicted[:k], cam_boxes, required,
                                                    difficult)
            if correct is not None:
                result.localisation["top%d" % k] = correct
    for class_result, class_maps in zip(result.classes, photo.maps):
        c = class_result.class_index
        if c not in required and c not in difficult:
            continue  # not a ground-truth class
        for name, saliency in class_maps.items():
            if "counterfactual" in name:
                continue  # a counterfactual map points away from the class by design
            peak = gt_boxes.peak(absolute(saliency))
            point = None if peak is None else gt_boxes.point_to_photo(peak, crop, input_size)
            if photo.regions is not None:  # a segmentation photo: its class's region
                hit = region_hit(point, photo.regions[c], crop, input_size,
                                 photo.settings.tolerance)
            else:
                hit = gt_boxes.pointing_game(point, required.get(c, ()), difficult.get(c, ()),
                                             photo.settings.tolerance)
            if hit is not None:
                class_result.pointing[name] = hit


METRIC = Metric(
    name="localisation", description="localisation error and pointing game on --boxes, or "
    "on a segmentation model's regions",
    rank=2, measure=measure, cost=lambda settings, height, width, maps: 0,
    columns=(Column("pointing", "pointing", "pointing", kind="hit"),),
    photo_columns=("top1_localised", "top5_localised"),
    photo_values=lambda result: {"top%d_localised" % k: _localised(result.localisation.get(
        "top%d" % k)) for k in (1, 5)},
    needs_boxes=True,
    describe=lambda s: [("pointing tolerance", "%g photo pixels" % s.tolerance)])
