"""The evaluation's command line (`guided-gradcam-evaluate`, `evaluate.py`): measures every map
of each photo, as the papers do, and writes evaluation.csv, sanity.csv, the plots and a summary.

It shares the model flags of the explaining CLI (`cli.py`: --network / --model and the rest) and
adds its own; a thin layer over `evaluation.runner.Evaluator`. A run evaluates its shard of the
inputs (--num_shards / --shard_index, inference.py's split) and resumes the folder of an earlier
run with the same settings (`evaluation.provenance`); `--summarize DIR …` merges shard folders
from their CSV files alone (`evaluation.merge`), without a model.
"""
import os

from absl import flags

from guided_gradcam.cli import common, reporting
from guided_gradcam.cli import explain as cli
from guided_gradcam.core.tasks import SEGMENTATION
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.evaluation import metrics

# The explaining CLI's flags that mean nothing here.
# The evaluation explains each photo's classes over their predicted regions (a segmentation
# model): a user's --region or --mask would need a region per photo and class.
NOT_FOR_EVALUATION = ("outputs", "skip_existing", "counterfactual", "region", "mask")

flags.DEFINE_string("boxes", None, "A folder of Pascal VOC XML files, one per image stem "
                    "(ILSVRC's per-image val XML is this format), or ILSVRC's one-file "
                    "LOC_val_solution.csv: adds the localisation error and the pointing game, "
                    "and evaluates each ground-truth class too.")
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
flags.DEFINE_integer("sample", None, "Evaluate a random subset of this many of the inputs "
                     "(the same on every machine and shard for the same --sample_seed), kept "
                     "in input order.", lower_bound=1)
flags.DEFINE_integer("sample_seed", 0, "Seed of --sample's subset.")
flags.DEFINE_boolean("summarize", False, "Merge the evaluation folders given as arguments "
                     "(shards, --num_shards) into --output_dir: evaluation.csv, sanity.csv, the "
                     "summary, its plots and one index.html, from their CSV files alone (no "
                     "model). Duplicates and photos missing from the input list (--image if "
                     "given, else the shards' own lists) are reported.")
FLAGS = flags.FLAGS

USAGE = """\
usage: {prog} --image PATH [--image PATH ...] [flags]
       {prog} --summarize DIR [DIR ...] --output_dir DIR

Measures Grad-CAM, Guided Backprop, Guided Grad-CAM and the counterfactual maps of each image:
faithfulness to occlusion, deletion / insertion, localisation and pointing game on VOC boxes,
and the sanity checks under weight randomisation.

Needs the optional extra (SciPy, scikit-image, matplotlib): {extra}

examples:
  {prog} --image images/ --boxes images/boxes --output_dir evaluation
  {prog} --network vgg_16 --image ILSVRC2012_val/ --boxes val_boxes/ --metrics localisation
  {prog} --image photos/ --num_shards 4 --shard_index 0 --output_dir evaluation/shard_0
  {prog} --summarize evaluation/shard_* --output_dir evaluation/all
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
                      "the curve points.",
        "num_shards": "Split the inputs into this many deterministic shards (photo i goes to "
                      "shard i % num_shards), one output folder each; --summarize merges them.",
        "shard_index": "Which shard (0-based) this process evaluates. A run into a folder of "
                       "an earlier one with the same settings resumes it.",
        "labels_file": "Class names, one per line, or ILSVRC's LOC_synset_mapping.txt (a "
                       "WordNet ID, then the names: --boxes may name classes by their IDs); "
                       "'imagenet' for ImageNet's 1000. Default for --model: class 0, class 1, "
                       "...",
        "image": "Image file, folder or glob; repeatable. With --summarize: the input list "
                 "the merged folders are checked against."}


def help_text(argv0="evaluate.py"):
    shared = [flag for flag in FLAGS.get_flags_for_module(cli.__name__)
              if flag.name not in NOT_FOR_EVALUATION]
    own = FLAGS.get_flags_for_module(__name__)
    prog = "python " + argv0 if argv0.endswith(".py") else os.path.basename(argv0)
    return "%s\nflags (--helpfull adds absl's own):\n%s\n" % (
        USAGE.format(prog=prog, extra=EXTRA), "\n".join(map(common.describe_flag, shared + own)))


def require_extra(plots=True, measuring=True):
    """Imports what the evaluation needs beyond the toolkit (a merge: matplotlib alone); a
    missing or broken one is one error line naming the extra, never a traceback."""
    import importlib

    for module in (EXTRA_MODULES if measuring else ()) + (("matplotlib",) if plots else ()):
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


def check_boxes_given(chosen, task=None):
    """--metrics asked for a metric on boxes without --boxes: refused, unless the model is a
    segmentation model (its regions are the ground truth)."""
    on_boxes = [name for name in chosen if metrics.REGISTRY[name].needs_boxes]
    if on_boxes and FLAGS.boxes is None and FLAGS["metrics"].present and task != SEGMENTATION:
        raise GuidedGradCamError("--metrics %s needs --boxes DIR (or a segmentation model, "
                                 "whose regions it measures against)" % ",".join(on_boxes))


def _settings():
    baselines = parse_baselines(FLAGS.baseline)  # before the runner imports TensorFlow
    from guided_gradcam.evaluation.runner import Settings
    from guided_gradcam.methods import parse_methods

    chosen = metrics.parse_metrics(FLAGS.metrics)
    if FLAGS.model is None:  # a network is a classifier; a model's task is known once loaded
        check_boxes_given(chosen)
    if FLAGS.boxes is not None and not os.path.exists(FLAGS.boxes):
        raise GuidedGradCamError("--boxes %s is neither a folder of XML files nor a "
                                 "LOC_val_solution.csv file" % FLAGS.boxes)
    if FLAGS["baseline"].present and "deletion" not in chosen:
        raise GuidedGradCamError("--baseline is for --metrics deletion")
    return Settings(metrics=chosen, methods=parse_methods(FLAGS.methods), patch=FLAGS.patch,
                    stride=FLAGS.stride, step=FLAGS.step, batch_size=FLAGS.batch_size,
                    seed=FLAGS.seed, tolerance=FLAGS.tolerance,
                    randomisation=tuple(FLAGS.randomisation),
                    deletion_baseline=baselines["deletion"],
                    insertion_baseline=baselines["insertion"])


FOR_SUMMARIZE = ("summarize", "output_dir", "image", "plots")



def _summarize(folders):
    """--summarize DIR …: the folders merged from their CSV files, no model, no TensorFlow."""
    from guided_gradcam.evaluation import merge, report

    own = FLAGS.get_flags_for_module(__name__) + FLAGS.get_flags_for_module(cli.__name__)
    other = [flag.name for flag in own if flag.present and flag.name not in FOR_SUMMARIZE]
    if other:
        raise GuidedGradCamError("--%s is not for --summarize: the settings are the folders' "
                                 "own (evaluation.json)" % other[0])
    if not folders:
        raise GuidedGradCamError("--summarize needs the folders to merge: --summarize DIR "
                                 "[DIR ...] --output_dir DIR")
    require_extra(FLAGS.plots, measuring=False)
    inputs = None
    if FLAGS.image:
        inputs, missing = cli.collect_inputs()
        if missing:
            return 1
    maps, results, notes = merge.summarize(folders, FLAGS.output_dir, inputs, FLAGS.plots)
    print("summary of %d folder%s in %s (evaluation.csv, evaluation.json, index.html)"
          % (len(folders), "s" if len(folders) > 1 else "", FLAGS.output_dir), flush=True)
    print("\n".join([report.summary_text(results, maps)] + notes), flush=True)
    return 0


def _plan(labels_given):
    """(this shard's jobs, the settings of the input list): --sample, then the shard, by
    inference.py's split (`pipeline.plan_jobs`)."""
    from guided_gradcam.cli.evaluation_run import sample_paths
    from guided_gradcam.cli.pipeline import plan_jobs
    from guided_gradcam.evaluation.provenance import SHARD, inputs_digest

    paths, missing = cli.collect_inputs()
    chosen = sample_paths(paths, FLAGS.sample, FLAGS.sample_seed)
    jobs, _ = plan_jobs(chosen, FLAGS.output_dir, (), FLAGS.shard_index, FLAGS.num_shards)
    pairs = [("inputs", inputs_digest(chosen))]
    if FLAGS.sample is not None:
        pairs.append(("sample", "%d of %d photos, seed %d" % (len(chosen), len(paths),
                                                              FLAGS.sample_seed)))
    if labels_given:
        pairs.append(("labels", ",".join(FLAGS.label)))
    if FLAGS.num_shards > 1:
        pairs.append((SHARD, "%d of %d" % (FLAGS.shard_index, FLAGS.num_shards)))
    return paths, missing, jobs, pairs


def main(argv):
    if FLAGS.summarize:
        try:
            return _summarize(argv[1:])
        except GuidedGradCamError as problem:
            common.print_error(problem)
            return 1
    stray = cli.stray_arguments(argv)
    if stray is not None:
        return stray
    failures, missing, jobs = 0, [], []
    try:
        ignored = [name for name in NOT_FOR_EVALUATION if FLAGS[name].present]
        if ignored:
            raise GuidedGradCamError("--%s is not a flag of the evaluation%s" % (
                ignored[0], " (a run into the folder of an earlier one with the same "
                "settings resumes it)" if ignored[0] == "skip_existing" else ""))
        require_extra(FLAGS.plots)
        settings = _settings()
        labels = cli.check_model_flags()
        paths, missing, jobs, input_pairs = _plan(bool(FLAGS.label))
        if not paths:
            return 1
        from guided_gradcam.cli import evaluation_run

        background = [] if FLAGS.background is None else [("background", FLAGS.background)]

        def settings_on_record(regions=False):
            described = evaluation_run.described_settings(settings, FLAGS.boxes, regions)
            return described, (described + background
                               + evaluation_run.recorded_settings(FLAGS.boxes, input_pairs))
        described, own_settings = settings_on_record()
        evaluation_run.check_resumable(FLAGS.output_dir, own_settings, model_known=False)
        common.check_writable(FLAGS.output_dir)
        with cli.open_explainer(settings.methods) as explainer:
            from guided_gradcam.evaluation import provenance, records, report
            from guided_gradcam.evaluation.runner import Evaluator, map_names
            from guided_gradcam.outputs.run_index import RunIndex

            check_boxes_given(settings.metrics, explainer.task)
            if explainer.task == SEGMENTATION:  # the regions stand in for boxes: say how
                described, own_settings = settings_on_record(regions=True)
            elif FLAGS.background is not None:
                raise GuidedGradCamError("--background is for segmentation models; %s is a "
                                         "%s model" % (explainer.source.name, explainer.task))
            if labels is None:
                labels = [explainer.labels.resolve(label) for label in FLAGS.label or ()]
            evaluator = Evaluator(explainer, settings, FLAGS.boxes, background=FLAGS.background)
            reporting.print_run_header(explainer, own_model=FLAGS.model is not None)
            print("evaluation: %s" % "; ".join("%s %s" % pair for pair in described),
                  flush=True)
            page_settings = (evaluation_run.model_settings(explainer, FLAGS.model is not None)
                             + [("checkpoint digest", provenance.weights_digest(
                                 explainer.checkpoint or FLAGS.model))] + own_settings)
            maps = map_names(settings.methods, evaluator.counterfactual)
            resume = evaluation_run.check_resumable(FLAGS.output_dir, page_settings)
            # The settings before any row (a folder never has rows without them), and no
            # older run's summary.
            report.write_page_data(FLAGS.output_dir, page_settings)
            record = records.Record(FLAGS.output_dir, maps, resume=resume)
            todo = [job for job in jobs if job.path not in record.done]
            provenance.write_inputs(FLAGS.output_dir, [job.path for job in jobs])
            index = RunIndex(FLAGS.output_dir)
            throughput = evaluation_run.Throughput(
                explainer, len(todo), evaluation_run.class_counts(evaluator, todo, labels),
                len(jobs) - len(todo), (FLAGS.shard_index, FLAGS.num_shards))
            try:
                results, failures = evaluation_run.evaluate_photos(
                    evaluator, todo, labels, record, index, throughput, FLAGS.output_dir,
                    FLAGS.plots)
                # The summary of every photo in the folder, from its CSV files: a resumed
                # run's too, and what a merge of shards computes.
                _, everything = records.read_results(FLAGS.output_dir)
                report.write_page_data(FLAGS.output_dir, page_settings, everything, maps)
            finally:
                record.close()
                index.close()  # the page shows evaluation.csv's numbers
            if FLAGS.plots:
                report.write_summary_plots(everything, FLAGS.output_dir)
            without = sum(r.box_file is None for r in results)
            if FLAGS.boxes is not None and without:
                print("note: %d of %d photos had no %s in %s (%s): no ground-truth classes, "
                      "localisation or pointing game for them" % (
                          without, len(results), *(("box file", FLAGS.boxes, "<stem>.xml")
                                                   if os.path.isdir(FLAGS.boxes) else
                                                   ("row", FLAGS.boxes, "ImageId <stem>"))),
                      flush=True)
            print(throughput.summary(), flush=True)
            print(report.summary_text(everything, maps), flush=True)
    except GuidedGradCamError as problem:
        common.print_error(problem)
        return 1
    except KeyboardInterrupt:
        common.print_error("interrupted")
        return 130
    failures += len(missing)
    if failures:
        common.print_error("%d of %d inputs failed" % (failures, len(jobs) + len(missing)))
    return 1 if failures else 0

def run():
    FLAGS.set_default("output_dir", "evaluation")
    for name, text in HELP.items():  # inference.py's would name its .npz files
        FLAGS[name].help = text
    common.run_command(main, help_text)

