"""The sampler: reference vs torch, identity, gradients, rotations."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit.geometry import MODES, PADDING_MODES, sample_reference

ALIGN = [False, True]
CASES_2D = list(itertools.product(MODES, PADDING_MODES, ALIGN))
CASES_3D = list(itertools.product(["bilinear", "nearest"], PADDING_MODES, ALIGN))


def random_grid(
    shape: tuple[int, ...], spread: float = 2.5, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Random grid reaching well outside [-1, 1] (up to +-spread)."""
    return (torch.rand(shape, dtype=dtype) * 2 - 1) * spread


def grid_away_from_kinks(
    shape: tuple[int, ...], spatial: tuple[int, ...], align_corners: bool, spread: float = 2.0
) -> torch.Tensor:
    """A random float64 grid whose pixel-space coordinates keep away from the kernels' kinks.

    Kinks sit at integers (bilinear, bicubic, clamping) and at half-integers (reflection mirrors with
    align_corners=False, nearest's rounding). Fractional parts are kept in [0.15, 0.35] or [0.65, 0.85].
    """
    grid = random_grid(shape, spread)
    k = shape[-1]
    for axis in range(k):
        size = spatial[k - 1 - axis]
        if align_corners:
            pixel = (grid[..., axis] + 1) / 2 * (size - 1)
        else:
            pixel = ((grid[..., axis] + 1) * size - 1) / 2
        frac = 0.15 + 0.2 * torch.rand_like(pixel) + 0.5 * (torch.rand_like(pixel) > 0.5)
        pixel = torch.floor(pixel) + frac
        if align_corners:
            grid[..., axis] = pixel / (size - 1) * 2 - 1
        else:
            grid[..., axis] = (2 * pixel + 1) / size - 1
    return grid


@pytest.mark.parametrize(("mode", "padding_mode", "align_corners"), CASES_2D)
def test_reference_equals_grid_sample_2d(
    mode: str, padding_mode: str, align_corners: bool, assert_same_outputs_and_gradients: Callable[..., None]
) -> None:
    image = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    grid = random_grid((2, 5, 4, 2)).requires_grad_(True)
    ours = stnkit.sample(
        image, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners, backend="reference"
    )
    theirs = F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    assert_same_outputs_and_gradients(ours, theirs, (image, grid))


@pytest.mark.parametrize(("mode", "padding_mode", "align_corners"), CASES_3D)
def test_reference_equals_grid_sample_3d(
    mode: str, padding_mode: str, align_corners: bool, assert_same_outputs_and_gradients: Callable[..., None]
) -> None:
    volume = torch.randn(2, 2, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    grid = random_grid((2, 3, 2, 4, 3)).requires_grad_(True)
    ours = stnkit.sample(
        volume, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners, backend="reference"
    )
    theirs = F.grid_sample(volume, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    assert_same_outputs_and_gradients(ours, theirs, (volume, grid))


@pytest.mark.parametrize(("mode", "padding_mode", "align_corners"), CASES_2D)
def test_reference_gradcheck_and_gradgradcheck(mode: str, padding_mode: str, align_corners: bool) -> None:
    image = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    grid = grid_away_from_kinks((1, 3, 2, 2), (4, 5), align_corners).requires_grad_(True)

    def fn(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return sample_reference(
            image, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners
        )

    assert torch.autograd.gradcheck(fn, (image, grid))
    assert torch.autograd.gradgradcheck(fn, (image, grid))


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_reference_gradcheck_3d(padding_mode: str) -> None:
    volume = torch.randn(1, 1, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    grid = grid_away_from_kinks((1, 2, 2, 2, 3), (3, 4, 3), False).requires_grad_(True)

    def fn(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return sample_reference(volume, grid, padding_mode=padding_mode)

    assert torch.autograd.gradcheck(fn, (volume, grid))
    assert torch.autograd.gradgradcheck(fn, (volume, grid))


def test_reference_bilinear_is_the_papers_kernel_sum() -> None:
    # V = sum_n sum_m U[n, m] max(0, 1 - |x - m|) max(0, 1 - |y - n|), written out over every pixel.
    image = torch.randn(1, 1, 5, 6, dtype=torch.float64)
    grid = random_grid((1, 4, 3, 2), spread=1.0)
    out = sample_reference(image, grid, align_corners=True)
    x = (grid[0, ..., 0] + 1) / 2 * 5  # pixel coordinates, (4, 3)
    y = (grid[0, ..., 1] + 1) / 2 * 4
    expected = torch.zeros(4, 3, dtype=torch.float64)
    for n in range(5):
        for m in range(6):
            expected += image[0, 0, n, m] * torch.relu(1 - (x - m).abs()) * torch.relu(1 - (y - n).abs())
    torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("align_corners", ALIGN)
def test_rotation_by_90_degrees_equals_rot90(backend: str, align_corners: bool) -> None:
    image = torch.rand(2, 3, 9, 9)
    # Output (x, y) samples input (-y, x): a counter-clockwise quarter turn, like torch.rot90(k=1).
    theta = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]).expand(2, 2, 3)
    rotated = stnkit.warp(image, theta, align_corners=align_corners, backend=backend)
    torch.testing.assert_close(rotated, torch.rot90(image, 1, dims=(2, 3)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_affine3d_matches_torch_5d_path(align_corners: bool) -> None:
    volume = torch.rand(2, 2, 5, 6, 7)
    theta = torch.eye(3, 4).expand(2, 3, 4) + 0.2 * torch.randn(2, 3, 4)
    ours = stnkit.warp(volume, theta, transform="affine3d", out_size=(4, 5, 6), align_corners=align_corners)
    grid = F.affine_grid(theta, [2, 2, 4, 5, 6], align_corners=align_corners)
    theirs = F.grid_sample(volume, grid, align_corners=align_corners)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_native_and_reference_agree_in_float32() -> None:
    image = torch.rand(4, 3, 16, 12)
    grid = random_grid((4, 10, 11, 2), dtype=torch.float32)
    native = stnkit.sample(image, grid, backend="native")
    reference = stnkit.sample(image, grid, backend="reference")
    torch.testing.assert_close(native, reference, rtol=0, atol=1e-5)
