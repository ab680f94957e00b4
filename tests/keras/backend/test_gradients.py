"""Gradients reach the parameters and the images on every backend, equal torch's and finite differences.

float64 throughout (JAX with x64 switched on). At the identity the sampling points are whole pixels,
where bilinear sampling has only one-sided derivatives: like torch, stnkit.keras takes the forward
difference I[x + 1] - I[x] there (floor-based weights), never the zero of max(0, 1 - |d|).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit import keras as sk

keras = pytest.importorskip("keras")

TRANSFORMS = list(sk.TRANSFORMS)
ALIGN = [False, True]
# The transform builds the grid, the padding mode acts in the sampler: every transform with zeros
# padding, and every padding mode with the projective transform (a nonlinear grid), both align_corners.
CASES = [(t, "zeros", a) for t in TRANSFORMS for a in ALIGN] + [
    ("projective", p, a) for p in ("border", "reflection") for a in ALIGN
]
# At the identity (where the grid is the pixel centres, exactly) the affine family stands for the grid.
IDENTITY_CASES = [(t, "zeros", a) for t in TRANSFORMS if t != "tps" for a in ALIGN] + [
    ("affine", p, a) for p in ("border", "reflection") for a in ALIGN
]
# Parameter indices that translate the grid along x and along y, per transform. For TPS, moving every
# control point is a translation (the spline reproduces affine maps).
SHIFTS = {
    "translation": ([0], [1]),
    "attention": ([1], [2]),
    "similarity": ([2], [3]),
    "affine": ([2], [5]),
    "projective": ([2], [5]),
    "tps": (list(range(0, 32, 2)), list(range(1, 32, 2))),
}


def seeded(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def weighted_sum(weights: np.ndarray, **options: object):
    """The scalar loss sum(weights * warp(images, params)) as a function of (images, params)."""

    def loss(images, params):
        out = sk.warp(images, params, **options)
        return keras.ops.sum(out * keras.ops.convert_to_tensor(weights, dtype=out.dtype))

    return loss


def torch_weighted_sum(weights: np.ndarray, output_size=None, **options: object):
    def loss(images, params):
        out = stnkit.warp(images.permute(0, 3, 1, 2), params, out_size=output_size, **options)
        return (out.permute(0, 2, 3, 1) * torch.from_numpy(weights)).sum()

    return loss


def numpy_loss(loss, images: np.ndarray, params: np.ndarray) -> float:
    return float(keras.ops.convert_to_numpy(loss(images, params)))


def _exact_size(align_corners: bool) -> tuple[int, int]:
    """Sizes whose normalised pixel centres are dyadic, so torch's grid path lands on whole pixels too."""
    return (5, 9) if align_corners else (4, 8)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize(("transform", "padding_mode", "align_corners"), CASES)
def test_gradients_equal_torch_and_finite_differences(
    transform, padding_mode, align_corners, make_params, backend_gradients, torch_gradients
):
    rng = seeded(transform, padding_mode, align_corners)
    images = rng.random((2, *_exact_size(align_corners), 2))
    params = make_params(rng, transform, 2, scale=0.3)
    options = dict(
        transform=transform, output_size=(3, 5), padding_mode=padding_mode, align_corners=align_corners
    )
    weights = rng.normal(size=(2, 3, 5, 2))
    loss = weighted_sum(weights, **options)
    value, (grad_images, grad_params) = backend_gradients(loss, [images, params])
    ref_value, (ref_images, ref_params) = torch_gradients(
        torch_weighted_sum(weights, **options), [images, params]
    )
    assert value == pytest.approx(ref_value, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(grad_params, ref_params, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(grad_images, ref_images, rtol=1e-8, atol=1e-8)
    # Central differences along random directions (the loss is smooth away from pixel boundaries).
    step = 1e-6
    for _ in range(3):
        direction = rng.normal(size=params.shape)
        up = numpy_loss(loss, images, params + step * direction)
        down = numpy_loss(loss, images, params - step * direction)
        along = float(np.sum(grad_params * direction))
        assert along == pytest.approx((up - down) / (2 * step), rel=1e-5, abs=1e-6)
    # The loss is linear in the images: a directional difference checks the whole image gradient.
    direction = rng.normal(size=images.shape)
    difference = numpy_loss(loss, images + direction, params) - numpy_loss(loss, images, params)
    assert float(np.sum(grad_images * direction)) == pytest.approx(difference, rel=1e-8, abs=1e-8)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize(("transform", "padding_mode", "align_corners"), IDENTITY_CASES)
def test_gradient_at_the_identity_equals_torch(
    transform, padding_mode, align_corners, backend_gradients, torch_gradients
):
    """Torch's grid_sample is the reference, on a grid that is exactly the pixel centres."""
    rng = seeded(transform, padding_mode, align_corners)
    height, width = _exact_size(align_corners)
    images = rng.random((2, height, width, 2))
    identity = np.repeat(sk.identity_params(transform)[None], 2, axis=0)
    weights = rng.normal(size=images.shape)
    spec = stnkit.get_transform(transform)

    def torch_loss(images, params):
        grid = spec.grid(params, (2, 2, height, width), align_corners=align_corners)
        out = F.grid_sample(
            images.permute(0, 3, 1, 2), grid, padding_mode=padding_mode, align_corners=align_corners
        )
        return (out.permute(0, 2, 3, 1) * torch.from_numpy(weights)).sum()

    grid = spec.grid(torch.from_numpy(identity), (2, 2, height, width), align_corners=align_corners)
    scale = (width - 1) / 2 if align_corners else width / 2
    assert torch.equal(
        (grid[..., 0] + 1) * scale - (0 if align_corners else 0.5),
        grid.new_tensor(np.broadcast_to(np.arange(width), (2, height, width)).copy()),
    ), "the reference grid is not exact"
    options = dict(transform=transform, padding_mode=padding_mode, align_corners=align_corners)
    _, (grad_images, grad_params) = backend_gradients(weighted_sum(weights, **options), [images, identity])
    _, (ref_images, ref_params) = torch_gradients(torch_loss, [images, identity])
    np.testing.assert_allclose(grad_params, ref_params, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad_images, ref_images, rtol=1e-10, atol=1e-10)
    assert np.abs(grad_params).max() > 0.1


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("align_corners", [False, True])
def test_gradient_at_the_identity_is_the_forward_difference(transform, align_corners, backend_gradients):
    """A shift by +h moves every point off its pixel to the right (or down): the forward difference."""
    rng = seeded(transform, align_corners)
    images = rng.random((2, *_exact_size(align_corners), 2))
    identity = np.repeat(sk.identity_params(transform)[None], 2, axis=0)
    weights = rng.normal(size=images.shape)
    loss = weighted_sum(weights, transform=transform, align_corners=align_corners)
    _, (_, grad_params) = backend_gradients(loss, [images, identity])
    step = 1e-7
    for indices in SHIFTS[transform]:
        shifted = identity.copy()
        shifted[:, indices] += step
        difference = (numpy_loss(loss, images, shifted) - numpy_loss(loss, images, identity)) / step
        along = float(grad_params[:, indices].sum())
        assert along == pytest.approx(difference, rel=1e-6, abs=1e-6)
        assert abs(along) > 0.1  # a transformer at the identity does get a gradient


@pytest.mark.usefixtures("float64")
def test_nearest_passes_zero_gradient_to_the_params(backend_gradients, make_params):
    rng = seeded("nearest")
    images = rng.random((2, *_exact_size(False), 2))
    params = make_params(rng, "affine", 2)
    loss = weighted_sum(np.ones(images.shape), mode="nearest")
    _, (grad_images, grad_params) = backend_gradients(loss, [images, params])
    np.testing.assert_array_equal(grad_params, 0.0)
    assert grad_images.sum() > 0
