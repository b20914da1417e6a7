"""`make bench`'s rows for the gradient-free CAMs, per network, in runs of 16 inputs:
  Score-CAM: its cost beyond Grad-CAM's explain (one image, 64 channels) against the same
    number of plain forward passes of masked inputs;
  Ablation-CAM: its cost beyond Grad-CAM's against K plain passes of the network's tail
    (ablated activations fed), and against Score-CAM's;
  Eigen-CAM: explain with Eigen-CAM against explain with Grad-CAM alone.
Every side is timed in turns (`bench._interleaved_times`), the median of its repetitions.
"""
import statistics
import tempfile

BATCH = 16
SCORE_CAM_CHANNELS = 64  # VGG-16's 256 default channels would take minutes per repetition


def measure(network, weights, checkpoint_of, interleaved_times, results):
    """Puts (rows of (label, measured ms, reference ms, limit)) on `results`."""
    from guided_gradcam.core.tf_startup import import_tensorflow_quietly
    import_tensorflow_quietly()
    import numpy as np

    from guided_gradcam import GuidedGradCam, forward_passes
    from guided_gradcam.methods import scorecam

    with tempfile.TemporaryDirectory() as scratch:
        explainer = GuidedGradCam(network, checkpoint=checkpoint_of(network, weights, scratch),
                                  batch_size=BATCH, score_cam_channels=SCORE_CAM_CHANNELS)
    g, session = explainer.graph, explainer.session
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1,) + explainer.input_size + (3,), dtype=np.uint8)
    net_input = explainer.network_inputs(image)
    activations = session.run(g.activations, {g.net_input: net_input})
    channels = activations.shape[-1]
    chosen = scorecam.chosen_channels(activations[0], explainer.score_cam_channels)
    masks = scorecam.channel_masks(activations[0][..., chosen[:BATCH]].transpose(2, 0, 1),
                                   *explainer.input_size)
    # The floors' arrays are 64-byte aligned as the passes' own buffer is: TF copies a
    # misaligned feed, and the floor would pay a copy the methods do not.
    masked = forward_passes.aligned_empty((BATCH,) + net_input.shape[1:])
    np.multiply(net_input, masks[..., None], out=masked)
    ablated = forward_passes.aligned_empty((BATCH,) + activations.shape[1:])
    ablated[...] = activations
    ablated[np.arange(BATCH), :, :, np.arange(BATCH)] = 0.0
    masked_runs, tail_runs = -(-len(chosen) // BATCH), -(-channels // BATCH)

    def forward_passes():
        for _ in range(masked_runs):
            session.run(g.head.explained, {g.net_input: masked, **g.model.feeds})

    def tail_passes():
        for _ in range(tail_runs):
            session.run(g.head.explained, {g.activations: ablated, **g.model.feeds})

    runs = {
        "gradcam": lambda: explainer.explain(image, methods=["gradcam"]),
        "scorecam": lambda: explainer.explain(image, methods=["scorecam"]),
        "forward": forward_passes,
        "ablationcam": lambda: explainer.explain(image, methods=["ablationcam"]),
        "tail": tail_passes,
        "eigencam": lambda: explainer.explain(image, methods=["eigencam"]),
    }
    times = interleaved_times(list(runs.values()), 1, budget_s=20.0, max_reps=7, min_reps=3)
    ms = dict(zip(runs, map(statistics.median, times)))
    score_cost = ms["scorecam"] - ms["gradcam"]
    ablation_cost = ms["ablationcam"] - ms["gradcam"]
    # The Eigen methods at batch 16, where the SVDs' share is the largest.
    batch = rng.integers(0, 256, (BATCH,) + explainer.input_size + (3,), dtype=np.uint8)
    alone, eigen = map(statistics.median, interleaved_times(
        [lambda: explainer.explain(batch, methods=["gradcam"]),
         lambda: explainer.explain(batch, methods=["eigencam"])], BATCH))
    results.put([
        ("Score-CAM beyond Grad-CAM, %d channels" % len(chosen), score_cost,
         "%d masked forward passes" % len(chosen), ms["forward"], 1.10),
        ("Ablation-CAM beyond Grad-CAM, %d channels" % channels, ablation_cost,
         "%d tail passes" % channels, ms["tail"], 1.10),
        # VGG-16's tail holds fc6 and fc7, most of its compute: no 3x there.
        ("Ablation-CAM beyond Grad-CAM", ablation_cost, "Score-CAM beyond Grad-CAM",
         score_cost, None if network == "vgg_16" else 1 / 3.0),
        ("explain with Eigen-CAM, batch 16", eigen, "Grad-CAM alone", alone, 1.05),
    ])


def print_rows(network, rows):
    print("%s, runs of %d, one image:" % (network, BATCH))
    for label, measured, reference_label, reference, limit in rows:
        ratio = measured / reference
        verdict = "no limit" if limit is None else "limit %.2fx%s" % (
            limit, "" if ratio <= limit else ", OVER")
        print("  %s %.1f ms vs %s %.1f ms = %.3fx (%s)" % (
            label, measured, reference_label, reference, ratio, verdict))
