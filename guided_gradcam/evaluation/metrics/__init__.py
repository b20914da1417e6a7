"""The metrics, each one unit: a module of this package defining `METRIC`
(`evaluation.metric.Metric`: name, what it measures, its columns, its cost and its function).
They are found here in `rank` order; adding a metric is adding its module (and its test). No
TensorFlow or SciPy is imported here: a metric imports what it computes with when it runs.
"""
import sys

from guided_gradcam.errors import parse_choices
from guided_gradcam.evaluation.metric import Metric
from guided_gradcam.registry import discover

REGISTRY = discover(sys.modules[__name__], "METRIC", Metric)  # {name: Metric}
METRICS = tuple(REGISTRY)
COLUMNS = tuple(column for metric in REGISTRY.values() for column in metric.columns)
PHOTO_COLUMNS = tuple(name for metric in REGISTRY.values() for name in metric.photo_columns)


def parse_metrics(text_or_list):
    """'faithfulness,deletion' or a list → a tuple of known metric names, in the order given."""
    return parse_choices(text_or_list, METRICS, "--metrics takes")


def help_text():
    """--metrics' help: each metric and what it measures."""
    return "Comma-separated: " + ", ".join(
        "%s (%s)" % (name, metric.description) for name, metric in REGISTRY.items()) + "."
