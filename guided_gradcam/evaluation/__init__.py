"""Measuring the maps as the papers do (`evaluate.py`, `guided-gradcam-evaluate`).

A metric is one unit in `metrics/` (`metric.Metric`), found by that package; the numerical
cores are framework-free (numpy, SciPy, scikit-image), apart from the TF side (forward scoring
and weight randomisation through the explainer's session):

    metric              what a metric is (Metric, Column) and what it measures (Photo)
    metrics/            faithfulness, deletion (and insertion), localisation, sanity
    faithfulness        occlusion maps and Spearman's rank correlation (Grad-CAM paper, 5.3)
    deletion_insertion  the causal metrics' inputs and AUC (Petsiuk et al., RISE, 2018)
    boxes               Pascal VOC XML boxes, IoU, localisation error and the pointing game
    ilsvrc              --boxes as a VOC XML folder or ILSVRC's one-file LOC_val_solution.csv
    localization        the Grad-CAM paper's box from a map, and back onto the photo
    similarity          the sanity checks' similarity measures (Adebayo et al., 2018)
    randomisation       cascading and independent weight randomisation, as session feeds
    runner              one photo: every chosen metric of every map of each evaluated class
    results             what a photo's evaluation gives (PhotoResult, ClassResult), plain data
    records             evaluation.csv and sanity.csv: written photo by photo, resumed, read back
    report              the summary, evaluation.json and the plots
    provenance          the settings on record; what refuses a resume or a merge
    merge               one evaluation from the folders of its shards, no model

The command line is `cli/evaluate.py` (`evaluate.py`, `guided-gradcam-evaluate`).
"""
