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
        (
            lambda: sk.warp(IMAGES, np.zeros((2, 7)), transform="tps"),
            ValueError,
            "(N, 2K) or (N, K, 2) with K",
        ),
        (lambda: sk.warp(IMAGES, np.zeros(32), transform="tps"), ValueError, "(N, 2K) or (N, K, 2) with K"),
        (
            lambda: sk.warp(IMAGES, np.full((2, 6), np.nan)),
            ValueError,
            "params must be finite, got 12 non-finite",
        ),
        (
            lambda: sk.warp(IMAGES, np.zeros((2, 3, 3)), transform="projective"),
            ValueError,
            "entry [2, 2] is 1; it is 0 in 2",
        ),
        (
            lambda: sk.warp(IMAGES, AFFINE.astype("int32")),
            TypeError,
            "params must have a floating point dtype, got int32",
        ),
        (lambda: sk.warp(IMAGES, AFFINE.astype(bool)), TypeError, "floating point dtype, got bool"),
        (lambda: sk.warp(IMAGES, AFFINE[:1]), ValueError, "same batch size, got 2 and 1"),
        (lambda: sk.warp(IMAGES[0], AFFINE), ValueError, "images must be (N, H, W, C)"),
        (lambda: sk.warp(IMAGES.astype("int32"), AFFINE), TypeError, "floating point"),
        (
            lambda: sk.sample(IMAGES, np.zeros((2, 3, 3, 3))),
            ValueError,
            "grid must have shape (N, Ho, Wo, 2)",
        ),
        (lambda: sk.num_params("tps", 10), ValueError, "perfect square >= 4, got 10"),
        (
            lambda: sk.grid(AFFINE, (3, 3), dtype="int32"),
            TypeError,
            "dtype must be a floating point dtype, got int32",
        ),
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


# Every public function with align_corners, called with valid other arguments: flag -> result.
# The other arguments are chosen so that True and False give different results.
SHADED = np.arange(72.0, dtype=np.float32).reshape(2, 6, 6, 1)
GRID = np.random.default_rng(0).uniform(-1.2, 1.2, (2, 3, 5, 2)).astype(np.float32)
ZOOM = np.array([[0.5, 0.1, 0.0, -0.2, 0.6, 0.1]] * 2)
FLAG_CALLS = {
    "warp": lambda flag: sk.warp(SHADED, ZOOM, align_corners=flag),
    "sample": lambda flag: sk.sample(SHADED, GRID, align_corners=flag),
    "grid": lambda flag: sk.grid(ZOOM, (4, 4), align_corners=flag),
    "affine_grid": lambda flag: sk.affine_grid(ZOOM.reshape(2, 2, 3), (4, 4), align_corners=flag),
    "projective_grid": lambda flag: sk.projective_grid(np.eye(3)[None], (4, 4), align_corners=flag),
    "tps_grid": lambda flag: sk.tps_grid(sk.tps_lattice(16)[None], (4, 4), align_corners=flag),
    "normalized_coordinates": lambda flag: sk.normalized_coordinates(4, align_corners=flag),
    "SpatialTransformer": lambda flag: sk.SpatialTransformer(
        keras.layers.Flatten(), output_size=4, align_corners=flag
    )(SHADED),
}
NOT_BOOLS = [
    pytest.param(lambda: "yes", "'yes' (str)", id="str"),
    pytest.param(lambda: None, "None (NoneType)", id="None"),
    pytest.param(lambda: 1, "1 (int)", id="int"),
    pytest.param(lambda: 0.0, "0.0 (float)", id="float"),
    # The backend's own tensor, built in the test; its repr and type name differ between backends.
    pytest.param(lambda: keras.ops.convert_to_tensor(True), None, id="tensor"),
]


@pytest.mark.parametrize(("make_bad", "shown"), NOT_BOOLS)
@pytest.mark.parametrize("entry", list(FLAG_CALLS))
def test_align_corners_must_be_a_bool(entry, make_bad, shown):
    with pytest.raises(TypeError) as raised:
        FLAG_CALLS[entry](make_bad())
    message = one_line(raised)
    assert message.startswith("align_corners must be a bool (True or False), got ")
    if shown is not None:
        assert message == f"align_corners must be a bool (True or False), got {shown}"


@pytest.mark.parametrize("entry", list(FLAG_CALLS))
def test_align_corners_takes_python_and_numpy_bools_alike(entry):
    on, off = (keras.ops.convert_to_numpy(FLAG_CALLS[entry](flag)) for flag in (True, False))
    assert not np.array_equal(on, off), f"align_corners makes no difference to {entry}: the table misses it"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(FLAG_CALLS[entry](np.True_)), on)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(FLAG_CALLS[entry](np.False_)), off)
