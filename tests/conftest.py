"""Shared test set-up: graph mode, and the real data that must be present (never skipped)."""
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests never read or write the user's checkpoint home (their CLI runs inherit this).
os.environ["GUIDED_GRADCAM_HOME"] = tempfile.mkdtemp(prefix="guided_gradcam_home.")

import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_eager_execution()

if os.environ.get("GUIDED_GRADCAM_TOLERANCE_LOG"):  # measuring the tolerances' margins
    import tolerance_log

    tolerance_log.install(os.environ["GUIDED_GRADCAM_TOLERANCE_LOG"])

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
CAT_DOG = SHARED / "images" / "cat_dog.jpg"
MOBILENET_075_CHECKPOINT = REPO / "checkpoints" / "mobilenet_v1_075"


def ancestor_ops(tensors):
    """Every op that computing `tensors` runs (the ops a session.run of them would not prune)."""
    seen, frontier = set(), [t.op for t in tensors]
    while frontier:
        op = frontier.pop()
        if op not in seen:
            seen.add(op)
            frontier.extend(t.op for t in op.inputs)
    return seen


def require(path, how):
    """Real data is part of the test set-up: fail loudly, never skip, when it is missing."""
    assert Path(path).exists(), "%s is missing: %s" % (path, how)
    return Path(path)


@pytest.fixture(scope="session")
def cat_dog_path():
    return require(CAT_DOG, "../shared must sit beside the repository")


@pytest.fixture(scope="session")
def mobilenet_075_checkpoint():
    return require(MOBILENET_075_CHECKPOINT, "run `make checkpoint` (make test does)")


@pytest.fixture(scope="session")
def explainer(mobilenet_075_checkpoint):
    """The real MobileNet V1 0.75, built and restored once for every test that reads it."""
    from guided_gradcam import GuidedGradCam

    with GuidedGradCam("mobilenet_v1_075", checkpoint=str(mobilenet_075_checkpoint)) as explainer:
        yield explainer


@pytest.fixture
def closed_port_url():
    """http://127.0.0.1:PORT where nothing listens: any download attempt fails at once.

    The socket stays bound, never listening, for the whole test: a connection is refused, and
    no other process can take the port meanwhile (a port closed at once is free for anyone)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield "http://127.0.0.1:%d" % probe.getsockname()[1]


@pytest.fixture
def renames(monkeypatch):
    """[(source, target)] of every os.replace from here on, as absolute paths; the renames
    still happen. Atomic writing means a file appears by a rename from beside it."""
    recorded, replace = [], os.replace

    def recording(src, dst, **kwargs):
        recorded.append((os.path.abspath(src), os.path.abspath(dst)))
        return replace(src, dst, **kwargs)
    monkeypatch.setattr(os, "replace", recording)
    return recorded


def run_cli(args, output_dir):
    """inference.py with `args`, writing into output_dir, as a user runs it: TF's own log level
    left unset, so the CLI's quieting is what keeps stderr clean."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GUIDED_GRADCAM_TF_LOGS", "TF_CPP_MIN_LOG_LEVEL")}
    completed = subprocess.run(
        [sys.executable, "inference.py", *map(str, args), "--output_dir", str(output_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    completed.output_dir = output_dir
    return completed


SEGMENTATION_NAMES = ("background", "square", "disc")


@pytest.fixture(scope="session")
def trained_segmentation(tmp_path_factory):
    """(the tiny encoder-decoder of helpers.py trained on squares and discs, a folder with it
    as seg.keras and seg_savedmodel, and names.txt): trained once for every test file."""
    from guided_gradcam.core.tf_eager import eager
    from helpers import build_and_train_segmentation

    folder = tmp_path_factory.mktemp("segmentation")
    with eager():
        model = build_and_train_segmentation()
        model.save(folder / "seg.keras")
        model.export(str(folder / "seg_savedmodel"), verbose=False)
    (folder / "names.txt").write_text("\n".join(SEGMENTATION_NAMES) + "\n")
    return model, folder
