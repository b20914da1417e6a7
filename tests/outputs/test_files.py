"""save_outputs writes every file through the atomic writer: each appears by one rename."""
import os

import numpy as np
import pytest
from PIL import Image

from guided_gradcam.explainer import Explanation
from guided_gradcam.outputs.files import OUTPUT_KINDS, output_paths, save_outputs


def _explanation():
    rng = np.random.default_rng(11)
    cam = rng.uniform(size=(16, 16)).astype(np.float32)
    gbp = rng.normal(size=(16, 16, 3)).astype(np.float32)
    probabilities = np.full(1000, 1e-3, np.float32)
    return Explanation(
        label=282, logits=np.zeros(1000, np.float32), probabilities=probabilities,
        cam_lowres=cam[::4, ::4], cam=cam, gbp=gbp, guided_gradcam=gbp * cam[..., None],
        image=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))


@pytest.mark.parametrize("kinds", [OUTPUT_KINDS, ("png",), ("panel",), ("npz",)])
def test_every_file_is_written_beside_and_renamed_into_place(tmp_path, renames, kinds):
    # A file written in place (e.g. Image.save(path)) is visible half-written to a reader and
    # stays half-written after a crash: every output must appear by a rename from beside it.
    output_dir = tmp_path / "out"
    photo = np.random.default_rng(12).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    written = save_outputs(_explanation(), photo, (4, 2, 20, 18), "tiger cat", str(output_dir),
                           "cat", kinds)
    expected = [os.path.abspath(path) for path in output_paths(str(output_dir), "cat", kinds)]
    assert sorted(map(os.path.abspath, written)) == sorted(expected)
    assert sorted(os.listdir(output_dir)) == sorted(os.path.basename(p) for p in expected)
    assert sorted(dst for _, dst in renames) == sorted(expected)
    for src, dst in renames:
        assert os.path.dirname(src) == os.path.dirname(dst) and src != dst
    for path in expected:
        if path.endswith(".png"):
            with Image.open(path) as image:
                assert image.mode == "RGB"
