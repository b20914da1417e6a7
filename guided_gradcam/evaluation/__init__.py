"""Measuring the maps as the papers do (`evaluate.py`, `guided-gradcam-evaluate`).

Framework-free metrics (numpy, SciPy, scikit-image) live apart from the TF side (forward
scoring and weight randomisation through the explainer's session):

    faithfulness        occlusion maps and Spearman's rank correlation (Grad-CAM paper, 5.3)
    deletion_insertion  the causal metrics of Petsiuk et al. (RISE, 2018)
    boxes               Pascal VOC XML boxes, IoU, localisation error and the pointing game
    similarity          the sanity checks' similarity measures (Adebayo et al., 2018)
    randomisation       cascading and independent weight randomisation, as session feeds
    sanity              the randomisation steps, each block's random weights drawn once
    runner              one photo: every metric of every map of each evaluated class
    report              evaluation.csv, sanity.csv, the summary table and the plots

The command line is `evaluate_cli.py` (`evaluate.py`, `guided-gradcam-evaluate`).
"""
