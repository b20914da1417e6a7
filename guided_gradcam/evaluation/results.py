"""What the evaluation of a photo gives: `PhotoResult` and a `ClassResult` per evaluated class.

Plain data, no TensorFlow: the runner fills them, and `records` reads them back from
evaluation.csv and sanity.csv (a resumed run, a merge of shards).
"""
import dataclasses

import numpy as np

from guided_gradcam.evaluation.metrics import COLUMNS

_COLUMN_KEYS = frozenset(column.key for column in COLUMNS)


@dataclasses.dataclass
class ClassResult:
    """The measurements of one (photo, class). Each metric's columns are `values[key]`, {map:
    number}, also read as attributes: `faithfulness`, `deletion`, `insertion`, `pointing`."""
    class_index: int
    class_name: str
    probability: float  # None for regression
    values: dict = dataclasses.field(default_factory=dict)  # column key → {map: number}
    curves: dict = dataclasses.field(default_factory=dict)  # (map, mode) → scores per point
    # mode → the class's score of that mode's baseline image alone (what deletion ends on and
    # insertion starts from), and of the photo ("photo"): the curves' scale
    baseline_scores: dict = dataclasses.field(default_factory=dict)
    sanity: list = dataclasses.field(default_factory=list)  # SanityRow per step and map

    def __getattr__(self, key):
        values = self.__dict__.get("values")
        if values is None or key not in _COLUMN_KEYS:
            raise AttributeError(key)
        return values.setdefault(key, {})


@dataclasses.dataclass
class PhotoResult:
    path: str
    stem: str
    classes: list = dataclasses.field(default_factory=list)  # ClassResult
    top5: list = dataclasses.field(default_factory=list)  # TopClass
    localisation: dict = dataclasses.field(default_factory=dict)  # top1 / top5 → correct
    crop: tuple = None  # the photo's box that became the network input
    fractions: np.ndarray = None  # of pixels changed at each curve point
    explanations: list = dataclasses.field(default_factory=list)  # of each evaluated class
    error: str = None
    notes: list = dataclasses.field(default_factory=list)  # one line each, said once per photo
    warnings: list = dataclasses.field(default_factory=list)  # numbers that may mislead
    baselines: dict = dataclasses.field(default_factory=dict)  # mode → baseline name (measured)
    box_file: str = None  # the VOC file read for the photo; None without (or without --boxes)
