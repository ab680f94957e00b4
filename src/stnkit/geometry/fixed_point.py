"""Bilinear sampling of uint8 images in exact arithmetic: the same bits on every machine.

Floating-point sampling is reproducible only where the same instructions run: torch's CPU kernels take
different code paths on different CPUs (``ATEN_CPU_CAPABILITY``), BLAS and LAPACK libraries pick theirs by
CPU too, and a last-bit difference in a sample position or weight is enough to move a pixel across a
rounding boundary of its 8-bit value. :func:`sample_fixed_point` makes every decision exactly:

1. each sample position (float64, in pixels) is rounded to the nearest multiple of ``1 / 2**bits`` pixel;
2. the four bilinear weights are then multiples of ``4**-bits`` that sum to 1, and the weighted sum of
   the uint8 taps is an exact multiple of ``4**-bits`` (computed without any rounding);
3. that sum is rounded to the nearest integer, halves up, exactly.

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

from stnkit.geometry.checks import check_flag, check_shape, check_tensor

__all__ = ["sample_fixed_point", "sample_fixed_point_reference"]

# 1/256 px steps: finer than anything visible in 8-bit images. With 8 bits, every quantity of the
# interpolation is exact in float32 (see sample_fixed_point).
DEFAULT_FRACTION_BITS = 8
_MAX_FRACTION_BITS = 8  # weight products (2 * bits) times 8-bit values must fit float32's 24 bits


def _check_arguments(
    images: object, grid: object, align_corners: object, fraction_bits: int
) -> tuple[Tensor, Tensor, bool]:
    align_corners = check_flag(align_corners, "align_corners")
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
    return images, grid, align_corners


def _snap(pixels: Tensor, low: float, high: float, fraction_bits: int) -> Tensor:
    """Pixel positions clipped to [low, high] (NaN to ``low``) and rounded to multiples of 1 / 2**bits.

    Clipping keeps every tap of a far-outside position outside the image (it reads zero) and keeps
    huge values and NaN away from the rounding; multiplying by a power of two is exact, so the only
    rounding of a position is the one here.
    """
    unit = 2.0**fraction_bits
    return torch.nan_to_num_(pixels, nan=low).clamp_(low, high).mul_(unit).round_().div_(unit)


def _snapped_pixels(grid: Tensor, height: int, width: int, align_corners: bool, fraction_bits: int) -> Tensor:
    """Normalised float64 positions (..., 2) -> pixel positions (x, y), multiples of 1 / 2**bits.

    ``pixel = coord * scale + offset`` per axis (torch's unnormalisation as one multiply and one add,
    with exact ``scale`` and ``offset``); positions are clipped to two pixels outside the image.
    """

    def scale_offset(size: int) -> tuple[float, float]:
        offset = (size - 1) / 2
        return (offset if align_corners else size / 2), offset

    if height == width:  # one scale for both axes: whole-grid operations (per-axis slices are slow)
        scale, offset = scale_offset(width)
        return _snap(grid * scale + offset, -2.0, width + 1.0, fraction_bits)
    axes = []
    for axis, size in ((0, width), (1, height)):
        scale, offset = scale_offset(size)
        axes.append(_snap(grid[..., axis] * scale + offset, -2.0, size + 1.0, fraction_bits))
    return torch.stack(axes, dim=-1)


def _power_of_two_plus_one(size: int) -> int:
    """The least ``2**k + 1 >= size`` (k >= 0)."""
    return (1 << max(size - 2, 0).bit_length()) + 1


def sample_fixed_point(
    images: Tensor,
    grid: Tensor,
    *,
    align_corners: bool = False,
    fraction_bits: int = DEFAULT_FRACTION_BITS,
) -> Tensor:
    """Bilinear sampling with zero padding and exact rounding to 8 bits; bit-identical on every machine.

    The same sampling as ``F.grid_sample(images / 255, grid, padding_mode="zeros")`` followed by
    rounding to 8 bits, except that sample positions are first rounded to ``1 / 2**fraction_bits``
    pixel (see the module docstring for why).

    How it stays exact while using torch's fast float32 sampler: the images are zero-padded to a side
    of ``2**k + 1`` and sampled with ``align_corners=True``, so that the normalised coordinate of every
    rounded position, and torch's conversion back to pixels, are exact binary fractions. The bilinear
    weights are then multiples of 1/256, their products times 8-bit values need at most 24 bits, and so
    every product and partial sum of the interpolation is exact in float32, in any order, with or
    without fused multiply-adds: the result is exactly the rational bilinear value, which is rounded
    (halves up) exactly too. :func:`sample_fixed_point_reference` computes the same with Python
    fractions, and the tests hold the two to each other bit for bit.

    Args:
        images: uint8 Tensor[N, C, H, W].
        grid: float64 Tensor[N, H_out, W_out, 2], normalised (x, y) positions as in :func:`stnkit.sample`.
        align_corners: torch's meaning.
        fraction_bits: sub-pixel precision of the sample positions, 0 to 8 (default 8: 1/256 px).

    Returns:
        uint8 Tensor[N, C, H_out, W_out]: the interpolated values rounded to the nearest integer (halves up).

    Example:
        >>> images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
        >>> halfway = torch.zeros(1, 1, 1, 2, dtype=torch.float64)  # one sample, at the image's centre
        >>> sample_fixed_point(images, halfway)
        tensor([[[[128]]]], dtype=torch.uint8)
    """
    images, grid, align_corners = _check_arguments(images, grid, align_corners, fraction_bits)
    height, width = images.shape[2:]
    side = _power_of_two_plus_one(max(height, width))
    padded = F.pad(images, (0, side - width, 0, side - height)).float()  # zeros: what lies outside anyway
    pixels = _snapped_pixels(grid, height, width, align_corners, fraction_bits)
    # align_corners=True on a side of 2**k + 1: pixel p is at p * 2**(1 - k) - 1, exact in float32.
    normalized = pixels.mul_(2.0 / (side - 1)).sub_(1.0).float()
    values = F.grid_sample(padded, normalized, mode="bilinear", padding_mode="zeros", align_corners=True)
    unit = 4.0**fraction_bits
    # values * unit is an integer below 2**24; floor((that + unit / 2) / unit) rounds halves up, exactly.
    return values.mul_(unit).add_(unit / 2).div_(unit).floor_().to(torch.uint8)


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

    images, grid, align_corners = _check_arguments(images, grid, align_corners, fraction_bits)
    batch, channels, height, width = images.shape
    out_h, out_w = grid.shape[1:3]
    unit = 2**fraction_bits
    # Exact integers in units of 1 / 2**bits pixel: (N, H_out, W_out, 2) nested lists.
    steps = (_snapped_pixels(grid, height, width, align_corners, fraction_bits) * unit).long().tolist()
    pixels = images.tolist()
    out = torch.zeros(batch, channels, out_h, out_w, dtype=torch.uint8)
    for n in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                x, y = (Fraction(step, unit) for step in steps[n][i][j])
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
