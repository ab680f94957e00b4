"""Identity parameters give back the input, for every transform, convention and padding."""

from __future__ import annotations

import itertools

import pytest
import torch

import stnkit
from stnkit.geometry import MODES, PADDING_MODES

TRANSFORMS_2D = [name for name in stnkit.list_transforms() if name != "affine3d"]
SIZES = [(5, 5), (6, 6), (7, 4), (4, 9), (1, 6)]
CASES = list(itertools.product(TRANSFORMS_2D, [False, True], PADDING_MODES, ["native", "reference"]))


def identity_batch(transform: str, batch: int, dtype: torch.dtype) -> torch.Tensor:
    return stnkit.identity_params(transform, batch, dtype=dtype)


@pytest.mark.parametrize(("transform", "align_corners", "padding_mode", "backend"), CASES)
def test_identity_reproduces_input_float64(
    transform: str, align_corners: bool, padding_mode: str, backend: str
) -> None:
    for height, width in SIZES:
        image = torch.randn(2, 3, height, width, dtype=torch.float64)
        params = identity_batch(transform, 2, torch.float64)
        for mode in MODES:
            out = stnkit.warp(
                image,
                params,
                transform=transform,
                mode=mode,
                padding_mode=padding_mode,
                align_corners=align_corners,
                backend=backend,
            )
            error = (out - image).abs().max().item()
            assert error <= 1e-10, (height, width, mode, error)


@pytest.mark.parametrize(
    ("transform", "align_corners"), list(itertools.product(TRANSFORMS_2D, [False, True]))
)
@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("mode", MODES)
def test_identity_reproduces_input_float32(
    transform: str, align_corners: bool, backend: str, mode: str
) -> None:
    # atol 1e-5 at sizes up to 64 (torch's own affine_grid round trip drifts further at larger sizes);
    # every mode, as docs/convention.md states it, not only the bilinear default.
    for height, width in [(64, 64), (63, 50), (28, 28), (17, 64)]:
        image = torch.rand(2, 1, height, width)
        params = identity_batch(transform, 2, torch.float32)
        for padding_mode in PADDING_MODES:
            out = stnkit.warp(
                image,
                params,
                transform=transform,
                mode=mode,
                padding_mode=padding_mode,
                align_corners=align_corners,
                backend=backend,
            )
            assert (out - image).abs().max().item() <= 1e-5, (height, width, padding_mode)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_identity_reproduces_volume(align_corners: bool, padding_mode: str, backend: str) -> None:
    volume = torch.randn(2, 2, 4, 5, 6, dtype=torch.float64)
    params = identity_batch("affine3d", 2, torch.float64)
    for mode in ("bilinear", "nearest"):
        out = stnkit.warp(
            volume,
            params,
            transform="affine3d",
            mode=mode,
            padding_mode=padding_mode,
            align_corners=align_corners,
            backend=backend,
        )
        assert (out - volume).abs().max().item() <= 1e-10


def test_identity_grid_is_exact_for_affine() -> None:
    # The broadcast grid keeps identity rows exact: 1 * x + 0 * y + 0 == x bit for bit.
    theta = torch.eye(2, 3)[None]
    grid = stnkit.affine_grid(theta, (1, 1, 224, 224))
    xs = stnkit.geometry.normalized_coordinates(224, align_corners=False, dtype=torch.float32)
    assert torch.equal(grid[0, 0, :, 0], xs)
    assert torch.equal(grid[0, :, 0, 1], xs)
