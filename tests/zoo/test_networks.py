"""The real checkpoint path end to end: download → verify → unpack → restore → explain.

The official archives cannot be fetched here, so the module fixture builds MobileNet V1 (1001
classes, background at logit 0), ResNet V1 50 and VGG-16 (1000 classes) with random weights, saves
them with `tf.train.Saver` (official variable names come from the slim definitions) and packs each
like its official archive: MobileNet as a V2 checkpoint under `./` in
`mobilenet_v1_2018_08_02/mobilenet_v1_1.0_224.tgz`, ResNet and VGG as single-file V1 checkpoints
(`resnet_v1_50.ckpt`, `vgg_16.ckpt`) at the top of `<name>_2016_08_28.tar.gz`. A local HTTP server
plays download.tensorflow.org through GUIDED_GRADCAM_MODELS_URL.
"""
import functools
import http.server
import io
import os
import re
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from guided_gradcam.zoo.convert_tfjs import file_sha256
from guided_gradcam.errors import CheckpointError, GuidedGradCamError
from guided_gradcam.explainer import GuidedGradCam
from guided_gradcam.zoo.networks import MIRROR_ENV, NETWORKS

REPO = Path(__file__).resolve().parents[2]
CAT = REPO / "images" / "cat.jpg"
SEED = 1234
# name: (number of logits, saved checkpoint format, Grad-CAM layer resolution at 224x224)
NETWORK_CASES = {
    "mobilenet_v1": (1001, tf.train.SaverDef.V2, (7, 7)),  # Conv2d_13_pointwise
    "resnet_v1_50": (1000, tf.train.SaverDef.V1, (7, 7)),  # block4
    "vgg_16": (1000, tf.train.SaverDef.V1, (14, 14)),  # conv5/conv5_3, before pool5
}
# Official archives hold a few more files beside the checkpoint; the unpacker must not mind.
EXTRA_FILES = {"mobilenet_v1": {"./mobilenet_v1_1.0_224_info.txt": b"Model: mobilenet_v1_1.0_224\n"}}


def _randomise(session, variables, rng):
    """Gives BatchNorm statistics, gammas, betas and biases (initialised to constants) random values,
    so a variable restored from the wrong place or not at all changes the logits."""
    for variable in variables:
        name, shape = variable.op.name, variable.shape.as_list()
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("beta", "moving_mean")):
            value = rng.normal(0.0, 0.1, shape)
        elif name.endswith("biases"):
            value = rng.normal(0.0, 0.01, shape)
        else:
            continue
        variable.load(value.astype(np.float32), session)


def _save_random_network(name, folder, inputs):
    """Builds `name` with random weights, saves it into folder; returns (prefix, logits of inputs)."""
    spec = NETWORKS[name]
    num_classes, write_version, _ = NETWORK_CASES[name]
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(SEED)
        images = tf.placeholder(tf.uint8, [None, 224, 224, 3])
        logits, _ = spec.build(spec.preprocess(tf.cast(images, tf.float32)), num_classes)
        saver = tf.train.Saver(write_version=write_version)
        with tf.Session(graph=graph) as session:
            session.run(tf.global_variables_initializer())
            _randomise(session, tf.global_variables(), np.random.RandomState(SEED))
            values = session.run(logits, {images: inputs})
            prefix = saver.save(session, str(folder / spec.checkpoint_name),
                                write_meta_graph=False, write_state=False)
    assert values.shape == (len(inputs), num_classes) and np.isfinite(values).all()
    assert np.ptp(values) > 0, "random %s gives constant logits: a useless test network" % name
    return prefix, values


def _pack(name, prefix, root):
    """Writes root/<spec.archive> laid out like the official archive; returns its path."""
    spec = NETWORKS[name]
    archive = root / spec.archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(prefix).parent
    members = sorted(p.name for p in folder.iterdir() if p.name.startswith(spec.checkpoint_name))
    assert members, folder
    # Random float32 weights barely compress: level 0 (stored gzip blocks) keeps VGG's ~550 MB
    # fast; the smaller archives go through real deflate.
    level = 0 if name == "vgg_16" else 1
    dot = "./" if name.startswith("mobilenet") else ""  # the official .tgz lists ./<file>
    with tarfile.open(archive, "w:gz", compresslevel=level) as tar:
        for member in members:
            tar.add(folder / member, arcname=dot + member)
        for arcname, data in EXTRA_FILES.get(name, {}).items():
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = None  # a list, set per server: the paths asked for

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()






def _one_line_error(excinfo, *needles):
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message, repr(message)
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The three archives (and a truncated ResNet one under /truncated) on a local HTTP server."""
    root = tmp_path_factory.mktemp("served")
    inputs = np.random.RandomState(SEED).randint(0, 256, (2, 224, 224, 3)).astype(np.uint8)
    saved, archives = {}, {}
    for name in NETWORK_CASES:
        folder = tmp_path_factory.mktemp("saved_" + name)
        saved[name] = _save_random_network(name, folder, inputs)
        archives[name] = _pack(name, saved[name][0], root)
    truncated = root / "truncated" / NETWORKS["resnet_v1_50"].archive
    truncated.parent.mkdir()
    data = archives["resnet_v1_50"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    requests = []
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(
            url="http://127.0.0.1:%d" % server.server_address[1], root=root, inputs=inputs,
            prefixes={n: p for n, (p, _) in saved.items()},
            logits={n: v for n, (_, v) in saved.items()}, archives=archives, requests=requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def downloaded(served, tmp_path_factory):
    """Each network through the whole API once: GuidedGradCam downloads, unpacks, restores, explains."""
    checkpoints_dir = tmp_path_factory.mktemp("checkpoints")
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MIRROR_ENV, served.url)
        for name in NETWORK_CASES:
            progress = io.StringIO()
            before = len(served.requests)
            explainer = GuidedGradCam(name, checkpoints_dir=str(checkpoints_dir), progress=progress)
            try:
                results[name] = SimpleNamespace(
                    checkpoint=explainer.checkpoint, offset=explainer.labels.offset,
                    input_size=explainer.input_size, layer=explainer.layer,
                    progress=progress.getvalue(), requests=served.requests[before:],
                    top1=explainer.explain(served.inputs),
                    tiger_cat=explainer.explain(served.inputs, labels=[282, 282]))
            finally:
                explainer.close()
    return SimpleNamespace(dir=checkpoints_dir, results=results)


@pytest.mark.parametrize("name", list(NETWORK_CASES))
def test_download_unpacks_the_archive_into_the_network_folder(name, served, downloaded):
    spec, result = NETWORKS[name], downloaded.results[name]
    folder = downloaded.dir / name
    assert result.checkpoint == str(folder / spec.checkpoint_name)
    assert result.requests == ["/" + spec.archive]  # one GET, at the official relative path
    assert "(100%)" in result.progress and result.progress.endswith("\n")
    url = "%s/%s" % (served.url, spec.archive)
    assert (folder / "SOURCE").read_text().strip() == url
    archive_name = spec.archive.rsplit("/", 1)[-1]
    assert (folder / (archive_name + ".sha256")).read_text() == "%s  %s\n" % (
        file_sha256(served.archives[name]), archive_name)
    for arcname, data in EXTRA_FILES.get(name, {}).items():
        assert (folder / arcname).read_bytes() == data
    # Only the finished per-network folders: no temporary archive or unpack folder left behind.
    assert sorted(p.name for p in downloaded.dir.iterdir()) == sorted(NETWORK_CASES)


@pytest.mark.parametrize("name", list(NETWORK_CASES))
def test_restored_weights_equal_the_saved_ones(name, served, downloaded):
    spec, result = NETWORKS[name], downloaded.results[name]
    saved = tf.train.load_checkpoint(served.prefixes[name])
    unpacked = tf.train.load_checkpoint(result.checkpoint)
    shapes = saved.get_variable_to_shape_map()
    assert unpacked.get_variable_to_shape_map() == shapes
    first_weights = sorted(n for n in shapes if n.endswith("weights"))[0]
    variances = sorted(n for n in shapes if n.endswith("moving_variance"))
    for variable in [spec.logits_variable, first_weights] + variances[:1]:
        np.testing.assert_array_equal(unpacked.get_tensor(variable), saved.get_tensor(variable))
    assert shapes[spec.logits_variable][-1] == NETWORK_CASES[name][0]

    # The restored graph computes the saving graph's logits (background dropped for MobileNet).
    expected = served.logits[name][:, result.offset:]
    scale = np.abs(expected).max()
    for explanations in (result.top1, result.tiger_cat):
        logits = np.stack([e.logits for e in explanations])
        np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5 * scale)
    top1 = [e.label for e in result.top1]
    assert top1 == list(np.argmax(expected, axis=1))


@pytest.mark.parametrize("name", list(NETWORK_CASES))
def test_explain_returns_maps_of_the_right_shapes(name, downloaded):
    result = downloaded.results[name]
    assert result.input_size == (224, 224)
    assert result.layer == NETWORKS[name].default_layer
    for explanation in result.top1 + result.tiger_cat:
        assert explanation.cam_lowres.shape == NETWORK_CASES[name][2]
        assert explanation.cam.shape == (224, 224)
        assert explanation.gbp.shape == explanation.guided_gradcam.shape == (224, 224, 3)
        assert explanation.logits.shape == explanation.probabilities.shape == (1000,)
        for array in (explanation.cam_lowres, explanation.cam, explanation.gbp):
            assert np.isfinite(array).all()
        assert 0.0 <= explanation.cam.min() and explanation.cam.max() <= 1.0 + 1e-6
        assert np.abs(explanation.gbp).max() > 0
    assert [e.label for e in result.tiger_cat] == [282, 282]


def test_mobilenet_background_logit_is_hidden(served, downloaded):
    result = downloaded.results["mobilenet_v1"]
    graph_logits = served.logits["mobilenet_v1"]
    assert graph_logits.shape[1] == 1001 and result.offset == 1
    for b, explanation in enumerate(result.tiger_cat):
        assert explanation.label == 282 and len(explanation.logits) == 1000
        # ImageNet class 282 is the graph's logit 283.
        np.testing.assert_allclose(explanation.logits[282], graph_logits[b, 283], rtol=1e-5)
        assert not np.isclose(explanation.logits[282], graph_logits[b, 282], rtol=1e-5, atol=0)
    # The background keeps its share of the softmax: the 1000 probabilities sum to less than 1.
    shifted = graph_logits - graph_logits.max(axis=1, keepdims=True)
    background = np.exp(shifted[:, 0]) / np.exp(shifted).sum(axis=1)
    sums = np.array([e.probabilities.sum() for e in result.top1])
    np.testing.assert_allclose(sums, 1.0 - background, rtol=1e-5)


def test_second_explainer_reuses_the_downloaded_checkpoint(served, downloaded, monkeypatch, closed_port_url):
    monkeypatch.setenv(MIRROR_ENV, closed_port_url)  # any fetch would fail
    before = len(served.requests)
    progress = io.StringIO()
    with GuidedGradCam("mobilenet_v1", checkpoints_dir=str(downloaded.dir), progress=progress) as explainer:
        assert explainer.checkpoint == downloaded.results["mobilenet_v1"].checkpoint
        logits = np.stack([e.logits for e in explainer.explain(served.inputs)])
    assert progress.getvalue() == ""
    assert served.requests[before:] == []
    np.testing.assert_allclose(logits, served.logits["mobilenet_v1"][:, 1:], rtol=1e-4, atol=1e-5)


def test_checkpoint_of_another_network_is_refused(downloaded, monkeypatch, closed_port_url):
    monkeypatch.setenv(MIRROR_ENV, closed_port_url)
    resnet_50 = downloaded.results["resnet_v1_50"].checkpoint
    with pytest.raises(CheckpointError) as excinfo:
        GuidedGradCam("vgg_16", checkpoint=resnet_50, progress=None)
    _one_line_error(excinfo, resnet_50, "vgg_16", "vgg_16/fc8/weights")
    with pytest.raises(CheckpointError) as excinfo:
        GuidedGradCam("resnet_v1_101", checkpoint=resnet_50, progress=None)
    _one_line_error(excinfo, "resnet_v1_101/logits/weights")


def test_resnet_50_weights_under_101_names_report_the_missing_units(downloaded, tmp_path):
    """Even with the scope renamed, ResNet-50's 6 block3 units cannot fill ResNet-101's 23."""
    reader = tf.train.load_checkpoint(downloaded.results["resnet_v1_50"].checkpoint)
    prefix = tmp_path / "renamed.ckpt"
    with tf.Graph().as_default() as graph:
        variables, values = {}, {}
        for name in reader.get_variable_to_shape_map():
            renamed = name.replace("resnet_v1_50/", "resnet_v1_101/", 1)
            values[renamed] = reader.get_tensor(name)
            variables[renamed] = tf.get_variable(
                renamed, values[renamed].shape, initializer=tf.zeros_initializer())
        with tf.Session(graph=graph) as session:
            session.run(tf.global_variables_initializer())
            for renamed, variable in variables.items():
                variable.load(values[renamed], session)
            tf.train.Saver(variables).save(session, str(prefix), write_meta_graph=False,
                                           write_state=False)
    with pytest.raises(CheckpointError) as excinfo:
        GuidedGradCam("resnet_v1_101", checkpoint=str(prefix), progress=None)
    message = _one_line_error(excinfo, "missing", "resnet_v1_101/block3/unit_7/")
    # 17 extra units of 3 convs, each with weights and 4 BatchNorm variables.
    assert "%d of its variables are missing" % (17 * 3 * 5) in message


def test_cli_refuses_a_checkpoint_of_another_network(downloaded, tmp_path, closed_port_url):
    output_dir = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "GUIDED_GRADCAM_TF_LOGS"}
    env[MIRROR_ENV] = closed_port_url
    completed = subprocess.run(
        [sys.executable, "inference.py", "--network", "vgg_16",
         "--checkpoint", downloaded.results["resnet_v1_50"].checkpoint,
         "--image", str(CAT), "--output_dir", str(output_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr, completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, completed.stderr
    assert "vgg_16/fc8/weights" in errors[0]
    assert re.sub(r"^[IWEF]\d{4} .*\n?", "", completed.stderr, flags=re.MULTILINE).strip() == errors[0], \
        completed.stderr
    assert not output_dir.exists() or list(output_dir.iterdir()) == []


def test_truncated_download_leaves_nothing_behind(served, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, served.url + "/truncated")
    checkpoints_dir = tmp_path / "checkpoints"
    before = len(served.requests)
    with pytest.raises(CheckpointError) as excinfo:
        GuidedGradCam("resnet_v1_50", checkpoints_dir=str(checkpoints_dir), progress=io.StringIO())
    _one_line_error(excinfo, "truncated", "/truncated/" + NETWORKS["resnet_v1_50"].archive)
    assert served.requests[before:] == ["/truncated/" + NETWORKS["resnet_v1_50"].archive]
    assert not (checkpoints_dir / "resnet_v1_50").exists()
    assert not checkpoints_dir.exists() or list(checkpoints_dir.iterdir()) == []


def test_resnet_explains_another_input_size(downloaded, monkeypatch, closed_port_url):
    monkeypatch.setenv(MIRROR_ENV, closed_port_url)
    image = np.random.RandomState(SEED + 1).randint(0, 256, (1, 320, 256, 3)).astype(np.uint8)
    with GuidedGradCam("resnet_v1_50", checkpoints_dir=str(downloaded.dir), input_size=(320, 256),
                       progress=None) as explainer:
        assert explainer.input_size == (320, 256)
        explanation, = explainer.explain(image, labels=282)
    assert explanation.label == 282
    assert explanation.cam.shape == (320, 256)
    assert explanation.cam_lowres.shape == (10, 8)
    assert explanation.gbp.shape == explanation.guided_gradcam.shape == (320, 256, 3)
    assert np.isfinite(explanation.logits).all() and np.isfinite(explanation.cam).all()


def test_vgg_refuses_another_input_size_before_downloading(served, tmp_path, monkeypatch, closed_port_url):
    monkeypatch.setenv(MIRROR_ENV, closed_port_url)
    checkpoints_dir = tmp_path / "checkpoints"
    before = len(served.requests)
    with pytest.raises(GuidedGradCamError) as excinfo:
        GuidedGradCam("vgg_16", checkpoints_dir=str(checkpoints_dir), input_size=(300, 300),
                      progress=io.StringIO())
    assert not isinstance(excinfo.value, CheckpointError), excinfo.value
    _one_line_error(excinfo, "224x224", "300x300")
    assert not checkpoints_dir.exists()
    assert served.requests[before:] == []
