"""The shape of a token layer, T leading tokens and an h x w grid, from what the model tells:
the patch embedding's grid first, then the input size over a patch size, then a square; the
user's --tokens / --grid win; an impossible shape is one error line."""
import pytest

from guided_gradcam.core.tokens import token_shape
from guided_gradcam.errors import GuidedGradCamError


@pytest.mark.parametrize("count, patch_grid, input_size, expected", [
    (197, (14, 14), (224, 224), (1, (14, 14))),        # ViT-B/16: the class token
    (198, (14, 14), (224, 224), (2, (14, 14))),        # DeiT: class and distillation tokens
    (201, (14, 14), (224, 224), (5, (14, 14))),        # DINOv2-style: class + 4 registers
    (281, (14, 20), (224, 320), (1, (14, 20))),        # a 224x320 input: a 14x20 grid
    (196, (14, 14), (224, 224), (0, (14, 14))),        # no leading token (pooled readout)
    (281, None, (224, 320), (1, (14, 20))),            # no patch conv: 224x320 over 16
    (50, None, (100, 300), (2, (4, 12))),              # input over 25: 48 patches, 2 leading
    (17, None, (30, 30), (1, (4, 4))),                 # nothing divides: a square
])
def test_shape_from_the_model(count, patch_grid, input_size, expected):
    assert token_shape("layer", count, patch_grid, input_size) == expected


def test_the_patch_embedding_wins_over_a_square():
    # 17 = 1 + 4x4 = 8 + 3x3: the patch embedding's 4x4 grid decides, not the smallest T
    assert token_shape("layer", 17, (4, 4), (33, 33)) == (1, (4, 4))
    # a pyramid stage's 49 tokens under a 14x14 embedding: not the embedding's grid
    assert token_shape("layer", 49, (14, 14), (30, 30)) == (0, (7, 7))


def test_the_users_tokens_and_grid():
    assert token_shape("layer", 201, (14, 14), (224, 224), grid=(8, 25)) == (1, (8, 25))
    assert token_shape("layer", 201, None, (224, 224), tokens=5) == (5, (14, 14))
    assert token_shape("layer", 201, (14, 14), (224, 224), tokens=5, grid=(14, 14)) == (
        5, (14, 14))


@pytest.mark.parametrize("count, patch_grid, tokens, grid, message", [
    (197, (14, 14), None, (15, 15), "layer b has 197 tokens: --grid 15x15; the tokens are T "
                                    "leading ones and an h x w grid, T + h·w = 197"),
    (197, (14, 14), 2, (14, 14), "--tokens 2 and --grid 14x14"),
    (197, (14, 14), 3, None, "with --tokens 3; pass --grid HxW"),
    (197, (14, 14), 197, None, "with --tokens 197"),
    (3, None, None, None, "which no T leading tokens and h x w grid of its model explain by "
                           "themselves"),
])
def test_impossible_shapes_are_one_error(count, patch_grid, tokens, grid, message):
    with pytest.raises(GuidedGradCamError) as error:
        token_shape("b", count, patch_grid, (224, 224), tokens, grid)
    assert message in str(error.value) and "\n" not in str(error.value)
