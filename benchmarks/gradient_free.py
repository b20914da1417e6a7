"""`make bench`'s rows for the gradient-free CAMs, per network, in runs of 16 inputs:
  Score-CAM: its cost beyond Grad-CAM's explain (one image, 64 channels) against the same
    number of plain forward passes of masked inputs;
  Ablation-CAM: its cost beyond Grad-CAM's against K plain passes of the network's tail
    (ablated activations fed), and against Score-CAM's;
  Eigen-CAM: explain with Eigen-CAM against explain with Grad-CAM alone.
Every side is timed in turns (`bench._interleaved_times`); a ratio is the median over turns of
the ratio within a turn (the ms shown: each side's median). In a turn the floor's passes run
right after the Grad-CAM explain, so that they start from the state an explanation leaves the
machine in, as the method's own passes do (after the explanation's main run the first passes
are slower: 48 MobileNet tail passes by ~1.1 ms, 3 %, than after other tail passes).
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

    def explain(methods, images=image):
        return lambda: explainer.explain(images, methods=methods)

    def paired(runs, **budget):
        """{name: median ms} and every repetition's times, timed in turns of `runs` in order:
        a ratio within a turn is immune to the load drifting between turns (2 shared cores
        drift by 10-20 % over a minute)."""
        times = interleaved_times(list(runs.values()), 1, **budget)
        return dict(zip(runs, map(statistics.median, times))), times

    def cost_ratio(times):  # (method − Grad-CAM) / floor, per turn
        gradcam, floor, method = times
        return statistics.median((m - g) / f for g, m, f in zip(gradcam, method, floor))

    score_ms, score_times = paired({"gradcam": explain(["gradcam"]),
                                    "forward": forward_passes,
                                    "scorecam": explain(["scorecam"])},
                                   budget_s=30.0, max_reps=15, min_reps=3)
    ablation_ms, ablation_times = paired({"gradcam": explain(["gradcam"]),
                                          "tail": tail_passes,
                                          "ablationcam": explain(["ablationcam"])},
                                         budget_s=15.0, max_reps=60, min_reps=3)
    score_cost = score_ms["scorecam"] - score_ms["gradcam"]
    ablation_cost = ablation_ms["ablationcam"] - ablation_ms["gradcam"]
    # The Eigen methods at batch 16, where the SVDs' share is the largest.
    batch = rng.integers(0, 256, (BATCH,) + explainer.input_size + (3,), dtype=np.uint8)
    eigen_times = interleaved_times([explain(["gradcam"], batch), explain(["eigencam"], batch)],
                                    BATCH)
    alone, eigen = map(statistics.median, eigen_times)
    results.put([
        ("Score-CAM beyond Grad-CAM, %d channels" % len(chosen), score_cost,
         "%d masked forward passes" % len(chosen), score_ms["forward"], 1.10,
         cost_ratio(score_times)),
        ("Ablation-CAM beyond Grad-CAM, %d channels" % channels, ablation_cost,
         "%d tail passes" % channels, ablation_ms["tail"], 1.10, cost_ratio(ablation_times)),
        # VGG-16's tail holds fc6 and fc7, most of its compute: no 3x there.
        ("Ablation-CAM beyond Grad-CAM", ablation_cost, "Score-CAM beyond Grad-CAM",
         score_cost, None if network == "vgg_16" else 1 / 3.0, None),
        ("explain with Eigen-CAM, batch 16", eigen, "Grad-CAM alone", alone, 1.05,
         statistics.median(e / a for a, e in zip(*eigen_times))),
    ])


def print_rows(network, rows):
    print("%s, runs of %d, one image:" % (network, BATCH))
    for label, measured, reference_label, reference, limit, paired_ratio in rows:
        ratio = measured / reference if paired_ratio is None else paired_ratio
        verdict = "no limit" if limit is None else "limit %.2fx%s" % (
            limit, "" if ratio <= limit else ", OVER")
        print("  %s %.1f ms vs %s %.1f ms = %.3fx (%s)" % (
            label, measured, reference_label, reference, ratio, verdict))
