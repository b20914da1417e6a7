"""Checkpoint lookup: explicit paths, the per-network folder, and the offline error."""
import pytest

from guided_gradcam.zoo.checkpoints import _prefix_from_path, locate_checkpoint
from guided_gradcam.errors import CheckpointError
from guided_gradcam.zoo.networks import MIRROR_ENV, NETWORKS


def test_offline_download_error_names_the_url_and_the_converter(tmp_path, monkeypatch,
                                                                 closed_port_url):
    base = closed_port_url  # as offline as it gets
    monkeypatch.setenv(MIRROR_ENV, base)
    with pytest.raises(CheckpointError) as error:
        locate_checkpoint(NETWORKS["mobilenet_v1_075"], checkpoints_dir=str(tmp_path), progress=None)
    message = str(error.value)
    assert "\n" not in message
    assert base + "/mobilenet_v1_2018_08_02/mobilenet_v1_0.75_224.tgz" in message
    assert "python -m guided_gradcam.zoo.convert_tfjs" in message


def test_without_the_shared_weights_no_error_points_there(tmp_path, monkeypatch,
                                                          closed_port_url):
    """A pip install has no ../shared/weights beside it: the errors say where the checkpoint
    comes from and where to put it instead."""
    from guided_gradcam.zoo import checkpoints

    monkeypatch.setattr(checkpoints, "SHARED_WEIGHTS", str(tmp_path / "no_shared_weights"))
    monkeypatch.setenv(MIRROR_ENV, closed_port_url)
    spec = NETWORKS["mobilenet_v1_075"]
    url = closed_port_url + "/mobilenet_v1_2018_08_02/mobilenet_v1_0.75_224.tgz"
    folder = str(tmp_path / "ckpts")
    messages = []
    for download in (False, True):
        with pytest.raises(CheckpointError) as error:
            locate_checkpoint(spec, checkpoints_dir=folder, download=download, progress=None)
        messages.append(str(error.value))
    for message in messages:
        assert "shared/weights" not in message and "convert_tfjs" not in message, message
        assert url in message and str(tmp_path / "ckpts" / "mobilenet_v1_075") in message
    assert "unpack it into %s by hand" % (tmp_path / "ckpts" / "mobilenet_v1_075") in messages[0]
    assert "by hand" in messages[1]


def test_the_shared_weights_are_named_where_they_are(tmp_path, monkeypatch):
    from guided_gradcam.zoo import checkpoints

    tfjs = tmp_path / "weights" / "mobilenet_v1_0.75_224_tfjs"
    tfjs.mkdir(parents=True)
    monkeypatch.setattr(checkpoints, "SHARED_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as error:
        locate_checkpoint(NETWORKS["mobilenet_v1_075"], checkpoints_dir=str(tmp_path / "ckpts"),
                          download=False)
    assert ("python -m guided_gradcam.zoo.convert_tfjs --model_dir weights/mobilenet_v1_0.75_224_tfjs "
            "--output checkpoints/mobilenet_v1_075/") in str(error.value)
    assert checkpoints.converter_hint("vgg_16") == ""  # the TF.js weights are MobileNet's


def test_the_per_network_folder_is_found_without_download(mobilenet_075_checkpoint, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9")  # any download attempt would fail
    prefix = locate_checkpoint(NETWORKS["mobilenet_v1_075"],
                               checkpoints_dir=str(mobilenet_075_checkpoint.parent))
    assert prefix.endswith("mobilenet_v1_0.75_224.ckpt")


@pytest.mark.parametrize("suffix", ["", ".index", ".data-00000-of-00001"])
def test_explicit_paths_accept_prefix_index_and_data_file(suffix):
    assert _prefix_from_path("/x/model.ckpt" + suffix) == "/x/model.ckpt"


def test_a_folder_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _prefix_from_path(str(tmp_path))
