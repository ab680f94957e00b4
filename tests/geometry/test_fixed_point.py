"""sample_fixed_point: integer bilinear sampling held to its pure-Python reference and to torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stnkit.geometry import affine_grid, sample_fixed_point
from stnkit.geometry.fixed_point import sample_fixed_point_reference

ALIGN = [False, True]


def images(n: int = 2, c: int = 2, h: int = 5, w: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def identity_grid(n: int, h: int, w: int, align_corners: bool) -> torch.Tensor:
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64).repeat(n, 1, 1)
    return affine_grid(theta, (n, 1, h, w), align_corners=align_corners)


def pixel_grid(points_px: torch.Tensor, h: int, w: int, align_corners: bool) -> torch.Tensor:
    """(N, H_out, W_out, 2) pixel positions (x, y) -> normalised grid."""
    size = torch.tensor([w, h], dtype=torch.float64)
    if align_corners:
        return points_px * 2 / (size - 1) - 1
    return (2 * points_px + 1) / size - 1


@pytest.mark.parametrize("align_corners", ALIGN)
def test_matches_reference_on_random_positions(align_corners: bool) -> None:
    image = images()
    grid = torch.rand(2, 4, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2.8 - 1.4
    expected = sample_fixed_point_reference(image, grid, align_corners=align_corners)
    assert torch.equal(sample_fixed_point(image, grid, align_corners=align_corners), expected)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_special_points_match_reference(align_corners: bool) -> None:
    # Whole pixels, half pixels (exact ties of the 8-bit rounding), the borders, just outside, far outside.
    h, w = 5, 7
    xs = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5, 3.0, w - 1.5, w - 1.0, w - 0.5, w + 0.0, 40.0])
    ys = torch.tensor([-1.0, -0.5, 0.0, 1.5, h - 1.0, h - 0.5, h + 2.0])
    yy, xx = torch.meshgrid(ys.double(), xs.double(), indexing="ij")
    points = torch.stack((xx, yy), dim=-1)[None].repeat(2, 1, 1, 1)
    grid = pixel_grid(points, h, w, align_corners)
    image = images(h=h, w=w)
    expected = sample_fixed_point_reference(image, grid, align_corners=align_corners)
    assert torch.equal(sample_fixed_point(image, grid, align_corners=align_corners), expected)


def test_ties_round_half_up() -> None:
    image = torch.tensor([[[[0, 1, 2, 255]]]], dtype=torch.uint8)
    points = torch.tensor([[[[0.5, 0.0], [1.5, 0.0], [2.5, 0.0]]]], dtype=torch.float64)
    out = sample_fixed_point(image, pixel_grid(points, 1, 4, False))
    assert out.flatten().tolist() == [1, 2, 129]  # 0.5 -> 1, 1.5 -> 2, 128.5 -> 129


@pytest.mark.parametrize("align_corners", ALIGN)
def test_identity_gives_back_the_input(align_corners: bool) -> None:
    image = images(h=9, w=11)
    out = sample_fixed_point(image, identity_grid(2, 9, 11, align_corners), align_corners=align_corners)
    assert torch.equal(out, image)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_within_rounding_of_grid_sample(align_corners: bool) -> None:
    image = images(n=3, c=1, h=28, w=28, seed=3)
    theta = torch.tensor([[0.9, -0.3, 0.1], [0.35, 0.8, -0.2]], dtype=torch.float64).repeat(3, 1, 1)
    grid = affine_grid(theta, (3, 1, 30, 26), align_corners=align_corners)
    expected = F.grid_sample(image.double(), grid, align_corners=align_corners)
    out = sample_fixed_point(image, grid, align_corners=align_corners).double()
    # Positions move by at most 1/512 px per axis (255/512 in value each), values by 1/2 in rounding.
    assert (out - expected).abs().max() <= 0.5 + 2 * 255 / 512


def test_non_finite_and_huge_positions_read_zero() -> None:
    image = torch.full((1, 1, 4, 4), 200, dtype=torch.uint8)
    grid = torch.tensor([[[[float("nan"), 0.0], [float("inf"), 0.0], [-float("inf"), 0.0], [1e300, 0.0]]]])
    assert sample_fixed_point(image, grid.double()).flatten().tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("image", "grid", "bits", "error", "match"),
    [
        (torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 2, dtype=torch.float64), 8, TypeError, "images must be uint8"),
        (torch.zeros(1, 2, 2, dtype=torch.uint8), torch.zeros(1, 1, 1, 2, dtype=torch.float64), 8, ValueError,
         r"images must have shape \(N, C, H, W\)"),
        (torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, 1, 1, 2), 8, TypeError, "grid must be float64"),
        (torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(2, 1, 1, 2, dtype=torch.float64), 8, ValueError,
         r"grid must have shape \(1, H_out, W_out, 2\)"),
        (torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, 1, 1, 2, dtype=torch.float64), 9, ValueError,
         r"fraction_bits must be in \[0, 8\]"),
    ],
)  # fmt: skip
def test_bad_arguments(image: torch.Tensor, grid: torch.Tensor, bits: int, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        sample_fixed_point(image, grid, fraction_bits=bits)
