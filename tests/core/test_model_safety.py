"""A model file is a program (`model_safety`): hostile models, built here, are refused before
anything of them runs, with one line and exit code 1; `--trust_model` runs them.

- a SavedModel whose output depends (a control edge) on `tf.io.write_file`, and the same
  function frozen to a `.pb`: the target file must not exist after the refused run;
- a TF 1 `.meta` graph that reads a file into its logits: the path does not exist, so a read
  would fail with NotFound instead of the refusal; trusted, it reads a file that exists;
- a `.meta` whose saved restore op carries a WriteFile, or a RestoreV2 of another file, as a
  control input;
- a tf-keras `.h5` and a Keras 3 `.keras` with a `Lambda` whose code creates a marker file when
  it runs (a layer call, which loading does): the marker must not exist after the refused run;
- a SavedModel whose lookup table initialiser reads a vocabulary file when loaded; an
  in-memory Keras model calling `tf.numpy_function`.

The CLI runs are subprocesses, started two at a time in the module fixture `runs`; a trusted
run of a model starts only once the refused run of that model is over (they touch the same
file). The ordinary models of the other test modules pass the allow-list.
"""
import concurrent.futures
import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf2
import tensorflow.compat.v1 as tf
import tf_keras
from PIL import Image

from conftest import run_cli
from guided_gradcam import GuidedGradCam
from guided_gradcam.core import model_safety
from guided_gradcam.errors import GuidedGradCamError
from guided_gradcam.core.model_safety import UntrustedModelError
from guided_gradcam.core.tf_eager import eager

SIZE = 16
HINT = "a model file is a program; pass --trust_model to run it anyway"
KERNEL = np.random.default_rng(0).normal(0.0, 0.3, (3, 3, 3, 4)).astype(np.float32)


# --- hostile models -------------------------------------------------------------------------

def _writing_function(target):
    """Softmax scores of a small conv net whose output waits for writing `target`."""
    @tf2.function(input_signature=[tf2.TensorSpec([None, SIZE, SIZE, 3], tf2.float32)])
    def scores(x):
        features = tf2.nn.relu(tf2.nn.conv2d(x, tf2.constant(KERNEL), 1, "SAME"))
        write = tf2.io.write_file(target, "written by the model")
        with tf2.control_dependencies([write]):
            return tf2.nn.softmax(tf2.reduce_mean(features, axis=[1, 2]))
    return scores


def write_writer_saved_model(folder, target):
    with eager():
        module = tf2.Module()
        module.scores = _writing_function(str(target))
        tf2.saved_model.save(module, str(folder / "writer_saved_model"),
                             signatures=module.scores)
    return folder / "writer_saved_model"


def write_writer_pb(folder, target):
    """The same function, frozen to a GraphDef: WriteFile is a control input of the output."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    with eager():
        frozen = convert_variables_to_constants_v2(
            _writing_function(str(target)).get_concrete_function())
        graph_def = frozen.graph.as_graph_def()
    assert "WriteFile" in {node.op for node in graph_def.node}
    (folder / "writer.pb").write_bytes(graph_def.SerializeToString())
    return folder / "writer.pb"


def _tf1_scores(images):
    """Logits of a conv layer and a dense one, with variables (restored from a checkpoint)."""
    kernel = tf.get_variable("conv/kernel", initializer=KERNEL)
    weights = tf.get_variable("logits/weights", [4, 3])
    net = tf.nn.relu(tf.nn.conv2d(images, kernel, 1, "SAME"), name="conv/relu")
    return tf.matmul(tf.reduce_mean(net, axis=[1, 2]), weights, name="logits/matmul")


def write_reader_meta(folder, secret):
    """A TF 1 graph whose logits depend on the contents of the file `secret_path` names
    (default `secret`): + 0 · [contents == ""], all allowed ops but ReadFile."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="input")
        path = tf.placeholder_with_default(str(secret), [], name="secret_path")
        empty = tf.cast(tf.equal(tf.io.read_file(path), ""), tf.float32)
        tf.identity(_tf1_scores(images) + 0.0 * empty, name="scores")
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            tf.train.Saver().save(session, str(folder / "reader"))
    return folder / "reader.meta"


def write_hostile_restore_meta(folder, target, other_checkpoint):
    """An ordinary TF 1 graph and checkpoint whose saved restore op also waits for a WriteFile
    of `target` and for a RestoreV2 of `other_checkpoint`: (meta path, its nodes' op types)."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="input")
        tf.identity(_tf1_scores(images), name="scores")
        write = tf.io.write_file(str(target), "written by the restore")
        steal = tf.raw_ops.RestoreV2(prefix=str(other_checkpoint), tensor_names=["secret"],
                                     shape_and_slices=[""], dtypes=[tf.float32])
        saver = tf.train.Saver()
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            saver.save(session, str(folder / "restore"))
        meta = saver.export_meta_graph()
    restore = next(node for node in meta.graph_def.node
                   if node.name == meta.saver_def.restore_op_name)
    restore.input.extend(["^" + write.name, "^" + steal[0].op.name])
    (folder / "restore.meta").write_bytes(meta.SerializeToString())
    return folder / "restore.meta"


def _lambda(marker):
    """A lambda that creates `marker` each time it runs (it is traced when a model is built or
    loaded), stored in the file as bytecode."""
    return eval("lambda x: (open(%r, 'a').close(), x * 2.0)[1]" % str(marker))


def _lambda_model(library, marker):
    layers = library.layers
    inputs = library.Input((SIZE, SIZE, 3))
    hidden = layers.Lambda(_lambda(marker), name="double")(inputs)
    hidden = layers.Conv2D(4, 3, activation="relu", name="conv")(hidden)
    outputs = layers.Dense(3, activation="softmax", name="scores")(
        layers.GlobalAveragePooling2D(name="pool")(hidden))
    return library.Model(inputs, outputs)


def write_lambda_models(folder, h5_marker, keras_marker):
    """A tf-keras `.h5` and a Keras 3 `.keras` with a Lambda layer; building them ran the
    lambdas, so their markers are removed here."""
    with eager():
        _lambda_model(tf_keras, h5_marker).save(str(folder / "lambda.h5"))
        _lambda_model(keras, keras_marker).save(folder / "lambda.keras")
    for marker in (h5_marker, keras_marker):
        marker.unlink(missing_ok=True)
    return folder / "lambda.h5", folder / "lambda.keras"


# --- the CLI runs ---------------------------------------------------------------------------

class Runs(dict):
    """name → future; indexing waits for that run and gives its CompletedProcess."""

    def __getitem__(self, name):
        return super().__getitem__(name).result()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("model_safety")
    folder = base / "models"
    folder.mkdir()
    paths = dict(base=base, targets=base / "targets")
    paths["targets"].mkdir()
    target = {name: paths["targets"] / name for name in (
        "saved_model_wrote", "pb_wrote", "restore_wrote", "h5_lambda_ran", "keras_lambda_ran")}
    paths["target"] = target
    paths["secret"] = paths["targets"] / "no_such_secret.txt"  # never created
    image = base / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), np.uint8)).save(
        image)
    paths["image"] = image
    paths["saved_model"] = write_writer_saved_model(folder, target["saved_model_wrote"])
    paths["pb"] = write_writer_pb(folder, target["pb_wrote"])
    paths["meta"] = write_reader_meta(folder, paths["secret"])
    paths["h5"], paths["keras"] = write_lambda_models(folder, target["h5_lambda_ran"],
                                                      target["keras_lambda_ran"])
    return paths


@pytest.fixture(scope="module")
def runs(models):
    base, image = models["base"], models["image"]
    meta = ["--input", "input:0", "--output", "scores", "--preprocess", "unit"]
    commands = {
        "saved_model": ["--model", models["saved_model"]],
        "pb": ["--model", models["pb"]],
        "meta": ["--model", models["meta"], *meta],
        "h5": ["--model", models["h5"]],
        "keras": ["--model", models["keras"]],
    }
    trusted = ("saved_model", "h5")  # each after its refused run: they touch the same file
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = Runs()

        def after(name, args, output_dir):
            futures[name]  # waits for the refused run
            return run_cli(args, output_dir)

        for name, args in commands.items():
            futures[name] = pool.submit(run_cli, [*args, "--image", image], base / name)
        for name in trusted:
            futures[name + "_trusted"] = pool.submit(
                after, name, [*commands[name], "--trust_model", "--image", image,
                              "--outputs", "npz"], base / (name + "_trusted"))
        yield futures


def _one_error_line(run):
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert len(lines[0]) <= 300, lines[0]
    assert run.stdout == ""  # no run header, no image result
    assert not run.output_dir.exists() or not list(run.output_dir.iterdir())
    return lines[0]


@pytest.mark.parametrize("name, refused, target", [
    ("saved_model", "would run WriteFile ×1: ", "saved_model_wrote"),
    ("pb", "writer.pb would run WriteFile ×1: ", "pb_wrote"),
    ("meta", "reader.meta would run ReadFile ×1: ", None),
    ("h5", "lambda.h5 would run the Python code stored in its layer double (Lambda): ",
     "h5_lambda_ran"),
    ("keras", "lambda.keras would run the Python code stored in its layer double (Lambda): ",
     "keras_lambda_ran"),
])
def test_hostile_model_is_refused_in_one_line_before_it_runs(runs, models, name, refused,
                                                               target):
    line = _one_error_line(runs[name])
    print(line)
    assert refused in line and line.endswith(": " + HINT), line
    if target is not None:  # nothing was written: the model's write, or its Lambda, never ran
        assert not models["target"][target].exists(), line
    assert not models["secret"].exists()
    assert "NotFound" not in line and "no_such_secret" not in line  # the read never happened


@pytest.mark.parametrize("name, target", [("saved_model", "saved_model_wrote"),
                                          ("h5", "h5_lambda_ran")])
def test_trusted_hostile_model_runs_and_says_so_first(runs, models, name, target):
    run = runs[name + "_trusted"]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    first = run.stdout.splitlines()[0]
    assert first.startswith("model ") and "is trusted (--trust_model)" in first, run.stdout
    assert models["target"][target].exists()  # what it does besides computing, it did
    assert (run.output_dir / "photo.npz").exists()


def test_trusted_frozen_graph_runs_its_write(runs, models):
    runs["pb"]  # the refused run is over: this one writes the same file
    images = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    with GuidedGradCam(str(models["pb"]), preprocess="unit", trust_model=True) as explainer:
        assert explainer.trust_model
        explainer.explain(images)
    assert models["target"]["pb_wrote"].read_text() == "written by the model"


def test_trusted_meta_graph_reads_its_file(runs, models):
    runs["meta"]
    secret = models["base"] / "secret.txt"
    secret.write_text("x")
    with GuidedGradCam(str(models["meta"]), input="input:0", output="scores", preprocess="unit",
                       feeds={"secret_path": str(secret)}, trust_model=True) as explainer:
        explanation, = explainer.explain(np.zeros((1, SIZE, SIZE, 3), np.uint8))
    assert np.isfinite(explanation.logits).all()


def test_trusted_keras_lambda_is_loaded_in_unsafe_mode(runs, models):
    runs["keras"]
    with GuidedGradCam(str(models["keras"]), trust_model=True) as explainer:
        explainer.explain(np.zeros((1, SIZE, SIZE, 3), np.uint8))
    assert models["target"]["keras_lambda_ran"].exists()


# --- in process: no loader runs before the refusal -----------------------------------------

def _refuse_if_called(*args, **kwargs):
    raise AssertionError("a loader ran before the check")


def test_keras_files_are_refused_before_any_loader(models, monkeypatch):
    for library in (keras, tf_keras):
        monkeypatch.setattr(library.models, "load_model", _refuse_if_called)
    for suffix in ("h5", "keras"):
        with pytest.raises(UntrustedModelError, match=r"layer double \(Lambda\)"):
            GuidedGradCam(str(models[suffix]))


def test_saved_model_is_refused_before_tf_saved_model_load(models, monkeypatch):
    monkeypatch.setattr(tf2.saved_model, "load", _refuse_if_called)
    with pytest.raises(UntrustedModelError, match="would run WriteFile ×1"):
        GuidedGradCam(str(models["saved_model"]))


def test_meta_graph_restore_is_checked(tmp_path):
    """The restore op's control inputs: a WriteFile, and a RestoreV2 of another checkpoint
    (reading the named checkpoint is the one file access allowed)."""
    target = tmp_path / "restore_wrote"
    meta = write_hostile_restore_meta(tmp_path, target, tmp_path / "other")
    with pytest.raises(UntrustedModelError) as raised:
        GuidedGradCam(str(meta), input="input:0", output="scores")
    message = str(raised.value)
    assert "restore.meta would run WriteFile ×1, RestoreV2 ×1: " + HINT in message, message
    assert not target.exists()


def test_saved_model_initialisers_are_checked(tmp_path):
    """A lookup table whose initialiser reads a vocabulary file when the SavedModel loads."""
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("cat\ndog\n")
    with eager():
        module = tf2.Module()
        module.table = tf2.lookup.StaticHashTable(
            tf2.lookup.TextFileInitializer(
                str(vocabulary), tf2.string, tf2.lookup.TextFileIndex.WHOLE_LINE, tf2.int64,
                tf2.lookup.TextFileIndex.LINE_NUMBER), -1)
        module.scores = _writing_function(str(tmp_path / "unused"))
        tf2.saved_model.save(module, str(tmp_path / "table"))
    refused = model_safety.saved_model_refusals(
        model_safety.read_saved_model_proto(str(tmp_path / "table")))
    assert "InitializeTableFromTextFileV2" in refused, refused


def test_numpy_function_in_a_keras_model_is_refused_unless_trusted():
    class Python(keras.layers.Layer):
        """x + 0 · mean(numpy(x)): Python runs on every call; the gradient takes the x path."""
        def call(self, x):
            called = tf2.numpy_function(lambda a: a.mean(dtype=np.float32), [x], tf2.float32)
            return x + 0.0 * tf2.ensure_shape(called, [])

    with eager():
        inputs = keras.Input((SIZE, SIZE, 3))
        hidden = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(Python()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
            keras.layers.GlobalAveragePooling2D()(hidden)))
    with pytest.raises(UntrustedModelError, match=r"would run PyFunc ×1: "):
        GuidedGradCam(model)
    with GuidedGradCam(model, trust_model=True) as explainer:
        explanation, = explainer.explain(np.zeros((1, SIZE, SIZE, 3), np.uint8))
    assert np.isfinite(explanation.logits).all()


def test_library_messages_are_one_short_sentence(tmp_path):
    """A `.keras` naming a class no library has: both loaders answer with the whole config;
    the error keeps their first sentences."""
    with eager():
        inputs = keras.Input((SIZE, SIZE, 3))
        keras.Model(inputs, keras.layers.Dense(2, name="scores")(
            keras.layers.Flatten()(inputs))).save(tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    files["config.json"] = files["config.json"].replace(b'"Dense"', b'"NoSuchLayer"')
    with zipfile.ZipFile(tmp_path / "unknown.keras", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    assert "NoSuchLayer" in json.dumps(json.loads(files["config.json"]))
    with pytest.raises(GuidedGradCamError) as raised:
        GuidedGradCam(str(tmp_path / "unknown.keras"))
    message = str(raised.value)
    print(message)
    assert "\n" not in message and len(message) <= 290, message
    assert "cannot load Keras model" in message and "'trainable'" not in message, message


# --- the allow-list itself ------------------------------------------------------------------

def test_allow_list_names_registered_ops_and_nothing_that_does_io():
    from tensorflow.python.framework import op_def_registry

    unknown = sorted(op for op in model_safety.ALLOWED_OPS if op_def_registry.get(op) is None)
    assert not unknown, unknown
    hostile = {"ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "SaveV2", "Save",
               "SaveSlices", "MergeV2Checkpoints", "RestoreV2", "PyFunc", "PyFuncStateless",
               "EagerPyFunc", "WholeFileReaderV2", "TFRecordReaderV2", "ReaderReadV2",
               "TFRecordDataset", "FixedLengthRecordDataset", "TextLineDataset",
               "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "WriteSummary",
               "CreateSummaryFileWriter", "InitializeTableFromTextFileV2", "ImmutableConst",
               "FIFOQueueV2", "QueueDequeueV2", "_Send", "_Recv"}
    assert not hostile & model_safety.ALLOWED_OPS


def test_print_to_a_file_is_refused_and_to_the_console_allowed():
    graph = tf.Graph()
    with graph.as_default():
        value = tf.constant(1.0)
        tf.print(value, output_stream="file:///tmp/printed.txt", name="to_file")
        tf.print(value, name="to_console")
    graph_def = graph.as_graph_def()
    to_file = [node for node in graph_def.node if node.op == "PrintV2"
               and node.attr["output_stream"].s.startswith(b"file://")]
    to_console = [node for node in graph_def.node if node.op == "PrintV2"
                  and not node.attr["output_stream"].s.startswith(b"file://")]
    assert to_file and to_console
    assert model_safety.refused_ops(to_file, graph_def.library) == {"PrintV2": 1}
    assert not model_safety.refused_ops(to_console, graph_def.library)
