"""Bad input gets a clear one-line error saying what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest

from stnkit import keras as sk

keras = pytest.importorskip("keras")

IMAGES = np.zeros((2, 6, 6, 1), dtype=np.float32)
AFFINE = np.repeat(sk.identity_params("affine")[None], 2, axis=0)


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("call", "error", "expected"),
    [
        (lambda: sk.warp(IMAGES, AFFINE, transform="shear"), ValueError, "transform must be one of"),
        (lambda: sk.warp(IMAGES, AFFINE, padding_mode="wrap"), ValueError, "padding_mode must be one of"),
        (lambda: sk.warp(IMAGES, AFFINE, mode="bicubic"), ValueError, "mode must be one of"),
        (lambda: sk.warp(IMAGES, AFFINE, data_format="NHWC"), ValueError, "data_format must be one of"),
        (lambda: sk.warp(IMAGES, AFFINE, output_size=0), ValueError, "output_size must be a positive int"),
        (lambda: sk.warp(IMAGES, AFFINE, output_size=(3,)), ValueError, "got (3,)"),
        (lambda: sk.warp(IMAGES, AFFINE[:, :5]), ValueError, "(N, 6) or (N, 2, 3), got [2, 5]"),
        (lambda: sk.warp(IMAGES, np.zeros((2, 4)), transform="attention"), ValueError, "(N, 3), got [2, 4]"),
        (lambda: sk.warp(IMAGES, np.zeros((2, 10)), transform="tps"), ValueError, "perfect square"),
        (lambda: sk.warp(IMAGES, AFFINE[:1]), ValueError, "same batch size, got 2 and 1"),
        (lambda: sk.warp(IMAGES[0], AFFINE), ValueError, "images must be (N, H, W, C)"),
        (lambda: sk.warp(IMAGES.astype("int32"), AFFINE), TypeError, "floating point"),
        (
            lambda: sk.sample(IMAGES, np.zeros((2, 3, 3, 3))),
            ValueError,
            "grid must have shape (N, Ho, Wo, 2)",
        ),
        (lambda: sk.num_params("tps", 10), ValueError, "perfect square >= 4, got 10"),
        (lambda: sk.SpatialTransformer("cnn"), TypeError, "localization must be a keras Layer"),
        (
            lambda: sk.SpatialTransformer(keras.layers.Flatten(), transform="tps", num_control_points=8),
            ValueError,
            "perfect square",
        ),
    ],
)
def test_bad_input_gets_a_one_line_error(call, error, expected):
    with pytest.raises(error) as raised:
        call()
    assert expected in one_line(raised)


def test_a_localization_that_does_not_give_features_is_refused():
    stn = sk.SpatialTransformer(keras.layers.Identity())
    with pytest.raises(ValueError) as raised:
        stn(IMAGES)
    assert "localization must map images to (N, F) features, got shape [2, 6, 6, 1]" in one_line(raised)
