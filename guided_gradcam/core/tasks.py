"""What a model's head does (`core.heads` finds it): the task names, without TensorFlow, for
the code that only reads an explanation (rendering, the command line, the evaluation)."""
CLASSIFICATION, BINARY, MULTILABEL, REGRESSION = "classification", "binary", "multilabel", "regression"
SEGMENTATION = "segmentation"  # a score per pixel: y^c sums class c's scores over a region
