"""What the command line prints about a run: its header (the model, its input, the layer,
what guided backprop does not guide), each image's scores and what it explained, and where the
files went."""
import os

from guided_gradcam.core.tasks import CLASSIFICATION, REGRESSION, SEGMENTATION


class ResultPrinter:
    """Each image's scores once (top-k, k = min(5, classes); `p:` for sigmoid heads), then what
    each of its explanations explained: on the same line for one label, one line each for
    several. `pipeline.run_jobs` reports an image's explanations one after another."""

    def __init__(self, layer=None):
        self.layer = layer
        self._last_job = None

    def __call__(self, job, explanation, labels):
        mode = "counterfactual " if explanation.counterfactual else ""
        if explanation.task == SEGMENTATION:  # one line per (image, class): its region
            print("%s: region %.1f %% of the output, mean p(%s) %.3f; explained %s%s (%d)" % (
                job.path, 100 * explanation.region_area, labels.name(explanation.label),
                explanation.probabilities[explanation.label], mode,
                labels.name(explanation.label), explanation.label), flush=True)
        elif explanation.task == REGRESSION:
            print("%s: y = %.6g; explained %s%s" % (job.path, explanation.value, mode,
                                                    "-y" if explanation.counterfactual else "y"),
                  flush=True)
        else:
            explained = "explained %s%s (%d)" % (mode, labels.name(explanation.label),
                                                 explanation.label)
            if job is not self._last_job:
                k = min(5, len(explanation.probabilities))
                scores = "%s: %s" % (
                    "top-%d" % k if explanation.task == CLASSIFICATION else "p",
                    ", ".join("%s (%d) %.3f" % (c.name, c.index, c.probability)
                              for c in explanation.top_k(k)))
                if len(job.targets) == 1:
                    print("%s: %s; %s" % (job.path, scores, explained), flush=True)
                else:
                    print("%s: %s" % (job.path, scores), flush=True)
            if len(job.targets) > 1:
                print("%s: %s" % (job.path, explained), flush=True)
        self._last_job = job
        if not explanation.cam_lowres.any():
            subject = "y" if explanation.task == REGRESSION else labels.name(explanation.label)
            meaning = ("nothing speaks against %s" if explanation.counterfactual
                       else "no positive evidence for %s") % subject
            print("note: %s: the %sGrad-CAM map is all zero: %s at layer %s"
                  % (job.path, mode, meaning, self.layer), flush=True)


def print_written(jobs, kinds, methods, output_dir):
    """Where the files went: a one-image run names them (`output/cat_*.png, output/cat.npz`),
    a larger one its folder. `run_jobs` leaves each job's targets that were written."""
    from guided_gradcam.outputs.files import output_paths

    jobs = [job for job in jobs if job.targets]
    written = len(jobs)
    if written <= 0:
        return
    if len(jobs) > 1:
        print("wrote the outputs of %d image%s into %s (index.html lists them)"
              % (written, "s" if written > 1 else "", output_dir), flush=True)
        return
    job, = jobs
    files = []
    for target in job.targets:
        stem = job.stem + target.suffix
        paths = output_paths(output_dir, stem, kinds, methods)
        pngs = [path for path in paths if path.endswith(".png")]
        if len(pngs) > 1:
            pngs = [os.path.join(output_dir, stem + "_*.png")]
        files += pngs + [path for path in paths if not path.endswith(".png")]
    print("wrote %s" % ", ".join(files), flush=True)


def print_run_header(explainer, counterfactual=False, own_model=False):
    """Once per run: what the model is, how pixels reach it, what GBP does not guide.
    own_model: --model (else a network of the zoo)."""
    from guided_gradcam.core.activations import describe
    from guided_gradcam.preprocessing import describe_input

    source = explainer.source
    checkpoint = "; checkpoint %s" % explainer.checkpoint if explainer.checkpoint else ""
    mode = "counterfactual (-dy/dA)" if counterfactual else "factual"
    smoothing = [name for name, on in (("aug_smooth", explainer.aug_smooth),
                                       ("eigen_smooth", explainer.eigen_smooth)) if on]
    if smoothing:
        mode += ", %s" % " and ".join(smoothing)
    preprocessing = "%s: %s" % (source.preprocessing.name, source.preprocessing.description)
    note = None
    if own_model:  # what is known of how the pixels reach the model
        preprocessing, note = describe_input(source.preprocessing,
                                             getattr(source, "rescaling", None))
    print("%s: %s (%s, %d score%s)%s; input %dx%dx%d, preprocessing %s; Grad-CAM layer %s; "
          "mode %s" % (
              "model" if own_model else "network", source.name, explainer.task,
              explainer.num_scores, "s" if explainer.num_scores > 1 else "", checkpoint,
              *explainer.input_size, explainer.channels, preprocessing,
              explainer.layer_description, mode),
          flush=True)
    if note:
        print("note: %s" % note, flush=True)
    if explainer.unguided_activations:
        print("guided backprop passes these activations with their ordinary gradient (it is "
              "defined for ReLU): %s" % describe(explainer.unguided_activations), flush=True)
