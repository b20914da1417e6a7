"""`make bench`: what the toolkit costs, as ratios measured in one run.

Per network (each in its own process, so peak RSS is per configuration), with warm-up and the
median of several repetitions, in ms per image (`keras .keras 0.75`: Keras 3's MobileNet with the
real weights, saved as .keras and imported; its floor is that imported graph without override):
  (a) forward only;
  (b) the floor: forward + the plain gradient of the max logit w.r.t. the input, one
      session.run on a graph without override;
  (c) `GuidedGradCam.explain`: Grad-CAM, GBP and Guided Grad-CAM for every image.
Then the folder pipeline end to end (decode, explain, render, write; peak RSS over 200 vs 20
generated photos) and the start-up of a one-image CLI run against a bare TF-Slim script.
"""
import argparse
import multiprocessing
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import gradient_free  # noqa: E402  (benchmarks/, beside this script)

MOBILENET_075 = os.path.join(REPO, "checkpoints", "mobilenet_v1_075")
TFJS_WEIGHTS = os.path.join(REPO, "..", "shared", "weights", "mobilenet_v1_0.75_224_tfjs")
XPLIQUE_PAIR_MS, PEER_FLOOR_MS = 15.2, 7.6  # peers' MobileNet 0.75 at batch 16, 2 cores
CONFIGS = [("mobilenet_v1_075", "real"), ("keras_mobilenet_075", "real"),
           ("mobilenet_v1", "random"), ("resnet_v1_50", "random"), ("vgg_16", "random"),
           ("keras_vit_s16", "random")]
# The gradient-free rows are measured on the TF-Slim networks (`gradient_free.measure` builds them
# by name): the Keras MobileNet would repeat mobilenet_v1_075's rows, and the ViT has no slim spec.
KERAS_ROWS = ("keras_mobilenet_075", "keras_vit_s16")
# A ViT-S/16-sized Keras 3 transformer (zoo.tiny_vit's builder: 224x224, patches of 16, 384
# channels, 12 blocks of 6 heads, a class token), explained on its default token layer.
VIT_S16 = dict(input_size=(224, 224), patch=16, dim=384, blocks=12, heads=6, classes=1000)
KERAS_BATCH_SIZES = (8, 16, 32)


def _interleaved_times(runs, batch_size, budget_s=6.0, max_reps=9, min_reps=5, warm_up=2):
    """The ms per image of each repetition of each of `runs`, timed in turns so that a change
    in the machine's load during the measurement hits every one of them alike."""
    for _ in range(warm_up):  # oneDNN builds its kernels and the allocator grows in the first runs
        for run in runs:
            run()
    times = [[] for _ in runs]
    start = time.perf_counter()
    while True:
        for run, samples in zip(runs, times):
            began = time.perf_counter()
            run()
            samples.append(time.perf_counter() - began)
        spent = time.perf_counter() - start
        if len(times[0]) >= max_reps or (len(times[0]) >= min_reps and spent > budget_s):
            break
    return [[1000.0 * sample / batch_size for sample in samples] for samples in times]


def _random_checkpoint(spec, num_logits, directory):
    import tensorflow.compat.v1 as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        images = tf.placeholder(tf.float32, [None, 224, 224, 3])
        spec.build(images, num_logits)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            return tf.train.Saver().save(session, os.path.join(directory, spec.name + ".ckpt"),
                                         write_meta_graph=False)


def _floor_graph(spec, num_logits, prefix):
    """Forward logits and the plain ∂(max logit)/∂input, with no override anywhere (the
    session settings are the explainer's, so that only the graphs differ)."""
    import tensorflow.compat.v1 as tf

    from guided_gradcam.explainer import session_config

    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.uint8, [None, 224, 224, 3])
        net_input = spec.preprocess(tf.cast(images, tf.float32))
        logits, _ = spec.build(net_input, num_logits)
        gradient = tf.gradients(tf.reduce_sum(tf.reduce_max(logits, axis=1)), net_input)[0]
        session = tf.Session(config=session_config())
        tf.train.Saver().restore(session, prefix)
    graph.finalize()
    return session, images, logits, gradient


def _family_cost(explainer, batch_size=16):
    """(explain with Grad-CAM alone, explain with all five CAM methods), ms per image, in turns."""
    import numpy as np

    from guided_gradcam.methods import REGISTRY
    from guided_gradcam.methods.base import ACTIVATIONS_AND_GRADIENTS

    family = tuple(name for name, method in REGISTRY.items()  # a CNN has no attention maps
                   if method.needs == ACTIVATIONS_AND_GRADIENTS and not method.projection)
    batch = np.random.default_rng(2).integers(0, 256, (batch_size, 224, 224, 3), dtype=np.uint8)
    alone, family = _interleaved_times([lambda: explainer.explain(batch, methods=("gradcam",)),
                                        lambda: explainer.explain(batch, methods=family)],
                                       batch_size)
    return statistics.median(alone), statistics.median(family)


def _table_rows(name, weights, batch_sizes, session, images, scores, gradient, explainer):
    """One table row per batch size: forward, floor and explain, timed in turns."""
    import numpy as np

    rows = []
    rng = np.random.default_rng(0)
    for batch_size in batch_sizes:
        batch = rng.integers(0, 256, (batch_size, 224, 224, 3), dtype=np.uint8)
        forward, floor, explain = _interleaved_times([
            lambda: session.run(scores, {images: batch}),
            lambda: session.run(gradient, {images: batch}),
            lambda: explainer.explain(batch)], batch_size)
        rows.append((name, weights, batch_size, statistics.median(forward),
                     statistics.median(floor), statistics.median(explain)))
    return rows


def _checkpoint_of(network, weights, scratch):
    """The real MobileNet 0.75 weights, or a random checkpoint written into `scratch`."""
    from guided_gradcam.zoo.networks import NETWORKS
    return MOBILENET_075 if weights == "real" else _random_checkpoint(NETWORKS[network], 1000,
                                                                      scratch)


def measure_network(network, weights, batch_sizes, results):
    from guided_gradcam.core.tf_startup import import_tensorflow_quietly
    import_tensorflow_quietly()
    from guided_gradcam import GuidedGradCam
    from guided_gradcam.zoo.networks import NETWORKS

    spec = NETWORKS[network]
    with tempfile.TemporaryDirectory() as scratch:
        prefix = MOBILENET_075 if weights == "real" else _random_checkpoint(spec, 1000, scratch)
        explainer = GuidedGradCam(network, checkpoint=prefix)
        session, images, logits, gradient = _floor_graph(spec, explainer.labels.num_logits,
                                                         explainer.checkpoint)
    rows = _table_rows(network, weights, batch_sizes, session, images, logits, gradient,
                       explainer)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    results.put((rows, peak_mib, _family_cost(explainer)))


def _imported_floor_graph(source):
    """The floor for an imported model: the very graph the explainer imports, placed without
    the override, forward + plain ∂(max score)/∂input in one run."""
    import tensorflow.compat.v1 as tf

    from guided_gradcam.explainer import session_config
    from guided_gradcam.core.heads import find_head

    graph = tf.Graph()
    with graph.as_default():
        height, width, channels = source.check_input_size()
        images = tf.placeholder(tf.uint8, [None, height, width, channels])
        net_input = source.preprocessing(tf.cast(images, tf.float32))
        placed = source.place(net_input)
        scores = find_head(placed.output).scores
        gradient = tf.gradients(tf.reduce_sum(tf.reduce_max(scores, axis=1)), net_input)[0]
        session = tf.Session(config=session_config())
        placed.restore(session)
    graph.finalize()
    return session, images, scores, gradient


def measure_keras_mobilenet(batch_sizes, results):
    """Keras 3 MobileNet V1 0.75 with the real weights, saved as .keras and imported."""
    import numpy as np

    from guided_gradcam.core.tf_startup import import_tensorflow_quietly
    import_tensorflow_quietly()
    from guided_gradcam import GuidedGradCam
    from guided_gradcam.zoo.keras_mobilenet import build_keras_mobilenet
    from guided_gradcam.core.tf_eager import eager

    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "mobilenet.keras")
        model = build_keras_mobilenet(TFJS_WEIGHTS)
        with eager():
            model.save(path)
        explainer = GuidedGradCam(path, preprocess="inception")
        frozen_source = explainer.source  # the loaded model, for the stock-Mul comparison
        session, images, scores, gradient = _imported_floor_graph(explainer.source)
    rows = _table_rows("keras .keras 0.75", "real", batch_sizes, session, images, scores,
                       gradient, explainer)
    rng = np.random.default_rng(1)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    # What the lean Mul gradient buys on Keras 3's frozen BatchNorm (conv · k): the same model
    # explained with TensorFlow's own Mul gradient, interleaved with the lean one.
    from guided_gradcam.core import lean_gradients
    lean_map = dict(lean_gradients.OVERRIDE_MAP)
    del lean_gradients.OVERRIDE_MAP["Mul"]
    try:
        stock_mul = GuidedGradCam(frozen_source)
    finally:
        lean_gradients.OVERRIDE_MAP.update(lean_map)
    batch = rng.integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    lean, stock = _interleaved_times([lambda: explainer.explain(batch),
                                      lambda: stock_mul.explain(batch)], 16)
    results.put((rows, peak_mib, _family_cost(explainer),
                 (statistics.median(lean), statistics.median(stock))))


def measure_keras_vit(batch_sizes, results):
    """The ViT-S/16-sized Keras model with random weights, in memory (frozen and imported)."""
    from guided_gradcam.core.tf_startup import import_tensorflow_quietly
    import_tensorflow_quietly()
    from guided_gradcam import GuidedGradCam
    from guided_gradcam.core.tf_eager import eager
    from guided_gradcam.zoo.tiny_vit import build_vit

    with eager():
        model = build_vit(**VIT_S16)
    explainer = GuidedGradCam(model, preprocess="unit")
    session, images, scores, gradient = _imported_floor_graph(explainer.source)
    rows = _table_rows("keras vit s16", "random", batch_sizes, session, images, scores,
                       gradient, explainer)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    results.put((rows, peak_mib, _family_cost(explainer)))


def measure_explain_only(batch_size, results):
    """explain-only ms/image of each repetition on the real MobileNet 0.75, for the folder rounds:
    their runs are compared with measurements taken minutes, not an hour, apart."""
    import numpy as np

    from guided_gradcam.core.tf_startup import import_tensorflow_quietly
    import_tensorflow_quietly()
    from guided_gradcam import GuidedGradCam

    with GuidedGradCam("mobilenet_v1_075", checkpoint=MOBILENET_075) as explainer:
        batch = np.random.default_rng(0).integers(0, 256, (batch_size, 224, 224, 3), np.uint8)
        explain, = _interleaved_times([lambda: explainer.explain(batch)], batch_size)
    results.put(explain)


def measure_evaluation_cost(batch_size, results):
    """Deletion + insertion of Grad-CAM, GBP and Guided Grad-CAM of one photo (224 px a step:
    6 curves of 225 points) against as many plain forward passes of ready inputs, both through
    forward() at the same batch size: what building the masked and blurred inputs adds."""
    import numpy as np

    from guided_gradcam.core.tf_startup import import_tensorflow_quietly
    import_tensorflow_quietly()
    from guided_gradcam import GuidedGradCam, load_photo
    from guided_gradcam.evaluation import deletion_insertion
    from guided_gradcam.evaluation.metrics.deletion import curve_scores
    from guided_gradcam.evaluation.runner import maps_of
    from guided_gradcam.evaluation.similarity import absolute

    with GuidedGradCam("mobilenet_v1_075", checkpoint=MOBILENET_075) as explainer:
        network_input, _ = explainer.fit(load_photo(os.path.join(REPO, "images", "cat.jpg")))
        explanation, = explainer.explain(network_input[None])
        net_input = explainer.network_inputs(network_input[None])[0]
        maps = maps_of(explanation)
        curves = [(deletion_insertion.pixel_order(absolute(maps[name])), mode, explanation.label)
                  for name in ("gradcam", "gbp", "guided_gradcam")
                  for mode in ("deletion", "insertion")]
        points = len(curves) * (224 * 224 // deletion_insertion.DEFAULT_STEP + 1)
        ready = np.repeat(net_input[None], batch_size, 0)
        sizes = [batch_size] * (points // batch_size) + ([points % batch_size]
                                                         if points % batch_size else [])

        def plain():
            for size in sizes:
                explainer.forward(ready[:size])

        def evaluation():
            curve_scores(explainer, net_input, curves, deletion_insertion.DEFAULT_STEP,
                         batch_size)
        plain_times, evaluation_times = _interleaved_times(
            [plain, evaluation], points, budget_s=20.0, max_reps=5, min_reps=3, warm_up=1)
    results.put((points, statistics.median(plain_times), statistics.median(evaluation_times)))


def _in_child(target, *args):
    """target(*args, queue) in a fresh spawned process; returns what it put on the queue."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=args + (queue,))
    child.start()
    result = queue.get()
    child.join()
    return result


def _run_child(command):
    """(wall seconds, peak RSS MiB, stderr text) of a child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        stderr.seek(0)
        text = stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status):
        raise SystemExit("benchmark child failed: %s\n%s" % (" ".join(command), text))
    return wall, usage.ru_maxrss / 1024.0, text


def _run_seconds(stderr):
    """The folder run's own time, from the CLI's last progress line (start-up left out)."""
    return float(re.findall(r"^progress: .* done in ([\d.]+) s$", stderr, re.MULTILINE)[-1])


def _generate_photos(folder, count, seed=0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    # Mixed sizes around ImageNet's typical 500x375, portrait and landscape, one large photo.
    sizes = [(500, 375), (375, 500), (640, 480), (500, 333), (400, 400), (1024, 768)]
    for index in range(count):
        width, height = sizes[index % len(sizes)]
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([(x * (index + 1)) % 256, (y * 3) % 256, ((x + y) // 2) % 256], -1)
        noise = rng.integers(0, 40, (height, width, 3))
        photo = np.clip(base + noise, 0, 255).astype(np.uint8)
        Image.fromarray(photo).save(os.path.join(folder, "photo_%04d.jpg" % index), quality=90)


def measure_folders(kinds, rounds=3, counts=(20, 200), batch_size=16):
    """Per round: (explain-only ms/image per repetition, {kind: {image count: (run s, peak RSS MiB)}}).

    A round measures explain-only, then a CLI run over 20 and over 200 generated photos per kind.
    The photos are generated once. Before each run the previous outputs are deleted and the page
    cache flushed, so no run pays for writing back another's files."""
    cli = [sys.executable, "inference.py", "--checkpoint", MOBILENET_075,
           "--batch_size", str(batch_size)]
    with tempfile.TemporaryDirectory() as scratch:
        folders = {count: os.path.join(scratch, "photos%d" % count) for count in counts}
        for count, folder in folders.items():
            os.makedirs(folder)
            _generate_photos(folder, count)
        output_dir = os.path.join(scratch, "out")
        measured = []
        for _ in range(rounds):
            explain_only = _in_child(measure_explain_only, batch_size)
            runs = {}
            for outputs in kinds:
                for count, folder in folders.items():
                    shutil.rmtree(output_dir, ignore_errors=True)
                    os.sync()
                    _, rss, stderr = _run_child(cli + [
                        "--outputs", outputs, "--image", folder, "--output_dir", output_dir])
                    runs.setdefault(outputs, {})[count] = (_run_seconds(stderr), rss)
            measured.append((explain_only, runs))
    return measured


BARE_SCRIPT = """
import numpy as np, tensorflow.compat.v1 as tf, tf_slim as slim
from guided_gradcam.zoo.slim_models import mobilenet_v1
tf.disable_eager_execution()
images = tf.placeholder(tf.float32, [None, 224, 224, 3])
with slim.arg_scope(mobilenet_v1.mobilenet_v1_arg_scope()):
    logits, _ = mobilenet_v1.mobilenet_v1(images, 1000, depth_multiplier=0.75)
with tf.Session() as session:
    tf.train.Saver().restore(session, %r)
    session.run(logits, {images: np.zeros((1, 224, 224, 3), np.float32)})
"""


def measure_startup(repetitions=4):
    """Fastest wall time of each command, run in turns."""
    prefix = os.path.join(MOBILENET_075, "mobilenet_v1_0.75_224.ckpt")
    bare = [sys.executable, "-c", BARE_SCRIPT % prefix]
    with tempfile.TemporaryDirectory() as scratch:
        cli = [sys.executable, "inference.py", "--image", "images/cat.jpg", "--label", "282",
               "--checkpoint", MOBILENET_075, "--output_dir", scratch]
        walls = {"bare": [], "cli": []}
        for _ in range(repetitions):
            for name, command in (("bare", bare), ("cli", cli)):
                walls[name].append(_run_child(command)[0])
    return {name: min(times) for name, times in walls.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(name for name, _ in CONFIGS))
    parser.add_argument("--batch_sizes", default="1,8,32")
    args = parser.parse_args()
    assert os.path.exists(MOBILENET_075), "run `make checkpoint` first"
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    print("machine: %s, %d cores, Python %s" % (platform.machine(), os.cpu_count(), platform.python_version()))
    print("%-17s %-6s %5s %10s %10s %11s %7s %9s" % (
        "network", "weights", "batch", "(a) fwd", "(b) floor", "(c) explain", "(c)/(b)", "peak RSS"))
    explain_at_16 = None
    for network, weights in CONFIGS:
        if network not in args.networks.split(","):
            continue
        if network == "keras_mobilenet_075":
            rows, peak, family, lean_mul = _in_child(measure_keras_mobilenet, KERAS_BATCH_SIZES)
        elif network == "keras_vit_s16":
            rows, peak, family = _in_child(measure_keras_vit, (16,))
        else:
            sizes = sorted(set(batch_sizes) | ({16} if network == "mobilenet_v1_075" else set()))
            rows, peak, family = _in_child(measure_network, network, weights, sizes)
        for name, kind, batch, forward, floor, explain in rows:
            print("%-17s %-6s %5d %7.1f ms %7.1f ms %8.1f ms %7.3f %6.0f MiB" % (
                name, kind, batch, forward, floor, explain, explain / floor, peak))
            if name == "mobilenet_v1_075" and batch == 16:
                explain_at_16, floor_at_16 = explain, floor
        print("  (%s, batch 16: explain with all five CAM methods %.1f ms/image, Grad-CAM alone "
              "%.1f ms/image = %.3f)" % (rows[0][0], family[1], family[0], family[1] / family[0]))
        if network == "keras_mobilenet_075":
            print("  (keras, batch 16: explain %.1f ms with the lean Mul gradient that folds Keras "
                  "3's frozen BatchNorm into the conv, %.1f ms with TF's own = %.3f)"
                  % (lean_mul + (lean_mul[0] / lean_mul[1],)))
        sys.stdout.flush()

    if explain_at_16 is not None:
        # A folder run is one long measurement, and this machine's drifts only ever add time:
        # each side is its fastest of three rounds (a round: explain-only, then the folder runs).
        kinds = ("png,npz,panel", "png,npz", "npz")
        rounds = measure_folders(kinds)
        explain_best = min(min(explain) for explain, _ in rounds)
        print("\nfolder runs, batch 16, fastest of 3 rounds, against explain-only's fastest "
              "repetition in those rounds (%.1f ms/image):" % explain_best)
        for outputs in kinds:
            # Each run's own time (start-up left out); the difference of the 200- and 20-image
            # runs also leaves out the first batch's warm-up and the last writes: the steady cost.
            fastest = {count: min(runs[outputs][count][0] for _, runs in rounds)
                       for count in (20, 200)}
            per_image = 1000.0 * (fastest[200] - fastest[20]) / 180
            rounds_ratio = statistics.median(
                1000.0 * (runs[outputs][200][0] - runs[outputs][20][0]) / 180
                / statistics.median(explain) for explain, runs in rounds)
            rss20 = max(runs[outputs][20][1] for _, runs in rounds)
            rss200 = max(runs[outputs][200][1] for _, runs in rounds)
            print("  --outputs %-13s %5.1f ms/image end to end (decode, explain, render, write) = "
                  "%.2fx explain-only (median round %.2fx); peak RSS 200 images %.0f MiB vs 20 "
                  "images %.0f MiB = %.3fx" % (outputs + ":", per_image, per_image / explain_best,
                                              rounds_ratio, rss200, rss20, rss200 / rss20))
        # The peers' numbers come from another run on this kind of machine, whose speed drifts
        # by tens of percent: besides the plain quotients (the table's explain, and explain-only
        # in each folder round), scale their pair by the floor measured in both runs (the pair
        # cost 15.2 / 7.6 = 2.0 floors on theirs).
        medians = [statistics.median(explain) for explain, _ in rounds]
        print("\nmobilenet_v1_075, batch 16, vs xplique GradCAM + GuidedBackprop (peers: 15.2 "
              "ms/image, their floor 7.6 ms/image):\n  explain %.1f ms/image (table): %.2fx faster "
              "as measured; %.2fx faster floor for floor ((15.2 / 7.6) / ((c)/(b)), (b) = %.1f ms "
              "here)\n  explain-only in the folder rounds %s ms/image: %s faster as measured"
              % (explain_at_16, XPLIQUE_PAIR_MS / explain_at_16,
                 XPLIQUE_PAIR_MS / PEER_FLOOR_MS * floor_at_16 / explain_at_16, floor_at_16,
                 ", ".join("%.1f" % m for m in medians),
                 ", ".join("%.2fx" % (XPLIQUE_PAIR_MS / m) for m in medians)))
    print("\ngradient-free CAMs (%s):" % gradient_free.__doc__.splitlines()[0].strip("`"))
    for network, weights in CONFIGS:
        if network in args.networks.split(",") and network not in KERAS_ROWS:
            gradient_free.print_rows(network, _in_child(
                gradient_free.measure, network, weights, _checkpoint_of, _interleaved_times))
            sys.stdout.flush()
    points, plain, evaluation = _in_child(measure_evaluation_cost, 16)
    print("evaluation, mobilenet_v1_075, batch 16: deletion + insertion of Grad-CAM, GBP and "
          "Guided Grad-CAM (%d forward passes) %.2f ms/pass vs %d plain forward passes %.2f "
          "ms/pass = %.3fx" % (points, evaluation, points, plain, evaluation / plain))
    startup = measure_startup()
    print("start-up, fastest of 4 each: one-image CLI run %.2f s vs bare import+build+restore+"
          "forward %.2f s = %.2fx"
          % (startup["cli"], startup["bare"], startup["cli"] / startup["bare"]))


if __name__ == "__main__":
    main()
