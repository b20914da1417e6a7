"""`pip install .` (a wheel, not editable) into a fresh virtual environment gives a working
`guided-gradcam` and `python -m guided_gradcam`, runs nothing from the checkout and puts no
top-level name but `guided_gradcam` into site-packages.

No network: the wheel is built and installed with `--no-index --no-deps --no-build-isolation`,
and the new environment sees this test environment's dependencies through a .pth file. A plain
path line in a .pth adds the folder without processing the .pth files in it, so the checkout's
editable install there stays out of the new environment.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from conftest import MOBILENET_075_CHECKPOINT, REPO, require

CAT = REPO / "images" / "cat.jpg"


def _run(command, cwd, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """(venv folder, its site-packages) with the wheel of this checkout installed."""
    root = tmp_path_factory.mktemp("install")
    # The build's inputs, copied: a build in the checkout would reuse a stale build/ folder
    # (a deleted module would still ship) and race other runs for it.
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("guided_gradcam", "models"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run(pip + ["wheel", "--no-index", "--no-deps", "--no-build-isolation", "-w", root / "dist",
                source], cwd=root)
    wheel, = (root / "dist").glob("guided_gradcam-*.whl")

    folder = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", folder], cwd=root)
    python = folder / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root).stdout.strip())
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (site / "test-environment.pth").write_text("".join(path + "\n" for path in sorted(ours)))
    # --ignore-installed: the checkout's editable install is visible through the .pth; pip
    # must neither count it as installed nor try to uninstall it.
    _run([python, "-m", "pip", "--disable-pip-version-check", "install", "--no-index",
          "--no-deps", "--no-build-isolation", "--ignore-installed", wheel], cwd=root)
    return folder, site


def test_only_guided_gradcam_lands_in_site_packages(venv):
    _, site = venv
    names = {path.name for path in site.iterdir()} - {"test-environment.pth"}
    assert "models" not in names
    assert {name for name in names if not name.endswith(".dist-info")} == {"guided_gradcam"}


def _checkout_modules():
    """Every module of the checkout's package, by the name the wheel must install it under."""
    names = []
    for folder, package in ((REPO / "guided_gradcam", "guided_gradcam"),
                            (REPO / "models", "guided_gradcam.zoo.slim_models")):
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            names.append(".".join((package,) + parts[:-1 if parts[-1] == "__init__" else None]))
    return names


def test_every_module_is_installed_and_none_comes_from_the_checkout(venv, tmp_path):
    folder, site = venv
    modules = _checkout_modules()
    found = json.loads(_run([folder / "bin" / "python", "-c", (
        "import importlib.util, json, sys\n"
        "print(json.dumps({name: getattr(importlib.util.find_spec(name), 'origin', None)\n"
        "                  for name in sys.argv[1:]}))"), *modules], cwd=tmp_path).stdout)
    assert "guided_gradcam.zoo.slim_models.mobilenet_v1" in found
    assert "guided_gradcam.sources.slim" in found
    for name, origin in found.items():
        assert origin is not None and Path(origin).is_relative_to(site), (name, origin)


@pytest.mark.parametrize("command", [["guided-gradcam"], ["python", "-m", "guided_gradcam"]],
                         ids=["console-script", "python-m"])
def test_installed_help(venv, command, tmp_path):
    folder, _ = venv
    result = _run([folder / "bin" / command[0], *command[1:], "--help"], cwd=tmp_path)
    assert result.stdout.startswith("usage: %s --image PATH" % " ".join(
        ["python -m guided_gradcam"] if len(command) > 1 else command))
    for flag in ("--image", "--label", "--model", "--checkpoint"):
        assert "\n  %s (default: " % flag in result.stdout


def test_installed_command_explains_an_image(venv, tmp_path):
    folder, _ = venv
    checkpoint = require(MOBILENET_075_CHECKPOINT, "run `make checkpoint` (make test does)")
    output_dir = tmp_path / "out"
    result = _run([folder / "bin" / "guided-gradcam", "--image", CAT, "--checkpoint", checkpoint,
                   "--output_dir", output_dir, "--outputs", "npz"], cwd=tmp_path)
    assert "Egyptian cat (285)" in result.stdout  # the top-1, named from the package data
    assert (output_dir / "cat.npz").is_file() and not list(output_dir.glob("*.png"))
    with np.load(output_dir / "cat.npz") as npz:
        assert int(npz["label"]) == 285
        assert npz["cam"].shape == (224, 224) and npz["cam"].max() == 1.0


def test_installed_evaluation_command_and_its_data(venv, tmp_path):
    folder, _ = venv
    result = _run([folder / "bin" / "guided-gradcam-evaluate", "--help"], cwd=tmp_path)
    assert result.stdout.startswith("usage: guided-gradcam-evaluate --image PATH")
    for flag in ("--boxes", "--metrics", "--image", "--model"):
        assert "\n  %s (default: " % flag in result.stdout
    synsets = _run([folder / "bin" / "python", "-c",
                    "from guided_gradcam.evaluation.boxes import imagenet_synsets as s; "
                    "print(len(s()), s()[282])"], cwd=tmp_path)
    assert synsets.stdout.split() == ["1000", "n02123159"]  # the package data, tiger cat
