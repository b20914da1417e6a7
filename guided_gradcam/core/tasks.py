"""What a model's head does (`core.heads` finds it): the task names, without TensorFlow, for
the code that only reads an explanation (rendering, the command line, the evaluation)."""
CLASSIFICATION, BINARY, MULTILABEL, REGRESSION = "classification", "binary", "multilabel", "regression"
