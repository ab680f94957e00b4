"""stnkit.keras gives the torch side's numbers: grids, sampler and warp, on the backend under test.

Every comparison builds both sides from the same NumPy arrays. float32 throughout, tolerance 1e-5.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit import keras as sk

keras = pytest.importorskip("keras")

TRANSFORMS = list(sk.TRANSFORMS)
OPTIONS = list(itertools.product(sk.PADDING_MODES, [False, True]))  # (padding_mode, align_corners)


def numpy(x: object) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def seeded(*parts: object) -> np.random.Generator:
    """A generator seeded from the test's parameters, the same in every run (no salted ``hash``)."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(("padding_mode", "align_corners"), OPTIONS)
@pytest.mark.parametrize("mode", sk.MODES)
@pytest.mark.parametrize("output_size", [None, (5, 9)])
def test_warp_equals_stnkit_warp(
    transform, padding_mode, align_corners, mode, output_size, make_params, torch_warp
):
    rng = seeded(transform, padding_mode, align_corners, mode, output_size)
    images = rng.random((3, 7, 8, 2), dtype=np.float32)
    params = make_params(rng, transform, 3, scale=0.3).astype(np.float32)
    options = dict(
        transform=transform,
        output_size=output_size,
        mode=mode,
        padding_mode=padding_mode,
        align_corners=align_corners,
    )
    ours = numpy(sk.warp(images, params, **options))
    theirs = torch_warp(torch.from_numpy(images), torch.from_numpy(params), **options).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(("padding_mode", "align_corners"), OPTIONS)
@pytest.mark.parametrize("size", [(7, 8), (1, 5), (6, 1)])
def test_identity_returns_the_input_exactly(transform, padding_mode, align_corners, size):
    rng = seeded(transform, padding_mode, align_corners, size)
    images = rng.random((3, *size, 2), dtype=np.float32)
    identity = np.repeat(sk.identity_params(transform)[None], 3, axis=0)
    out = numpy(
        sk.warp(images, identity, transform=transform, padding_mode=padding_mode, align_corners=align_corners)
    )
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_resampled_to_another_size_equals_torch(transform, align_corners, torch_warp):
    images = seeded(transform, align_corners).random((3, 7, 8, 2), dtype=np.float32)
    identity = np.repeat(sk.identity_params(transform)[None], 3, axis=0).astype(np.float32)
    options = dict(transform=transform, output_size=(5, 9), align_corners=align_corners)
    ours = numpy(sk.warp(images, identity, **options))
    theirs = torch_warp(torch.from_numpy(images), torch.from_numpy(identity), **options).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_channels_first_is_channels_last_transposed(make_params):
    rng = seeded("channels")
    images = rng.random((3, 7, 8, 2), dtype=np.float32)
    params = make_params(rng, "affine", 3).astype(np.float32)
    last = numpy(sk.warp(images, params, output_size=(5, 9), data_format="channels_last"))
    first = numpy(
        sk.warp(images.transpose(0, 3, 1, 2), params, output_size=(5, 9), data_format="channels_first")
    )
    np.testing.assert_array_equal(first, last.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_equals_the_torch_grid(transform, align_corners, make_params):
    rng = seeded(transform, align_corners)
    params = make_params(rng, transform, 3, scale=0.3).astype(np.float32)
    ours = numpy(sk.grid(params, (5, 9), transform=transform, align_corners=align_corners))
    spec = stnkit.get_transform(transform)
    theirs = spec.grid(torch.from_numpy(params), (3, 1, 5, 9), align_corners=align_corners).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("num_points", [4, 9, 25])
def test_tps_takes_any_square_number_of_control_points(num_points, torch_warp):
    rng = seeded(num_points)
    images = rng.random((3, 7, 8, 2), dtype=np.float32)
    points = (sk.tps_lattice(num_points)[None] + rng.normal(0, 0.2, (3, num_points, 2))).astype(np.float32)
    ours = numpy(sk.warp(images, points, transform="tps"))  # matrix form (N, K, 2)
    theirs = torch_warp(
        torch.from_numpy(images),
        torch.from_numpy(points.reshape(3, -1)),
        transform=stnkit.get_transform("tps", num_control_points=num_points),
    ).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        numpy(sk.tps_grid(points, (5, 9))).reshape(3, -1),
        stnkit.tps_grid(torch.from_numpy(points), (3, 1, 5, 9)).reshape(3, -1).numpy(),
        atol=1e-6,
    )


def test_matrix_forms_equal_the_vectors(make_params):
    rng = seeded("matrix")
    affine = make_params(rng, "affine", 2).astype(np.float32)
    np.testing.assert_array_equal(
        numpy(sk.affine_grid(affine.reshape(2, 2, 3), (4, 6))),
        numpy(sk.grid(affine, (4, 6), transform="affine")),
    )
    homography = make_params(rng, "projective", 2)
    full = np.concatenate((homography, np.ones((2, 1))), axis=1).reshape(2, 3, 3)
    np.testing.assert_allclose(  # homographies are defined up to scale
        numpy(sk.projective_grid(2.5 * full, (4, 6))),
        numpy(sk.grid(homography, (4, 6), transform="projective")),
        atol=1e-6,
    )


@pytest.mark.parametrize(("padding_mode", "align_corners"), OPTIONS)
@pytest.mark.parametrize("mode", sk.MODES)
def test_sample_equals_grid_sample(padding_mode, align_corners, mode):
    """Random points inside and outside the image, whole pixels, the borders and the corners."""
    rng = seeded(padding_mode, align_corners, mode)
    height, width = 5, 6
    images = rng.random((2, height, width, 3), dtype=np.float32)
    random_points = rng.uniform(-1.6, 1.6, (2, 4, 6, 2))
    xs = stnkit.geometry.grids.normalized_coordinates(width, align_corners=align_corners, dtype=torch.float64)
    ys = stnkit.geometry.grids.normalized_coordinates(
        height, align_corners=align_corners, dtype=torch.float64
    )
    whole = np.stack(np.meshgrid(xs.numpy(), ys.numpy()), axis=-1)  # (H, W, 2): every pixel centre
    edges = np.array([-1.0, 1.0, -1.0, 1.0, 0.0, -1.0])[:, None] * np.ones((1, 2))
    grid = (
        np.concatenate(
            (
                random_points.reshape(2, -1, 2),
                np.broadcast_to(whole.reshape(1, -1, 2), (2, 30, 2)),
                np.broadcast_to(edges[None], (2, 6, 2)),
            ),
            axis=1,
        )
        .reshape(2, 1, -1, 2)
        .astype(np.float32)
    )
    ours = numpy(sk.sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners))
    theirs = F.grid_sample(
        torch.from_numpy(images).permute(0, 3, 1, 2),
        torch.from_numpy(grid),
        mode=mode,
        padding_mode=padding_mode,
        align_corners=align_corners,
    ).permute(0, 2, 3, 1)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_warp_in_a_functional_model_equals_eager(transform, make_params):
    """Square sizes and batches of 1 and of H: Keras 3.15's TensorFlow ops.add (which a functional model
    replays ``+`` with) would add (N, H, 1) terms along W when H == W."""
    images = keras.Input((4, 4, 1))
    params = keras.Input((sk.num_params(transform),))
    model = keras.Model([images, params], sk.warp(images, params, transform=transform))
    rng = seeded("functional", transform)
    for batch in (1, 4):
        inputs = [
            rng.random((batch, 4, 4, 1), dtype=np.float32),
            make_params(rng, transform, batch).astype("float32"),
        ]
        expected = numpy(sk.warp(*inputs, transform=transform))
        np.testing.assert_allclose(numpy(model(inputs)), expected, atol=1e-6)
        np.testing.assert_allclose(model.predict(inputs, verbose=0), expected, atol=1e-6)
