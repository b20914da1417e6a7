"""What a metric is: a name, what it measures, the columns it writes, its cost in forward
passes, and its function (`Metric`); and what it is handed for one photo (`Photo`).

A metric is one module of `evaluation.metrics` defining `METRIC = Metric(...)`; that package
finds it. The runner, evaluation.csv, the summary table, the page and `--help` take their
lists from there. This module imports neither TensorFlow nor SciPy.
"""
import dataclasses
from typing import Callable, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Column:
    """A number a metric gives each map of each evaluated class: evaluation.csv's
    `<key>_<map>`, a summary column and a card column."""
    key: str  # ClassResult.values[key][map]; the CSV column prefix
    summary: str  # the summary table's header, with ↓ / ↑ where lower / higher is better
    short: str  # the console line's name
    better: str = ""  # ↓ or ↑: lower or higher is better
    kind: str = "number"  # number (mean, 3 decimals) or hit (a rate, in %)

    @property
    def card(self):
        """The page card's header: the short name and which way is better."""
        return ("%s %s" % (self.short, self.better)).strip()


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str  # the --metrics name
    description: str  # what it measures, for --help
    rank: int  # its place in --metrics, the CSV and the summary
    measure: Callable  # measure(photo: Photo, state) fills photo.result
    cost: Callable  # cost(settings, height, width, maps) → forward passes per class (or photo)
    columns: Tuple[Column, ...] = ()  # per map
    photo_columns: Tuple[str, ...] = ()  # per photo, in evaluation.csv
    photo_values: Callable = lambda result: {}  # PhotoResult → {photo column: value}
    counterfactual: bool = False  # measures the counterfactual maps (it knows what to expect)
    needs_boxes: bool = False  # measures only photos with a VOC file
    prepare: Optional[Callable] = None  # prepare(explainer, settings) → state, once a run
    describe: Callable = lambda settings: []  # settings → [(name, value)] for header and page


@dataclasses.dataclass
class Photo:
    """What a metric measures, for one photo: the maps of each evaluated class."""
    explainer: object  # the GuidedGradCam
    settings: object  # runner.Settings
    net_input: object  # float32 (H, W, C): the preprocessed network input
    network_input: object  # uint8 (H, W, C): the fitted photo
    classes: list  # class indices evaluated, in result.classes' order
    maps: list  # per class: {map name: array} (counterfactual maps where measured)
    result: object  # runner.PhotoResult, filled by the metrics
    truth: object = None  # ({class: boxes}, {class: difficult boxes}) of the VOC file, or None
    predicted: list = dataclasses.field(default_factory=list)  # the top-5 class indices
    cams: dict = dataclasses.field(default_factory=dict)  # class → Grad-CAM (predicted too)
    # A segmentation photo without a VOC file: {class: bool (H, W) region it was explained
    # on, at the network input}, the ground truth of the pointing game and localisation.
    regions: dict = None
