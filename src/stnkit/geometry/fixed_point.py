"""Bilinear sampling of uint8 images in integer arithmetic: the same bits on every machine.

Floating-point sampling is reproducible only where the same instructions run: torch's CPU kernels take
different code paths on different CPUs (``ATEN_CPU_CAPABILITY``), BLAS and LAPACK libraries pick theirs by
CPU too, and a last-bit difference in a sample position or weight is enough to move a pixel across a
rounding boundary of its 8-bit value. :func:`sample_fixed_point` makes every decision in integers:

1. each sample position (float64, in pixels) is rounded to the nearest multiple of ``1 / 2**bits`` pixel;
2. the four bilinear weights are then integers ``(2**bits - f) * (2**bits - g)``, ... that sum to
   ``4**bits``, and the weighted sum of the uint8 taps is an exact integer;
3. that sum is divided by ``4**bits`` and rounded half up, in integers.

So the result depends on the float positions only through step 1. Positions computed in float64 agree
between CPUs to within a few units in the last place (about 1e-14 px for images of this size), so a
different rounding in step 1 needs a position within that distance of a rounding boundary: about one
chance in 1e11 per position. The tests regenerate the canonical data sets under different CPU code paths
and compare hashes.

Used by :mod:`stnkit.data.distortions` for the distorted-MNIST variants, whose canonical test sets are
pinned by SHA-256.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stnkit.geometry.checks import check_shape, check_tensor

__all__ = ["sample_fixed_point", "sample_fixed_point_reference"]

# 1/256 px steps: finer than anything visible in 8-bit images, and small enough that the 4 weighted taps
# (weights up to 2**16, values up to 255) sum in int32.
DEFAULT_FRACTION_BITS = 8
_MAX_FRACTION_BITS = 11  # 255 * 4**11 < 2**31


def _check_arguments(images: object, grid: object, fraction_bits: int) -> tuple[Tensor, Tensor]:
    images = check_tensor(images, "images")
    grid = check_tensor(grid, "grid")
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (N, C, H, W), got {images.dtype}")
    check_shape(images, "images", (None, None, None, None), "(N, C, H, W)")
    check_shape(grid, "grid", (images.shape[0], None, None, 2), f"({images.shape[0]}, H_out, W_out, 2)")
    if grid.dtype != torch.float64:
        raise TypeError(f"grid must be float64 (positions are rounded from float64), got {grid.dtype}")
    if not 0 <= fraction_bits <= _MAX_FRACTION_BITS:
        raise ValueError(f"fraction_bits must be in [0, {_MAX_FRACTION_BITS}], got {fraction_bits}")
    return images, grid


def _fixed_point_positions(coord: Tensor, size: int, align_corners: bool, fraction_bits: int) -> Tensor:
    """Normalised float64 coordinates -> int64 pixel positions in units of 1 / 2**bits pixel.

    Non-finite and far-outside positions become a position two pixels outside the image (every tap
    reads zero there), so that nothing huge is ever converted to an integer.
    """
    if align_corners:
        pixels = (coord + 1.0) / 2.0 * (size - 1)
    else:
        pixels = ((coord + 1.0) * size - 1.0) / 2.0
    outside = -2.0
    pixels = torch.nan_to_num(pixels, nan=outside).clamp_(outside, size + 1.0)  # clamp takes the infinities
    # Multiplying by a power of two is exact, so the only rounding of the position is this one.
    return torch.round(pixels * 2.0**fraction_bits).long()


def _normalized(pixels: Tensor, size: int, align_corners: bool) -> Tensor:
    """Pixel positions -> normalised coordinates (the inverse of the unnormalisation above)."""
    if align_corners:
        return pixels * (2.0 / max(size - 1, 1)) - 1.0
    return (2.0 * pixels + 1.0) / size - 1.0


def sample_fixed_point(
    images: Tensor,
    grid: Tensor,
    *,
    align_corners: bool = False,
    fraction_bits: int = DEFAULT_FRACTION_BITS,
) -> Tensor:
    """Bilinear sampling with zero padding and exact integer rounding; bit-identical on every machine.

    The same sampling as ``F.grid_sample(images / 255, grid, padding_mode="zeros")`` followed by
    rounding to 8 bits, except that sample positions are first rounded to ``1 / 2**fraction_bits``
    pixel (see the module docstring for why).

    The interpolation itself runs in torch's float64 sampler on the rounded positions: the exact result
    is an integer multiple of ``4**-bits`` (at most ``255``), and float64 gets within about 1e-13 of it,
    so rounding to that multiple recovers the exact integer sum whatever the CPU; the final rounding to
    8 bits is then done on that integer. :func:`sample_fixed_point_reference` computes the same with
    Python fractions, and the tests hold the two to each other bit for bit.

    Args:
        images: uint8 Tensor[N, C, H, W].
        grid: float64 Tensor[N, H_out, W_out, 2], normalised (x, y) positions as in :func:`stnkit.sample`.
        align_corners: torch's meaning.
        fraction_bits: sub-pixel precision of the sample positions, 0 to 11 (default 8: 1/256 px).

    Returns:
        uint8 Tensor[N, C, H_out, W_out]: the interpolated values rounded to the nearest integer (halves up).

    Example:
        >>> images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
        >>> halfway = torch.zeros(1, 1, 1, 2, dtype=torch.float64)  # one sample, at the image's centre
        >>> sample_fixed_point(images, halfway)
        tensor([[[[128]]]], dtype=torch.uint8)
    """
    images, grid = _check_arguments(images, grid, fraction_bits)
    height, width = images.shape[2:]
    unit = 2.0**fraction_bits
    snapped = []
    for axis, size in ((0, width), (1, height)):
        steps = _fixed_point_positions(grid[..., axis], size, align_corners, fraction_bits)
        snapped.append(_normalized(steps.double() / unit, size, align_corners))
    values = F.grid_sample(
        images.double(), torch.stack(snapped, dim=-1), mode="bilinear", padding_mode="zeros",
        align_corners=align_corners,
    )  # fmt: skip
    # total = sum of (integer weights) * (uint8 taps), an integer < 2**27: exact once rounded.
    total = torch.round(values * unit**2)
    return torch.floor((total + unit**2 / 2) / unit**2).to(torch.uint8)


def sample_fixed_point_reference(
    images: Tensor,
    grid: Tensor,
    *,
    align_corners: bool = False,
    fraction_bits: int = DEFAULT_FRACTION_BITS,
) -> Tensor:
    """:func:`sample_fixed_point` written pixel by pixel with Python integers and fractions (slow).

    For testing on small inputs: the rounded position is ``Fraction(round(p * 2**bits), 2**bits)`` and
    the value is the exact rational bilinear interpolation, rounded half up.
    """
    from fractions import Fraction

    images, grid = _check_arguments(images, grid, fraction_bits)
    batch, channels, height, width = images.shape
    out_h, out_w = grid.shape[1:3]
    scale = 2**fraction_bits
    qx = _fixed_point_positions(grid[..., 0], width, align_corners, fraction_bits).tolist()
    qy = _fixed_point_positions(grid[..., 1], height, align_corners, fraction_bits).tolist()
    pixels = images.tolist()
    out = torch.zeros(batch, channels, out_h, out_w, dtype=torch.uint8)
    for n in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                x, y = Fraction(qx[n][i][j], scale), Fraction(qy[n][i][j], scale)
                left, top = x.numerator // x.denominator, y.numerator // y.denominator
                for c in range(channels):
                    value = Fraction(0)
                    for row in (top, top + 1):
                        for col in (left, left + 1):
                            if 0 <= row < height and 0 <= col < width:
                                weight = (1 - abs(x - col)) * (1 - abs(y - row))
                                value += weight * pixels[n][c][row][col]
                    out[n, c, i, j] = int(value + Fraction(1, 2))  # floor(v + 1/2): halves up
    return out
