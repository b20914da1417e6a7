"""One evaluation run of the command line, photo by photo: what it says of its settings, each
photo's line, its panels and index rows, and the throughput a shard plans with (its work at
the start, an estimate of its time after the first photos, photo-classes/s and forward
passes/s at the end). `cli.evaluate` holds the flags and the flow."""
import os
import sys
import time

from guided_gradcam.cli import common
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation import metrics

ESTIMATE_AFTER = 3  # photos: the first pays for warming the graph up
# The settings on record that only the loaded model tells (`model_settings`).
MODEL_SETTINGS = ("network", "model", "checkpoint", "input", "preprocessing", "Grad-CAM layer",
                  "checkpoint digest")


def sample_paths(paths, count, seed):
    """A random `count` of the paths (numpy's generator seeded with `seed`), in input order:
    the same subset on every machine and in every shard."""
    import numpy as np

    if count is None or count >= len(paths):
        return list(paths)
    chosen = np.sort(np.random.default_rng(seed).choice(len(paths), count, replace=False))
    return [paths[i] for i in chosen]


def described_settings(settings, boxes=None, regions=False):
    """[(name, value)] of the evaluation's own settings: the run header's second line and,
    after the model's, the settings its page opens with. `regions`: a segmentation model,
    whose metrics on boxes measure against its regions when no boxes are given."""
    pairs = [("metrics", ",".join(settings.metrics))]
    if settings.methods != ("gradcam",):
        pairs.append(("methods", ",".join(settings.methods)))
    box_pairs = [] if boxes is None else [("boxes", boxes)]
    for name, metric in metrics.REGISTRY.items():
        if metric.needs_boxes:  # the boxes before the first metric on them
            pairs, box_pairs = pairs + box_pairs, []
        if name in settings.metrics and (boxes is not None or regions or not metric.needs_boxes):
            pairs += metric.describe(settings)
    return pairs + box_pairs + [("batch size", str(settings.batch_size))]


def recorded_settings(boxes, input_pairs):
    """[(name, value)] on record besides the metrics' and the model's: the boxes' format, the
    input list (count, digest, sample, labels, shard), the toolkit's version."""
    from guided_gradcam.evaluation import ilsvrc
    from guided_gradcam.evaluation.provenance import toolkit_version

    box_format = [] if boxes is None else [("box format", (
        ilsvrc.XmlFolder if os.path.isdir(boxes) else ilsvrc.SolutionFile).format)]
    return box_format + list(input_pairs) + [("toolkit", toolkit_version())]


def check_resumable(output_dir, pairs, model_known=True):
    """Whether to resume `output_dir`: it holds an evaluation.csv and its settings on record
    are `pairs`; other settings, or none, are refused. Before the model loads (`model_known`
    False) only the other settings are compared: a wrong folder costs no model loading."""
    from guided_gradcam.evaluation import provenance, records

    if not os.path.exists(os.path.join(output_dir, records.EVALUATION_CSV)):
        return False
    recorded = provenance.read_settings(output_dir)
    if recorded is None:
        raise GuidedGradCamError("%s holds an evaluation.csv without its settings "
                                 "(evaluation.json): pass another --output_dir, or delete "
                                 "it" % output_dir)
    if not model_known:
        recorded = {name: value for name, value in recorded.items()
                    if name in dict(pairs) or name not in MODEL_SETTINGS}
    provenance.check_same_settings(dict(pairs), recorded, output_dir)
    return True


def model_settings(explainer, is_model):
    """[(name, value)] of the model, as the run header's first line says them."""
    source = explainer.source
    pairs = [("model" if is_model else "network", "%s (%s)" % (source.name, explainer.task))]
    if explainer.checkpoint:
        pairs.append(("checkpoint", explainer.checkpoint))
    return pairs + [("input", "%dx%dx%d" % (*explainer.input_size, explainer.channels)),
                    ("preprocessing", "%s: %s" % (source.preprocessing.name,
                                                  source.preprocessing.description)),
                    ("Grad-CAM layer", explainer.layer)]


def describe_result(result):
    parts = []
    for c in result.classes:
        numbers = []
        for column in metrics.COLUMNS:
            values = getattr(c, column.key)
            if values:
                numbers.append("%s %s" % (column.short, " ".join(
                    "%s=%s" % (name, ("hit" if value else "miss") if column.kind == "hit"
                               else "%.3f" % value) for name, value in values.items()
                    if name in ("gradcam", "gbp", "guided_gradcam"))))
        parts.append("%s (%d): %s" % (c.class_name, c.class_index, "; ".join(numbers)))
    localised = " ".join("%s %s" % (k, "yes" if v else "no")
                         for k, v in result.localisation.items())
    return "%s: %s%s" % (result.path, " | ".join(parts),
                         "; localised %s" % localised if localised else "")


def _clock(seconds):
    """HH:MM:SS, the hours unbounded (a shard may take days)."""
    minutes, seconds = divmod(int(round(max(seconds, 0))), 60)
    return "%02d:%02d:%02d" % (minutes // 60, minutes % 60, seconds)


class Throughput:
    """What a shard plans with, on stdout: its work at the start, after the first photos an
    estimate of its time, at the end photo-classes/s and forward passes/s (images run through
    the network: an occluded copy, a curve point, an explanation each count one)."""

    def __init__(self, explainer, todo, classes, done_before, shard):
        self.explainer, self.todo = explainer, todo
        self.photos = self.classes = 0
        low, high = classes
        counted = "%d" % low if low == high else "%d to %d" % (low, high)
        before = (", %d photo%s done before" % (done_before, "s" if done_before != 1 else "")
                  if done_before else "")
        print("work: %s%d photo%s, %s photo-classes%s" % (
            "shard %d of %d: " % shard if shard[1] > 1 else "", todo, "s" if todo != 1 else "",
            counted, before), flush=True)
        self.start, self.passes = time.monotonic(), explainer.images_run

    def photo_done(self, classes):
        self.photos += 1
        self.classes += classes
        if self.photos == min(ESTIMATE_AFTER, self.todo) and self.photos < self.todo:
            elapsed = time.monotonic() - self.start
            print("estimate: %s for this run's %d photos (%.1f s a photo over the first %d)"
                  % (_clock(elapsed / self.photos * self.todo), self.todo,
                     elapsed / self.photos, self.photos), flush=True)

    def summary(self):
        elapsed = max(time.monotonic() - self.start, 1e-9)
        passes = self.explainer.images_run - self.passes
        return ("throughput: %d photo-classes of %d photos in %.1f s: %.3f photo-classes/s, "
                "%.1f forward passes/s (%d in all)" % (
                    self.classes, self.photos, elapsed, self.classes / elapsed,
                    passes / elapsed, passes))


def class_counts(evaluator, jobs, labels):
    """(fewest, most) photo-classes of the jobs: the labels asked (else the top-1, unknown
    before the model runs: it may be a class of the boxes) and the classes of the boxes."""
    low = high = 0
    for job in jobs:
        truth = evaluator.ground_truth_classes(job.stem)
        asked = set(labels or ())
        low += len(asked | truth) or 1
        high += len(asked | truth) + (0 if asked else 1)
    return low, high


def _index(index, result, photo, plots, labels, output_dir):
    """Each evaluated class's row in index.csv (its page shows the metrics), and its panel
    unless `photo` is None."""
    from guided_gradcam.outputs.files import save_outputs
    from guided_gradcam.outputs.run_index import explanation_row

    for explanation in result.explanations:
        stem = "%s_%d" % (result.stem, explanation.label)
        files = [] if photo is None else save_outputs(
            explanation, photo, result.crop, explanation.class_name, output_dir, stem,
            kinds=("panel",))
        files += [p for p in plots if os.path.basename(p).startswith(stem + "_")]
        index.append(dict(explanation_row(result.path, stem, explanation, labels),
                          files=";".join(os.path.relpath(p, output_dir) for p in files)))


def evaluate_photos(evaluator, jobs, labels, record, index, throughput, output_dir, plots):
    """Each job's photo in turn: measured, plotted, indexed, then recorded (its rows in
    evaluation.csv are the last thing written: a photo with rows is done). A bad photo costs
    only itself. Returns (results without their maps and curves, failures)."""
    from guided_gradcam.evaluation import report
    from guided_gradcam.evaluation.runner import PhotoResult
    from guided_gradcam.images import ImageError, load_photo
    from guided_gradcam.cli.pipeline import Progress

    explainer, results, failures = evaluator.explainer, [], 0
    # A folder's progress line, as inference.py's: done/total, images/s, time left (stderr).
    progress = Progress(len(jobs)) if len(jobs) > 1 else None
    for number, job in enumerate(jobs):
        if progress and number:
            progress.update(number)
        try:
            photo = load_photo(job.path, explainer.input_size)
            result = evaluator.evaluate(photo, job.path, job.stem, labels)
        except (ImageError, GuidedGradCamError) as problem:
            common.print_error(problem)
            failures += 1
            index.failed(job.path, job.stem, problem)
            record.add(PhotoResult(job.path, job.stem, error=str(problem)))
            continue
        for note in result.notes:
            print("note: %s" % note, flush=True)
        for warning in result.warnings:
            print("warning: %s" % warning, file=sys.stderr, flush=True)
        print(describe_result(result), flush=True)
        written = report.write_curve_plots(result, output_dir) if plots else []
        _index(index, result, photo if plots else None, written, explainer.labels, output_dir)
        record.add(result)
        throughput.photo_done(len(result.classes))
        result.explanations = []  # a folder's summary keeps the numbers, not the maps
        for class_result in result.classes:
            class_result.curves = {}
        results.append(result)
    if progress:
        progress.update(len(jobs), final=True)
    return results, failures
