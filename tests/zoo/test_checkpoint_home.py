"""The user's checkpoint home: what `make demo` registers there is found from any folder."""
import os
import subprocess
import sys

import pytest

from conftest import REPO
from guided_gradcam.zoo import checkpoints
from guided_gradcam.errors import CheckpointError
from guided_gradcam.zoo.networks import MIRROR_ENV, NETWORKS

SPEC = NETWORKS["mobilenet_v1_075"]


def test_home_is_the_env_variable_else_a_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(checkpoints.HOME_ENV, str(tmp_path / "mine"))
    assert checkpoints.guided_gradcam_home() == str(tmp_path / "mine")
    monkeypatch.delenv(checkpoints.HOME_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert checkpoints.guided_gradcam_home() == str(tmp_path / "user" / ".cache" / "guided_gradcam")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checkpoints.guided_gradcam_home() == str(tmp_path / "xdg" / "guided_gradcam")


def test_lookup_order_working_folder_then_home_then_download(
        monkeypatch, tmp_path, mobilenet_075_checkpoint, closed_port_url):
    monkeypatch.setenv(checkpoints.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(MIRROR_ENV, closed_port_url)  # any download fails at once
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as nothing:  # the download goes to the home
        checkpoints.locate_checkpoint(SPEC, progress=None)
    assert str(tmp_path / "home" / "checkpoints" / "mobilenet_v1_075") in str(nothing.value)

    prefix = str(mobilenet_075_checkpoint / "mobilenet_v1_0.75_224.ckpt")
    registered = checkpoints.register_checkpoint(prefix, SPEC.name)
    assert registered == str(tmp_path / "home" / "checkpoints" / SPEC.name / os.path.basename(prefix))
    assert checkpoints.register_checkpoint(prefix, SPEC.name) == registered  # again: a no-op
    assert checkpoints.locate_checkpoint(SPEC, progress=None) == registered

    local = tmp_path / "checkpoints" / SPEC.name
    local.mkdir(parents=True)
    for name in os.listdir(mobilenet_075_checkpoint):
        os.link(mobilenet_075_checkpoint / name, local / name)
    assert checkpoints.locate_checkpoint(SPEC, progress=None) == os.path.join(
        "checkpoints", SPEC.name, os.path.basename(prefix))  # ./checkpoints comes first


def test_registering_nothing_is_one_error_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "guided_gradcam.zoo.checkpoints", "--register",
         str(tmp_path / "none.ckpt"), "--network", SPEC.name],
        capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    assert completed.stderr.startswith("error: no checkpoint at ") and completed.stderr.count("\n") == 1


def test_cli_and_api_from_any_folder_find_the_registered_checkpoint(
        tmp_path, mobilenet_075_checkpoint, closed_port_url):
    """`make demo`'s registration, then a run from a folder that has no checkpoints/."""
    env = dict(os.environ, GUIDED_GRADCAM_HOME=str(tmp_path / "home"),
               **{MIRROR_ENV: closed_port_url})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args):
        return subprocess.run([sys.executable, *map(str, args)], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)

    registered = run("-m", "guided_gradcam.zoo.checkpoints", "--register",
                     mobilenet_075_checkpoint / "mobilenet_v1_0.75_224.ckpt",
                     "--network", SPEC.name)
    assert registered.returncode == 0, registered.stderr
    cli = run(REPO / "inference.py", "--image", REPO / "images" / "cat.jpg", "--label", "282",
              "--outputs", "npz", "--output_dir", "out")
    assert cli.returncode == 0, cli.stderr
    assert (elsewhere / "out" / "cat.npz").is_file()
    assert str(tmp_path / "home" / "checkpoints" / SPEC.name) in cli.stdout  # the run says which
    api = run("-c", "from guided_gradcam import GuidedGradCam\n"
                    "with GuidedGradCam('mobilenet_v1_075', progress=None) as explainer:\n"
                    "    print(explainer.checkpoint)\n")
    assert api.returncode == 0, api.stderr
    assert api.stdout.strip() == os.path.join(
        str(tmp_path / "home" / "checkpoints" / SPEC.name), "mobilenet_v1_0.75_224.ckpt")
