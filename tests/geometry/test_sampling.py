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


# --- special points: whole pixels, half pixels, borders and beyond ---------------------------------------
#
# Bilinear sampling has kinks on pixel centres and padding folds coordinates at the borders; there the
# reference must give torch's one-sided derivatives. The sizes make normalised <-> pixel conversion exact
# in binary (W a power of 2 with align_corners=False, W - 1 one with True), so both samplers see exactly
# the same pixel coordinates whatever formula each uses to unnormalise.


def exact_side(align_corners: bool) -> int:
    return 5 if align_corners else 4


def to_normalized(pixel: torch.Tensor, size: int, align_corners: bool) -> torch.Tensor:
    if align_corners:
        return pixel * (2.0 / (size - 1)) - 1.0
    return (2.0 * pixel + 1.0) / size - 1.0


def pixel_lattice(side: int, dims: int) -> torch.Tensor:
    """Every whole-pixel position of a side^dims image in pixel units, last dim (x, y[, z])."""
    axes = torch.meshgrid(*[torch.arange(side, dtype=torch.float64)] * dims, indexing="ij")
    return torch.stack(axes[::-1], dim=-1)  # (side,) * dims + (dims,); x is the last tensor dim


def border_values(side: int) -> torch.Tensor:
    """Pixel coordinates on and around the borders, the reflection mirrors and their repeats."""
    s = float(side)
    values = [-s - 0.5, -s + 1, -2.5, -1.5, -1, -0.5, -0.25, 0, 0.5, 1, s - 1.5, s - 1, s - 0.5, s]
    values += [s + 0.5, 2 * s - 2, 2 * s - 1, 2 * s - 0.5, 2 * s + 1]
    return torch.tensor(values, dtype=torch.float64)


def special_pixels(kind: str, side: int, dims: int) -> torch.Tensor:
    """A batch of special sampling positions in pixel units: (B, *spatial_out, dims)."""
    lattice = pixel_lattice(side, dims)
    if kind == "identity":
        return lattice[None]
    if kind == "integer_shifts":
        shifts = [(1, 0, 0), (0, -1, 0), (2, 1, 1), (-3, 2, -1), (side, 0, 0)]
        return torch.stack([lattice + torch.tensor(s[:dims], dtype=torch.float64) for s in shifts])
    if kind == "quarter_turns":
        # Turns about the image centre in the (x, y) plane: (x, y) -> (side - 1 - y, x), and so on.
        x, y, far = lattice[..., 0], lattice[..., 1], side - 1
        turns = [(far - y, x), (far - x, far - y), (y, far - x)]
        return torch.stack([torch.stack((u, v, *lattice.unbind(-1)[2:]), dim=-1) for u, v in turns])
    if kind == "half_pixels":
        steps = [(0.5, 0, 0), (0, 0.5, 0), (0.5, 0.5, 0.5), (-0.5, 1.5, -0.5)]
        return torch.stack([lattice + torch.tensor(s[:dims], dtype=torch.float64) for s in steps])
    if kind == "borders_and_outside":
        values = border_values(side)
        axes = torch.meshgrid(*[values] * dims, indexing="ij")
        return torch.stack(axes[::-1], dim=-1)[None]
    raise AssertionError(kind)


SPECIAL_KINDS = ["identity", "integer_shifts", "quarter_turns", "half_pixels", "borders_and_outside"]


def special_grid(kind: str, dims: int, align_corners: bool) -> torch.Tensor:
    side = exact_side(align_corners)
    grid = to_normalized(special_pixels(kind, side, dims), side, align_corners)
    # The conversion must be exact, or the test would compare samplers at different points.
    back = (grid + 1) / 2 * (side - 1) if align_corners else ((grid + 1) * side - 1) / 2
    assert torch.equal(back, special_pixels(kind, side, dims))
    return grid


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
@pytest.mark.parametrize(("mode", "padding_mode", "align_corners"), CASES_2D)
def test_reference_equals_grid_sample_at_special_points_2d(
    kind: str,
    mode: str,
    padding_mode: str,
    align_corners: bool,
    assert_same_outputs_and_gradients: Callable[..., None],
) -> None:
    grid = special_grid(kind, 2, align_corners).requires_grad_(True)
    side = exact_side(align_corners)
    image = torch.randn(grid.shape[0], 2, side, side, dtype=torch.float64, requires_grad=True)
    options = {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}
    ours = sample_reference(image, grid, **options)
    theirs = F.grid_sample(image, grid, **options)
    assert_same_outputs_and_gradients(ours, theirs, (image, grid))


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
@pytest.mark.parametrize(("mode", "padding_mode", "align_corners"), CASES_3D)
def test_reference_equals_grid_sample_at_special_points_3d(
    kind: str,
    mode: str,
    padding_mode: str,
    align_corners: bool,
    assert_same_outputs_and_gradients: Callable[..., None],
) -> None:
    grid = special_grid(kind, 3, align_corners).requires_grad_(True)
    side = exact_side(align_corners)
    volume = torch.randn(grid.shape[0], 2, side, side, side, dtype=torch.float64, requires_grad=True)
    options = {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}
    ours = sample_reference(volume, grid, **options)
    theirs = F.grid_sample(volume, grid, **options)
    assert_same_outputs_and_gradients(ours, theirs, (volume, grid))


@pytest.mark.parametrize("align_corners", ALIGN)
def test_reference_bilinear_gradient_on_a_pixel_is_the_forward_difference(align_corners: bool) -> None:
    # Spelled out on one row: at whole pixels d out / d x = (I[m + 1] - I[m]) * dx_pixel / dx_normalised.
    side = exact_side(align_corners)
    row = torch.randn(1, 1, 1, side, dtype=torch.float64)
    pixels = torch.arange(side - 1, dtype=torch.float64)  # every pixel with a right-hand neighbour
    grid = torch.stack((to_normalized(pixels, side, align_corners), torch.zeros_like(pixels)), dim=-1)
    grid = grid.view(1, 1, side - 1, 2).requires_grad_(True)
    (grad,) = torch.autograd.grad(sample_reference(row, grid, align_corners=align_corners).sum(), grid)
    scale = (side - 1) / 2 if align_corners else side / 2
    expected = (row[0, 0, 0, 1:] - row[0, 0, 0, :-1]) * scale
    torch.testing.assert_close(grad[0, 0, :, 0], expected, rtol=0, atol=1e-12)


# Whole-pixel warps of an 8 x 8 image (align_corners=False: one pixel is 2 / 8 in normalised units).
WHOLE_PIXEL_WARPS = {
    "identity": ("affine", [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
    "shift": ("translation", [2 / 8, -4 / 8]),
    "quarter_turn_and_shift": ("similarity", [0.0, 1.0, 2 / 8, 0.0]),
    "half_turn": ("affine", [-1.0, 0.0, 0.0, 0.0, -1.0, 2 / 8]),
}


@pytest.mark.parametrize("name", list(WHOLE_PIXEL_WARPS))
def test_reference_theta_gradient_at_whole_pixel_warps_equals_torch(name: str) -> None:
    # Where a fresh SpatialTransformer starts (the identity) and other whole-pixel warps: the params
    # gradient through the reference equals the one through torch's grid_sample on the same exact grid.
    transform, values = WHOLE_PIXEL_WARPS[name]
    image = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    params = torch.tensor([values, values], dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ours = stnkit.warp(image, params, transform=transform, backend="reference")
    (grad_ours,) = torch.autograd.grad(ours, params, upstream)
    grid = stnkit.get_transform(transform).grid(params, image.shape)
    theirs = F.grid_sample(image, grid, align_corners=False)
    (grad_theirs,) = torch.autograd.grad(theirs, params, upstream)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-10, atol=1e-10)
    assert grad_ours.abs().max() > 1.0  # not the vanishing gradient of relu(1 - |d|)


@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 0, 5, 5), (0, 2, 4, 4, 4), (2, 0, 4, 4, 4)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_an_empty_batch_or_no_channels_gives_an_empty_output_on_both_backends(
    shape: tuple[int, ...], mode: str
) -> None:
    spatial_dims = len(shape) - 2
    grid = torch.rand(shape[0], *([3] * spatial_dims), spatial_dims) * 2 - 1
    outputs = [
        stnkit.sample(torch.rand(shape), grid, mode=mode, backend=backend)
        for backend in ("native", "reference")
    ]
    assert outputs[0].shape == outputs[1].shape == (shape[0], shape[1], *([3] * spatial_dims))
