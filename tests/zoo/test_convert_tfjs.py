"""Converting the real shared TF.js MobileNet V1 0.75 weights to a TF-Slim checkpoint."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from guided_gradcam.zoo import convert_tfjs
from guided_gradcam.errors import CheckpointError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
MODEL_DIR = SHARED / "weights" / "mobilenet_v1_0.75_224_tfjs"
SHA256_FILE = SHARED / "weights" / "mobilenet_v1_0.75_224_tfjs.sha256"
# conv1 (kernel + 4 BN) + 13 * (depthwise kernel + 4 BN + pointwise kernel + 4 BN) + logits (kernel, bias)
EXPECTED_VARIABLES = 1 + 4 + 13 * (1 + 4 + 1 + 4) + 2


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    # Fail, not skip: the shared data is part of every developer's and CI's setup.
    assert (MODEL_DIR / "model.json").is_file(), f"shared TF.js weights missing at {MODEL_DIR}"
    assert SHA256_FILE.is_file(), f"shared sha256 list missing at {SHA256_FILE}"
    prefix = tmp_path_factory.mktemp("converted") / "mobilenet_v1_075" / "mobilenet_v1_0.75_224.ckpt"
    names = convert_tfjs.convert(str(MODEL_DIR), str(prefix), sha256_file=str(SHA256_FILE))
    return prefix, names


@pytest.fixture(scope="module")
def reader(converted):
    import tensorflow.compat.v1 as tf

    return tf.train.load_checkpoint(str(converted[0]))


def test_converts_all_137_weights_to_slim_names(converted, reader):
    prefix, names = converted
    assert len(names) == EXPECTED_VARIABLES == 137
    shapes = reader.get_variable_to_shape_map()
    assert sorted(shapes) == sorted(names)
    assert all(name.startswith("MobilenetV1/") for name in names)
    assert shapes["MobilenetV1/Conv2d_0/weights"] == [3, 3, 3, 24]
    assert shapes["MobilenetV1/Conv2d_0/BatchNorm/gamma"] == [24]
    assert shapes["MobilenetV1/Conv2d_1_depthwise/depthwise_weights"] == [3, 3, 24, 1]
    assert shapes["MobilenetV1/Conv2d_12_pointwise/weights"] == [1, 1, 384, 768]
    assert shapes["MobilenetV1/Conv2d_13_pointwise/weights"] == [1, 1, 768, 768]
    assert shapes["MobilenetV1/Conv2d_13_pointwise/BatchNorm/moving_variance"] == [768]
    assert shapes["MobilenetV1/Logits/Conv2d_1c_1x1/weights"] == [1, 1, 768, 1000]
    assert shapes["MobilenetV1/Logits/Conv2d_1c_1x1/biases"] == [1000]


def test_output_folder_holds_only_the_checkpoint_files(converted):
    prefix, _ = converted
    assert sorted(p.name for p in prefix.parent.iterdir()) == [
        "mobilenet_v1_0.75_224.ckpt.data-00000-of-00001", "mobilenet_v1_0.75_224.ckpt.index"]


def _shard_tensor(keras_name):
    """Read one weight straight from its shard bytes, independently of the converter."""
    manifest = json.loads((MODEL_DIR / "model.json").read_text())["weightsManifest"]
    for group in manifest:
        data = b"".join((MODEL_DIR / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"]))
            if spec["name"] == keras_name:
                return np.frombuffer(data, "<f4", count, offset).reshape(spec["shape"])
            offset += 4 * count
    raise AssertionError(f"{keras_name} not in manifest")


@pytest.mark.parametrize("keras_name, slim_name", [
    ("conv1/kernel", "MobilenetV1/Conv2d_0/weights"),
    ("conv_dw_10_bn/moving_mean", "MobilenetV1/Conv2d_10_depthwise/BatchNorm/moving_mean"),
    ("conv_preds/bias", "MobilenetV1/Logits/Conv2d_1c_1x1/biases"),
])
def test_values_equal_the_shard_bytes(reader, keras_name, slim_name):
    expected = _shard_tensor(keras_name)
    actual = reader.get_tensor(slim_name)
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(actual, expected)


def test_read_tfjs_weights_keys_are_keras_names():
    weights = convert_tfjs.read_tfjs_weights(str(MODEL_DIR))
    assert len(weights) == EXPECTED_VARIABLES
    assert weights["conv1/kernel"].shape == (3, 3, 3, 24)
    assert weights["conv_dw_13/depthwise_kernel"].shape == (3, 3, 768, 1)


def test_verify_sha256_accepts_the_shared_weights():
    convert_tfjs.verify_sha256(str(MODEL_DIR), str(SHA256_FILE))


def test_corrupted_shard_fails_verification_naming_it(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(MODEL_DIR, copy)
    shard = copy / "group10-shard1of1"
    shard.chmod(0o644)  # the shared files are read-only, and copytree keeps their mode
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="group10-shard1of1"):
        convert_tfjs.verify_sha256(str(copy), str(SHA256_FILE))
    output = tmp_path / "out" / "x.ckpt"
    with pytest.raises(CheckpointError, match="group10-shard1of1"):
        convert_tfjs.convert(str(copy), str(output), sha256_file=str(SHA256_FILE))
    assert not output.parent.exists()


def test_shard_missing_from_sha256_list_is_an_error(tmp_path):
    listing = tmp_path / "partial.sha256"
    lines = SHA256_FILE.read_text().splitlines()
    listing.write_text("\n".join(l for l in lines if not l.endswith("group7-shard1of1")) + "\n")
    with pytest.raises(CheckpointError, match="group7-shard1of1"):
        convert_tfjs.verify_sha256(str(MODEL_DIR), str(listing))


@pytest.mark.parametrize("keras_name, slim_name", [
    ("conv1_bn/beta", "MobilenetV1/Conv2d_0/BatchNorm/beta"),
    ("conv_dw_13/depthwise_kernel", "MobilenetV1/Conv2d_13_depthwise/depthwise_weights"),
    ("conv_dw_1_bn/gamma", "MobilenetV1/Conv2d_1_depthwise/BatchNorm/gamma"),
    ("conv_pw_5/kernel", "MobilenetV1/Conv2d_5_pointwise/weights"),
    ("conv_pw_12_bn/moving_variance", "MobilenetV1/Conv2d_12_pointwise/BatchNorm/moving_variance"),
    ("conv_preds/kernel", "MobilenetV1/Logits/Conv2d_1c_1x1/weights"),
])
def test_keras_to_slim_name(keras_name, slim_name):
    assert convert_tfjs.keras_to_slim_name(keras_name) == slim_name


@pytest.mark.parametrize("keras_name", [
    "dense_1/kernel", "conv_dw_14/depthwise_kernel", "conv_dw_0/depthwise_kernel",
    "conv_dw_3/kernel", "conv_pw_3/depthwise_kernel", "conv1/bias", "conv_preds_bn/gamma", "conv1",
])
def test_unknown_keras_name_raises(keras_name):
    with pytest.raises(CheckpointError, match="unknown Keras MobileNet V1 weight"):
        convert_tfjs.keras_to_slim_name(keras_name)


def test_main_reports_errors_on_one_line(tmp_path, capsys):
    assert convert_tfjs.main(["--model_dir", str(tmp_path / "absent"), "--output", str(tmp_path / "x.ckpt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "model.json" in err


def test_main_writes_checkpoint_and_says_so(tmp_path, capsys):
    output = tmp_path / "cli" / "m.ckpt"
    args = ["--model_dir", str(MODEL_DIR), "--output", str(output), "--sha256", str(SHA256_FILE)]
    assert convert_tfjs.main(args) == 0
    assert f"wrote 137 variables to checkpoint {output}" in capsys.readouterr().out
    assert (tmp_path / "cli" / "m.ckpt.index").is_file()
