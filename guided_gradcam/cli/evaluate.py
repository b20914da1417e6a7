"""The evaluation's command line (`guided-gradcam-evaluate`, `evaluate.py`): measures every map
of each photo, as the papers do, and writes evaluation.csv, sanity.csv, the plots and a summary.

It shares the model flags of the explaining CLI (`cli.py`: --network / --model and the rest) and
adds its own; a thin layer over `evaluation.runner.Evaluator`.
"""
import os
import sys

from absl import flags

from guided_gradcam.cli import common
from guided_gradcam.cli import explain as cli
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation import metrics

# The explaining CLI's flags that mean nothing here.
NOT_FOR_EVALUATION = ("outputs", "skip_existing", "num_shards", "shard_index", "counterfactual")

flags.DEFINE_string("boxes", None, "A folder of Pascal VOC XML files, one per image stem "
                    "(ILSVRC's val boxes are in this format): adds the localisation error and "
                    "the pointing game, and evaluates each ground-truth class too.")
flags.DEFINE_string("metrics", ",".join(metrics.METRICS), metrics.help_text())
flags.DEFINE_integer("patch", 32, "Occlusion patch side in input pixels.", lower_bound=1)
flags.DEFINE_integer("stride", 8, "Occlusion stride in input pixels.", lower_bound=1)
flags.DEFINE_integer("step", 224, "Pixels deleted or inserted per step.", lower_bound=1)
flags.DEFINE_string("baseline", "deletion=grey,insertion=blur", "What deletion sets the pixels "
                    "to and insertion starts from: zero (0 of the network input, which depends "
                    "on the preprocessing: black for raw or unit pixels), black, grey (pixels 0, "
                    "127.5), mean (the photo's mean colour), blur (a Gaussian blur, 11x11, "
                    "sigma 5). NAME for both curves, or deletion=NAME,insertion=NAME. The "
                    "default is RISE's choice: deletion to a constant, insertion from the blur.")
flags.DEFINE_list("randomisation", "cascading,independent", "The sanity checks' modes: "
                  "cascading (from the logits down, block after block), independent (one block "
                  "at a time).")
flags.DEFINE_integer("seed", 0, "Seed of the random weights of the sanity checks.")
flags.DEFINE_float("tolerance", 15.0, "Pointing game: a hit within this many photo pixels of "
                   "a box.", lower_bound=0.0)
flags.DEFINE_boolean("plots", True, "Write each evaluated class's panel, its deletion / "
                     "insertion curves and the randomisation plots as PNGs.")
FLAGS = flags.FLAGS

USAGE = """\
usage: {prog} --image PATH [--image PATH ...] [flags]

Measures Grad-CAM, Guided Backprop, Guided Grad-CAM and the counterfactual maps of each image:
faithfulness to occlusion, deletion / insertion, localisation and pointing game on VOC boxes,
and the sanity checks under weight randomisation.

Needs the optional extra (SciPy, scikit-image, matplotlib): {extra}

examples:
  {prog} --image images/ --boxes images/boxes --output_dir evaluation
  {prog} --network vgg_16 --image ILSVRC2012_val/ --boxes val_boxes/ --metrics localisation
"""
EXTRA = "pip install 'guided-gradcam[evaluate]'"
# What the metrics and the plots import; each is tried before any work (SciPy and
# scikit-image for every metric, as the runner imports them; matplotlib for --plots).
EXTRA_MODULES = ("scipy.ndimage", "scipy.stats", "skimage.feature", "skimage.metrics")
# The shared flags whose inference.py help names files or work the evaluation does not do.
HELP = {"output_dir": "Where evaluation.csv, sanity.csv, evaluation.json, the plots, the "
                      "panels and the run's index.html are written.",
        "methods": "The Grad-CAM family members measured besides Grad-CAM, GBP and Guided "
                   "Grad-CAM, comma-separated: gradcampp (Grad-CAM++), xgradcam, layercam, "
                   "hirescam; each also guided (x GBP).",
        "batch_size": "Images per session run: the explained classes, the occluded copies, "
                      "the curve points."}


def help_text(argv0="evaluate.py"):
    shared = [flag for flag in FLAGS.get_flags_for_module(cli.__name__)
              if flag.name not in NOT_FOR_EVALUATION]
    own = FLAGS.get_flags_for_module(__name__)
    prog = "python " + argv0 if argv0.endswith(".py") else os.path.basename(argv0)
    return "%s\nflags (--helpfull adds absl's own):\n%s\n" % (
        USAGE.format(prog=prog, extra=EXTRA), "\n".join(map(common.describe_flag, shared + own)))


def require_extra(plots=True):
    """Imports what the evaluation needs beyond the toolkit; a missing or broken one is one
    error line naming the extra, never a traceback."""
    import importlib

    for module in EXTRA_MODULES + (("matplotlib",) if plots else ()):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise GuidedGradCamError("the evaluation needs SciPy, scikit-image and matplotlib: "
                                     "%s (%s)" % (EXTRA, str(error).splitlines()[0]
                                                  if str(error) else module)) from None


def parse_baselines(text):
    """--baseline: 'NAME' (both curves) or 'deletion=NAME,insertion=NAME' (either or both; the
    other keeps its default) → {mode: name}."""
    from guided_gradcam.evaluation.deletion_insertion import BASELINES, DEFAULT_BASELINES

    baselines = dict(DEFAULT_BASELINES)
    for item in text.split(","):
        mode, _, name = item.strip().rpartition("=")
        modes = [mode.strip()] if mode else list(DEFAULT_BASELINES)
        if not item.strip() or name.strip() not in BASELINES or any(
                m not in DEFAULT_BASELINES for m in modes):
            raise GuidedGradCamError(
                "--baseline takes NAME or deletion=NAME,insertion=NAME, NAME one of %s; got %r"
                % (", ".join(BASELINES), text))
        baselines.update(dict.fromkeys(modes, name.strip()))
    return baselines


def _settings():
    baselines = parse_baselines(FLAGS.baseline)  # before the runner imports TensorFlow
    from guided_gradcam.evaluation.runner import Settings
    from guided_gradcam.methods import parse_methods

    chosen = metrics.parse_metrics(FLAGS.metrics)
    on_boxes = [name for name in chosen if metrics.REGISTRY[name].needs_boxes]
    if on_boxes and FLAGS.boxes is None and FLAGS["metrics"].present:
        raise GuidedGradCamError("--metrics %s needs --boxes DIR" % ",".join(on_boxes))
    if FLAGS.boxes is not None and not os.path.isdir(FLAGS.boxes):
        raise GuidedGradCamError("--boxes %s is not a folder" % FLAGS.boxes)
    if FLAGS["baseline"].present and "deletion" not in chosen:
        raise GuidedGradCamError("--baseline is for --metrics deletion")
    return Settings(metrics=chosen, methods=parse_methods(FLAGS.methods), patch=FLAGS.patch,
                    stride=FLAGS.stride, step=FLAGS.step, batch_size=FLAGS.batch_size,
                    seed=FLAGS.seed, tolerance=FLAGS.tolerance,
                    randomisation=tuple(FLAGS.randomisation),
                    deletion_baseline=baselines["deletion"],
                    insertion_baseline=baselines["insertion"])


def _described_settings(settings):
    """[(name, value)] of the evaluation's own settings: the run header's second line and,
    after the model's, the settings its page opens with."""
    pairs = [("metrics", ",".join(settings.metrics))]
    if settings.methods != ("gradcam",):
        pairs.append(("methods", ",".join(settings.methods)))
    boxes = [] if FLAGS.boxes is None else [("boxes", FLAGS.boxes)]
    for name, metric in metrics.REGISTRY.items():
        if metric.needs_boxes:  # the boxes before the first metric on them
            pairs, boxes = pairs + boxes, []
        if name in settings.metrics and (FLAGS.boxes is not None or not metric.needs_boxes):
            pairs += metric.describe(settings)
    return pairs + boxes + [("batch size", str(settings.batch_size))]


def _model_settings(explainer):
    """[(name, value)] of the model, as the run header's first line says them."""
    source = explainer.source
    pairs = [("model" if FLAGS.model else "network", "%s (%s)" % (source.name, explainer.task))]
    if explainer.checkpoint:
        pairs.append(("checkpoint", explainer.checkpoint))
    return pairs + [("input", "%dx%dx%d" % (*explainer.input_size, explainer.channels)),
                    ("preprocessing", "%s: %s" % (source.preprocessing.name,
                                                  source.preprocessing.description)),
                    ("Grad-CAM layer", explainer.layer)]


def _describe(result):
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


def _index(index, result, photo, plots, labels):
    """Each evaluated class's row in index.csv (its page shows the metrics), and its panel
    unless `photo` is None."""
    from guided_gradcam.outputs.files import save_outputs
    from guided_gradcam.outputs.run_index import explanation_row

    for explanation in result.explanations:
        stem = "%s_%d" % (result.stem, explanation.label)
        files = [] if photo is None else save_outputs(
            explanation, photo, result.crop, explanation.class_name, FLAGS.output_dir, stem,
            kinds=("panel",))
        files += [p for p in plots if os.path.basename(p).startswith(stem + "_")]
        index.append(dict(explanation_row(result.path, stem, explanation, labels),
                          files=";".join(os.path.relpath(p, FLAGS.output_dir) for p in files)))


def _evaluate_photos(evaluator, paths, labels, record, index):
    """Each photo in turn: measured, recorded, plotted; a bad one costs only itself. Returns
    (results without their maps and curves, failures)."""
    from guided_gradcam.evaluation import report
    from guided_gradcam.evaluation.runner import PhotoResult
    from guided_gradcam.images import ImageError, load_photo
    from guided_gradcam.cli.pipeline import Progress, unique_stems

    explainer, results, failures = evaluator.explainer, [], 0
    # A folder's progress line, as inference.py's: done/total, images/s, time left (stderr).
    progress = Progress(len(paths)) if len(paths) > 1 else None
    for number, (path, stem) in enumerate(zip(paths, unique_stems(paths))):
        if progress and number:
            progress.update(number)
        try:
            photo = load_photo(path, explainer.input_size)
            result = evaluator.evaluate(photo, path, stem, labels)
        except (ImageError, GuidedGradCamError) as problem:
            common.print_error(problem)
            failures += 1
            record.add(PhotoResult(path, stem, error=str(problem)))
            index.failed(path, stem, problem)
            continue
        record.add(result)
        for note in result.notes:
            print("note: %s" % note, flush=True)
        for warning in result.warnings:
            print("warning: %s" % warning, file=sys.stderr, flush=True)
        print(_describe(result), flush=True)
        plots = report.write_curve_plots(result, FLAGS.output_dir) if FLAGS.plots else []
        _index(index, result, photo if FLAGS.plots else None, plots, explainer.labels)
        result.explanations = []  # a folder's summary keeps the numbers, not the maps
        for class_result in result.classes:
            class_result.curves = {}
        results.append(result)
    if progress:
        progress.update(len(paths), final=True)
    return results, failures


def main(argv):
    stray = cli.stray_arguments(argv)
    if stray is not None:
        return stray
    failures = 0
    try:
        ignored = [name for name in NOT_FOR_EVALUATION if FLAGS[name].present]
        if ignored:
            raise GuidedGradCamError("--%s is not a flag of the evaluation" % ignored[0])
        require_extra(FLAGS.plots)
        settings = _settings()
        labels = cli.check_model_flags()
        paths, missing = cli.collect_inputs()
        if not paths:
            return 1
        cli.check_writable(FLAGS.output_dir)
        with cli.open_explainer(settings.methods) as explainer:
            from guided_gradcam.evaluation import report
            from guided_gradcam.evaluation.runner import Evaluator, map_names
            from guided_gradcam.outputs.run_index import RunIndex

            if labels is None:
                labels = [explainer.labels.resolve(label) for label in FLAGS.label or ()]
            evaluator = Evaluator(explainer, settings, FLAGS.boxes)
            cli.print_run_header(explainer)
            described = _described_settings(settings)
            print("evaluation: %s" % "; ".join("%s %s" % pair for pair in described),
                  flush=True)
            page_settings = _model_settings(explainer) + described
            maps = map_names(settings.methods, evaluator.counterfactual)
            record = report.Record(FLAGS.output_dir, maps)
            report.write_page_data(FLAGS.output_dir, page_settings)  # no older run's summary
            index = RunIndex(FLAGS.output_dir)
            try:
                results, failures = _evaluate_photos(evaluator, paths, labels, record, index)
                report.write_page_data(FLAGS.output_dir, page_settings, results, maps)
            finally:
                record.close()  # before the page: it shows evaluation.csv's numbers
                index.close()
            if FLAGS.plots:
                report.write_summary_plots(results, FLAGS.output_dir)
            without = sum(r.box_file is None for r in results)
            if FLAGS.boxes is not None and without:
                print("note: %d of %d photos had no box file in %s (<stem>.xml): no "
                      "ground-truth classes, localisation or pointing game for them"
                      % (without, len(results), FLAGS.boxes), flush=True)
            print(report.summary_text(results, maps), flush=True)
    except GuidedGradCamError as problem:
        common.print_error(problem)
        return 1
    except KeyboardInterrupt:
        common.print_error("interrupted")
        return 130
    failures += len(missing)
    if failures:
        common.print_error("%d of %d inputs failed" % (failures, len(paths) + len(missing)))
    return 1 if failures else 0


def run():
    FLAGS.set_default("output_dir", "evaluation")
    for name, text in HELP.items():  # inference.py's would name its .npz files
        FLAGS[name].help = text
    common.run_command(main, help_text)

