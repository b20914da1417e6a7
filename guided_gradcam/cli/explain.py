"""The command line (`guided-gradcam`, `python -m guided_gradcam`, `inference.py`): explain
images with Grad-CAM, Guided Backprop and Guided Grad-CAM.

A thin layer over the Python API: parse flags, stream images through `GuidedGradCam.explain`
in batches, print each image's top classes and write its files. Bad input costs only itself: it is
reported in one line, skipped, and reflected in the exit code. `--help` lists the flags defined
here, generated from their definitions (`help_text`).
"""
import os
import pathlib
import sys

from absl import flags

from guided_gradcam.cli import common, reporting
from guided_gradcam.cli.common import describe_flag, print_error
from guided_gradcam.core.tasks import SEGMENTATION
from guided_gradcam.core.tf_startup import import_tensorflow_quietly
from guided_gradcam.errors import GuidedGradCamError, parse_choices
from guided_gradcam.methods import GRADCAM, REGISTRY
from guided_gradcam.methods.scorecam import DEFAULT_CHANNELS
from guided_gradcam.outputs.files import OUTPUT_KINDS
from guided_gradcam.regions import RegionChoice, parse_box
from guided_gradcam.zoo.networks import DEFAULT_NETWORK, NETWORKS

if __name__ == "__main__":
    # `python -m guided_gradcam.cli.explain`: run the imported module. This copy, named __main__, would
    # define every flag a second time.
    from guided_gradcam.cli.explain import run
    run()

flags.DEFINE_multi_string("image", None, "Image file, folder or glob; repeatable.")
flags.DEFINE_multi_string("label", None, "Class to explain: index or class name (ImageNet's "
                          "for the networks; binary models: 1 = the positive logit z, 0 = -z); "
                          "repeatable: every label in the same session run. Default: each "
                          "image's top-1 class (binary: the predicted side).")
flags.DEFINE_string("network", DEFAULT_NETWORK, "One of: %s." % ", ".join(NETWORKS))
flags.DEFINE_string("model", None, "Your own model instead of --network: a .keras or .h5 file, "
                    "a SavedModel folder, a frozen .pb GraphDef or a TF1 .meta graph.")
flags.DEFINE_boolean("trust_model", False, "Run a --model that would do more than compute "
                     "(file, Python or debug ops in its graph; Keras Lambda layers, which run "
                     "stored Python code), refused by default: a model file is a program.")
flags.DEFINE_string("signature", None, "SavedModel signature (default serving_default).")
flags.DEFINE_string("input", None, "Graph models: the image input tensor, e.g. input:0.")
flags.DEFINE_string("output", None, "The scores tensor (e.g. logits/BiasAdd) or SavedModel "
                    "output key. Default: the model's only output.")
flags.DEFINE_multi_string("feed", None, "NAME=VALUE for another placeholder of a graph model, "
                          "e.g. is_training=false; repeatable.")
flags.DEFINE_string("preprocess", None, "Pixels (0..255) to model input: raw, unit (/255), "
                    "inception ([-1, 1]), vgg (minus ImageNet means), torch (ImageNet mean/std)."
                    " Default: the network's own; raw for --model.")
flags.DEFINE_string("labels_file", None, "Class names, one per line ('imagenet' for ImageNet's "
                    "1000). Default for --model: class 0, class 1, ...")
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix, file or folder. Default: "
                    "./checkpoints/<network>/, then $GUIDED_GRADCAM_HOME/checkpoints/<network>/, "
                    "else the official archive is downloaded; for a .meta model, the prefix "
                    "beside it.")
flags.DEFINE_string("checkpoints_dir", None, "A folder of per-network checkpoints, searched "
                    "first and where downloads go. Default: ./checkpoints is searched, then "
                    "$GUIDED_GRADCAM_HOME/checkpoints (~/.cache/guided_gradcam), where downloads "
                    "go.")
flags.DEFINE_string("layer", None, "Grad-CAM layer: an end point, a Keras layer name (also in "
                    "nested models) or a tensor/op name. Default: the last conv layer; an unknown "
                    "name lists the valid ones.")
flags.DEFINE_integer("tokens", None, "A token layer's leading tokens (class, distillation, "
                     "register tokens), dropped before its patch tokens become the grid. "
                     "Default: from the model.", lower_bound=0)
flags.DEFINE_string("grid", None, "A token layer's patch grid as HxW (e.g. 14x20). Default: "
                    "the patch embedding's, else the input size over the patch size, else a "
                    "square.")
flags.DEFINE_string("output_dir", "output", "Where the PNGs and .npz files are written.")
flags.DEFINE_string("input_size", None, "Network input size as HxW or N (square). Default: the "
                    "network's own (224). Not for vgg_16, whose fc layers need 224x224.")
flags.DEFINE_integer("batch_size", 16, "Images per session run.", lower_bound=1)
flags.DEFINE_string("outputs", ",".join(OUTPUT_KINDS), "What to write per image: a "
                    "comma-separated subset of png (the three maps), npz, panel.")
flags.DEFINE_boolean("skip_existing", False, "Skip images whose requested outputs all exist "
                     "(resumes an interrupted run).")
flags.DEFINE_integer("num_shards", 1, "Split the inputs into this many deterministic shards.",
                     lower_bound=1)
flags.DEFINE_integer("shard_index", 0, "Which shard (0-based) this job explains.", lower_bound=0)
flags.DEFINE_string("methods", GRADCAM, "The CAM methods, comma-separated, all from the same "
                    "run: %s; each also guided (x GBP). The panel shows them in the order given. "
                    "Grad-CAM's fields are always filled, asked or not (cam, cam_lowres, "
                    "guided_gradcam). Score-CAM and Ablation-CAM run forward passes per "
                    "channel, in runs of --batch_size." % ", ".join(
                        name if method.title.lower().replace("-", "") == name
                        else "%s (%s)" % (name, method.title)
                        for name, method in REGISTRY.items()))
flags.DEFINE_boolean("counterfactual", False, "Explain -dy/dA: what speaks against the class. "
                     "%s: no class score, the same map either way." % ", ".join(
                         name for name, method in REGISTRY.items() if not method.class_score))
flags.DEFINE_integer("score_cam_channels", DEFAULT_CHANNELS, "Score-CAM masks the input with "
                     "only this many channels of largest variance (Faster Score-CAM); 0: every "
                     "channel.", lower_bound=0)
flags.DEFINE_boolean("aug_smooth", False, "Average every map over the input flipped or not, "
                     "times brightness 1.0, 1.1, 0.9 (6x the work).")
flags.DEFINE_boolean("eigen_smooth", False, "Every map from the first principal component of "
                     "the weighted activations instead of their sum.")
flags.DEFINE_string("region", None, "Segmentation models: explain the class over this box, "
                    "x0,y0,x1,y1 in photo pixels (right and bottom exclusive). Default: the "
                    "pixels predicted as the class.")
flags.DEFINE_string("mask", None, "Segmentation models: explain the class over this mask "
                    "image's non-zero pixels (resized to the photo if its size differs).")
flags.DEFINE_string("background", None, "Segmentation models: a class (index or name) never "
                    "chosen as the class of the largest predicted area when --label is not "
                    "given.")
FLAGS = flags.FLAGS


def parse_outputs(text):
    return parse_choices(text, OUTPUT_KINDS, "--outputs takes")


def _feeds(texts):
    from guided_gradcam.core.tensor_names import parse_feed

    return dict(parse_feed(text) for text in texts or ())


def check_model_flags():
    """Fails fast, before TF loads, on a bad model choice, input size, preprocessing or feed;
    returns --label as ImageNet indices for a network (None for a model: its classes are known
    once it is loaded)."""
    from guided_gradcam.labels import LabelSpace
    from guided_gradcam.zoo.networks import get_network
    from guided_gradcam.preprocessing import get_preprocessing

    input_size = common.parse_input_size(FLAGS.input_size)
    _feeds(FLAGS.feed)
    common.parse_grid(FLAGS.grid)
    if FLAGS.region is not None and FLAGS.mask is not None:
        raise GuidedGradCamError("pass --region or --mask, not both")
    if FLAGS.region is not None:
        parse_box(FLAGS.region)
    if FLAGS.mask is not None and not os.path.isfile(FLAGS.mask):
        raise GuidedGradCamError("mask %s does not exist" % FLAGS.mask)
    if FLAGS.preprocess is not None:
        get_preprocessing(FLAGS.preprocess)
    if FLAGS.model is None:
        get_network(FLAGS.network).check_input_size(input_size)
        return [LabelSpace(1000).resolve(label) for label in FLAGS.label or ()]
    if FLAGS["network"].present:
        raise GuidedGradCamError("pass --network or --model, not both")
    if not os.path.exists(FLAGS.model):
        hint = ("; for the built-in network pass --network %s" % FLAGS.model
                if FLAGS.model in NETWORKS else "")
        raise GuidedGradCamError("model %s does not exist%s" % (FLAGS.model, hint))
    if FLAGS.model in NETWORKS:
        print("note: %s is also a built-in network's name; --model uses the path (--network %s "
              "for the network)" % (FLAGS.model, FLAGS.model), file=sys.stderr, flush=True)
    return None


def region_flags(explainer):
    """(RegionChoice or None, background class or None) of --region, --mask, --background."""
    if explainer.task != SEGMENTATION:
        given = [flag for flag in ("region", "mask", "background") if FLAGS[flag].value]
        if given:
            raise GuidedGradCamError("%s need%s a segmentation model (output (batch, height, "
                                     "width, classes)); this one's task is %s" % (
                                         ", ".join("--" + flag for flag in given),
                                         "s" if len(given) == 1 else "", explainer.task))
        return None, None
    background = (None if FLAGS.background is None
                  else explainer.labels.resolve(FLAGS.background))
    choice = RegionChoice(FLAGS.region, FLAGS.mask,
                          note=lambda message: print("note: %s" % message, flush=True))
    return (choice if choice else None), background


def open_explainer(methods):
    """The GuidedGradCam of the model flags."""
    import_tensorflow_quietly()
    from guided_gradcam.explainer import GuidedGradCam

    if FLAGS.trust_model and FLAGS.model:  # the run's first line, before the model loads
        print("model %s is trusted (--trust_model): its ops and stored Python code run unchecked"
              % FLAGS.model, flush=True)

    model = pathlib.Path(FLAGS.model) if FLAGS.model else FLAGS.network  # --model: a path
    return GuidedGradCam(model, FLAGS.checkpoint, FLAGS.layer,
                         checkpoints_dir=FLAGS.checkpoints_dir,
                         input_size=common.parse_input_size(FLAGS.input_size), input=FLAGS.input,
                         output=FLAGS.output, feeds=_feeds(FLAGS.feed), signature=FLAGS.signature,
                         preprocess=FLAGS.preprocess, labels_file=FLAGS.labels_file,
                         methods=methods, trust_model=FLAGS.trust_model,
                         batch_size=FLAGS.batch_size,
                         score_cam_channels=FLAGS.score_cam_channels or None,
                         aug_smooth=FLAGS.aug_smooth, eigen_smooth=FLAGS.eigen_smooth,
                         tokens=FLAGS.tokens, grid=common.parse_grid(FLAGS.grid))


def _plan(paths, labels, kinds, methods):
    """This shard's jobs, each with the targets (class, mode) whose files are still wanted."""
    from guided_gradcam.cli.pipeline import plan_jobs, targets_for

    jobs, skipped = plan_jobs(paths, FLAGS.output_dir, kinds, FLAGS.shard_index, FLAGS.num_shards,
                              FLAGS.skip_existing, targets_for(labels, FLAGS.counterfactual),
                              methods)
    if skipped:
        print("skipping %d images whose outputs exist" % skipped)
    return jobs


def stray_arguments(argv):
    """Both commands' first check: 2 (with its one line) for arguments that are no flags or
    for no --image at all; None when the command line can go on."""
    if len(argv) > 1:
        print_error("unexpected arguments: %s (images go after --image)" % " ".join(argv[1:]))
        return 2
    if not FLAGS.image:
        print_error("no input: pass --image PATH (a file, a folder or a glob; repeatable)")
        return 2
    return None


def collect_inputs():
    """(paths, missing) of --image, each missing one reported in its own line."""
    from guided_gradcam.images import collect_image_paths

    paths, missing = collect_image_paths(FLAGS.image)
    for message in missing:
        print_error(message)
    return paths, missing


def main(argv):
    stray = stray_arguments(argv)
    if stray is not None:
        return stray
    jobs, missing, failures = [], [], 0
    try:
        from guided_gradcam.cli.pipeline import Progress, run_jobs
        from guided_gradcam.methods import parse_methods
        from guided_gradcam.outputs.run_index import RunIndex

        kinds = parse_outputs(FLAGS.outputs)
        methods = parse_methods(FLAGS.methods)
        labels = check_model_flags()
        paths, missing = collect_inputs()
        if not paths:
            return 1
        if FLAGS.model is None:
            jobs = _plan(paths, labels, kinds, methods)
            if not jobs:  # everything exists: done without loading TensorFlow
                return 1 if missing else 0
        common.check_writable(FLAGS.output_dir)  # before the work, not after every image is computed
        with open_explainer(methods) as explainer:
            if FLAGS.model is not None:  # a model's class names are known once it is loaded
                labels = [explainer.labels.resolve(label) for label in FLAGS.label or ()]
                jobs = _plan(paths, labels, kinds, methods)
            reporting.print_run_header(explainer, FLAGS.counterfactual, bool(FLAGS.model))
            regions, background = region_flags(explainer)
            if jobs:
                with RunIndex(FLAGS.output_dir) as index:  # index.csv rows, then index.html
                    failures = run_jobs(
                        explainer, jobs, FLAGS.output_dir, FLAGS.batch_size, FLAGS.counterfactual,
                        kinds, report=reporting.ResultPrinter(explainer.layer),
                        error=print_error, index=index,
                        progress=Progress(len(jobs)) if len(jobs) > 1 else None,
                        regions=regions, background=background)
                reporting.print_written(jobs, kinds, methods, FLAGS.output_dir)
    except GuidedGradCamError as error:
        print_error(error)
        return 1
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    failures += len(missing)
    if failures:
        print_error("%d of %d inputs failed" % (failures, len(jobs) + len(missing)))
    return 1 if failures else 0


USAGE = """\
usage: {prog} --image PATH [--image PATH ...] [flags]

Explains each image with Grad-CAM, Guided Backprop and Guided Grad-CAM: prints its top-k and
writes the maps, a panel and an .npz per image into --output_dir.

examples:
  {prog} --image images/cat.jpg --label 282
  {prog} --model my_model.keras --preprocess unit --image photos/ --output_dir maps
"""


def _program(argv0):
    """The command as the user typed it, for the usage line."""
    cli_folder = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(cli_folder)
    if os.path.dirname(os.path.abspath(argv0)) in (package, cli_folder):  # __main__.py, explain.py
        return "python -m guided_gradcam"
    return "python " + argv0 if argv0.endswith(".py") else os.path.basename(argv0)


def help_text(argv0="inference.py"):
    """--help: usage, two examples, then every flag this module defines, in definition order."""
    tool_flags = FLAGS.get_flags_for_module(__name__)
    return "%s\nflags (--helpfull adds absl's own):\n%s\n" % (
        USAGE.format(prog=_program(argv0)), "\n".join(map(describe_flag, tool_flags)))


def run():
    """The explaining command line (`inference.py`, `guided-gradcam`, `python -m
    guided_gradcam`)."""
    common.run_command(main, help_text)
