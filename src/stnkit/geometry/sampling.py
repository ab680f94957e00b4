"""Differentiable sampling of an image (or feature map) at the positions of a grid.

Two backends:
    * ``"native"``: ``torch.nn.functional.grid_sample``, fast on every device.
    * ``"reference"``: written from scratch from the paper's sampling equation
      ``V = sum_n sum_m U[n, m] k(x - m) k(y - n)`` with the bilinear kernel ``k(d) = max(0, 1 - |d|)``
      (and the nearest and bicubic kernels). Slow and obviously correct, built only from differentiable
      torch ops, so it has gradients w.r.t. input and grid and a double backward. It reproduces torch's
      border and reflection handling exactly, so the two backends are interchangeable.

Derivatives where the kernel has a kink. Bilinear sampling is not differentiable where a sampling point
sits exactly on a pixel (the identity, integer shifts, quarter turns: where every fresh transformer
starts), nor where border or reflection padding folds the coordinate. The reference follows torch (and
the fused kernel) there: with ``frac = x - floor(x)`` and ``floor(x)`` held constant, the two taps weigh
``1 - frac`` and ``frac`` (the same values as ``k``), so on a pixel the gradient is the forward difference
``U[m + 1] - U[m]``; the padded coordinate has derivative 0 on and beyond the image border (torch counts
the border as outside) and +-1 strictly inside. ``relu(1 - |d|)`` itself would give 0 there: torch's
derivative of ``|d|`` at 0 is 0, and of ``relu`` at 0 too.

The coordinate convention is described in :mod:`stnkit.geometry.grids` (and ``docs/convention.md``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from stnkit.geometry.checks import (
    check_choice,
    check_finite,
    check_flag,
    check_floating,
    check_same_batch,
    check_tensor,
)

__all__ = [
    "BACKENDS",
    "MODES",
    "PADDING_MODES",
    "check_sample_arguments",
    "check_sample_options",
    "sample",
    "sample_reference",
]

MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")
BACKENDS = ("native", "reference")

# Keys's cubic convolution parameter, the one torch (and OpenCV) use for bicubic interpolation.
_CUBIC_A = -0.75

# One tap of the separable kernel along one axis: (integer index, weight, inside-the-image mask).
Tap = tuple[Tensor, Tensor, Tensor]


def sample(
    input: Tensor,
    grid: Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
    backend: str = "native",
) -> Tensor:
    """Sample ``input`` at the normalised positions in ``grid``.

    Args:
        input: Tensor[N, C, H, W] or Tensor[N, C, D, H, W], floating point.
        grid: Tensor[N, H_out, W_out, 2] or Tensor[N, D_out, H_out, W_out, 3], last dim (x, y[, z]).
        mode: ``"bilinear"`` (trilinear in 3-D), ``"nearest"`` or ``"bicubic"`` (4-D only).
        padding_mode: value outside the image: ``"zeros"``, ``"border"`` (clamp) or ``"reflection"``.
        align_corners: torch's meaning; see the convention in :mod:`stnkit.geometry.grids`.
        backend: ``"native"`` (torch's kernel) or ``"reference"`` (from scratch, slow, exact). Both
            are twice differentiable w.r.t. input and grid.

    Returns:
        Tensor[N, C, H_out, W_out] or Tensor[N, C, D_out, H_out, W_out].

    Example:
        >>> image = torch.arange(4.0).view(1, 1, 2, 2)
        >>> grid = torch.tensor([[[[0.0, 0.0]]]])  # the centre of the image
        >>> sample(image, grid, align_corners=True)
        tensor([[[[1.5000]]]])
    """
    align_corners = check_flag(align_corners, "align_corners")
    check_sample_arguments(input, grid, mode, padding_mode, backend)
    check_finite(grid, "grid")
    return sample_unchecked(input, grid, mode, padding_mode, align_corners, backend)


def check_sample_options(input: object, mode: str, padding_mode: str, backend: str) -> Tensor:
    """Validate ``input`` and the option names of :func:`sample`; return ``input``."""
    input = check_tensor(input, "input")
    check_floating(input, "input")
    check_choice(mode, "mode", MODES)
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    check_choice(backend, "backend", BACKENDS)
    if input.dim() not in (4, 5):
        raise ValueError(
            f"input must be (N, C, H, W) or (N, C, D, H, W), got {input.dim()}-D {list(input.shape)}"
        )
    if mode == "bicubic" and input.dim() != 4:
        raise ValueError("mode 'bicubic' supports 4-D input only, got a 5-D input")
    if any(s == 0 for s in input.shape[2:]):
        raise ValueError(f"input has an empty spatial dimension: {list(input.shape)}")
    return input


def check_sample_arguments(input: object, grid: object, mode: str, padding_mode: str, backend: str) -> None:
    """Validate the arguments of :func:`sample` (all but the grid's values)."""
    input = check_sample_options(input, mode, padding_mode, backend)
    grid = check_tensor(grid, "grid")
    check_floating(grid, "grid")
    spatial_dims = input.dim() - 2
    if grid.dim() != input.dim() or grid.shape[-1] != spatial_dims:
        expected = "(N, H_out, W_out, 2)" if spatial_dims == 2 else "(N, D_out, H_out, W_out, 3)"
        raise ValueError(
            f"grid must have shape {expected} for a {input.dim()}-D input, got {list(grid.shape)}"
        )
    check_same_batch(input, "input", grid, "grid")
    if grid.dtype != input.dtype:
        raise TypeError(f"grid dtype must match input dtype {input.dtype}, got {grid.dtype}")
    if grid.device != input.device:
        raise ValueError(f"grid is on {grid.device}, input on {input.device}: move them together")


def sample_unchecked(
    input: Tensor,
    grid: Tensor,
    mode: str,
    padding_mode: str,
    align_corners: bool,
    backend: str,
) -> Tensor:
    """:func:`sample` without argument checks, for callers that already validated them."""
    if backend == "reference":
        return _sample_reference_unchecked(input, grid, mode, padding_mode, align_corners)
    return F.grid_sample(input, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


# --- the reference sampler -------------------------------------------------------------------------


def _unnormalize(coord: Tensor, size: int, align_corners: bool) -> Tensor:
    """Normalised coordinate -> pixel index space (pixel centres at integers)."""
    if align_corners:
        return (coord + 1.0) / 2.0 * (size - 1)
    return ((coord + 1.0) * size - 1.0) / 2.0


def _reflect(coord: Tensor, twice_low: int, twice_high: int) -> Tensor:
    """Reflect ``coord`` into [twice_low / 2, twice_high / 2] by mirroring at both ends repeatedly.

    The derivative is +1 or -1 by the parity of the number of mirrorings. At the mirrors themselves it
    is whatever ``abs`` and ``fmod`` give: the result lands on a border there, where :func:`_clip`
    zeroes the derivative anyway.
    """
    if twice_low == twice_high:
        return torch.zeros_like(coord)
    low = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    distance = (coord - low).abs()
    extra = torch.fmod(distance, span)
    flips = torch.floor(distance / span)
    return torch.where(flips % 2 == 0, extra + low, span - extra + low)


def _clip(coord: Tensor, size: int) -> Tensor:
    """Clamp to [0, size - 1] with torch's derivative: 1 strictly inside, 0 on the borders and beyond.

    ``Tensor.clamp`` has derivative 1 on the borders; torch's sampler counts them as outside.
    """
    strictly_inside = (coord > 0) & (coord < size - 1)
    return torch.where(strictly_inside, coord, coord.detach().clamp(0, size - 1))


def _pad_coordinate(coord: Tensor, size: int, padding_mode: str, align_corners: bool) -> Tensor:
    """Bring a pixel-space coordinate inside the image as ``border`` / ``reflection`` padding does.

    ``zeros`` leaves it alone: taps outside the image then read 0.
    """
    if padding_mode == "border":
        return _clip(coord, size)
    if padding_mode == "reflection":
        if align_corners:
            coord = _reflect(coord, 0, 2 * (size - 1))
        else:
            coord = _reflect(coord, -1, 2 * size - 1)
        return _clip(coord, size)
    return coord


def _inside(index: Tensor, size: int) -> Tensor:
    return (index >= 0) & (index < size)


def _cubic_kernel(distance: Tensor) -> Tensor:
    """Keys's cubic convolution kernel with a = -0.75 (torch's bicubic)."""
    d = distance.abs()
    a = _CUBIC_A
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    far = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
    return torch.where(d <= 1.0, near, torch.where(d < 2.0, far, torch.zeros_like(d)))


def _bilinear_taps(coord: Tensor, size: int, padding_mode: str, align_corners: bool) -> list[Tap]:
    coord = _pad_coordinate(_unnormalize(coord, size, align_corners), size, padding_mode, align_corners)
    base = torch.floor(coord).detach()  # a constant: the derivative is taken within the cell [base, base + 1)
    # The paper's k(d) = max(0, 1 - |d|) at the two taps with k != 0, d = coord - base in [0, 1):
    # k(d) = 1 - frac and k(d - 1) = frac. Linear in coord, so on a pixel (frac = 0) the derivative is the
    # forward difference, as torch's; relu(1 - |d|) would give 0 there (see the module docstring).
    frac = coord - base
    return [
        (base.long(), 1.0 - frac, _inside(base, size)),
        ((base + 1).long(), frac, _inside(base + 1, size)),
    ]


def _nearest_taps(coord: Tensor, size: int, padding_mode: str, align_corners: bool) -> list[Tap]:
    coord = _pad_coordinate(_unnormalize(coord, size, align_corners), size, padding_mode, align_corners)
    # torch rounds half to even (nearbyint), as torch.round does.
    index = torch.round(coord).detach()
    # Weight 1 with a zero derivative (not a constant): the grid then gets zero gradients, as in torch.
    weight = 1.0 + 0.0 * coord
    return [(index.long(), weight, _inside(index, size))]


def _bicubic_taps(coord: Tensor, size: int, padding_mode: str, align_corners: bool) -> list[Tap]:
    # Bicubic pads each tap's index, not the coordinate: the kernel weights come from the raw position.
    coord = _unnormalize(coord, size, align_corners)
    base = torch.floor(coord).detach()
    taps = []
    for offset in (-1, 0, 1, 2):
        index = base + offset
        weight = _cubic_kernel(coord - index)
        padded = _pad_coordinate(index, size, padding_mode, align_corners).detach()
        taps.append((padded.long(), weight, _inside(padded, size)))
    return taps


_TAPS: dict[str, Callable[[Tensor, int, str, bool], list[Tap]]] = {
    "bilinear": _bilinear_taps,
    "nearest": _nearest_taps,
    "bicubic": _bicubic_taps,
}


def sample_reference(
    input: Tensor,
    grid: Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
) -> Tensor:
    """The reference sampler: a separable kernel sum over the taps around each grid point.

    For every output position and every spatial axis it lists the input pixels (taps) with a non-zero
    kernel weight, then sums ``input[tap] * prod(weights)`` over all combinations of taps. Taps outside
    the image read zero. Same arguments and result as :func:`sample`, validated as :func:`sample`
    validates them (shapes, dtypes, devices and option names; the grid's values are not read).
    """
    align_corners = check_flag(align_corners, "align_corners")
    check_sample_arguments(input, grid, mode, padding_mode, "reference")
    return _sample_reference_unchecked(input, grid, mode, padding_mode, align_corners)


def _sample_reference_unchecked(
    input: Tensor, grid: Tensor, mode: str, padding_mode: str, align_corners: bool
) -> Tensor:
    """:func:`sample_reference` without the check, for :func:`sample_unchecked`."""
    spatial = input.shape[2:]  # (H, W) or (D, H, W)
    k = len(spatial)
    n, c = input.shape[:2]
    out_spatial = grid.shape[1:-1]
    make_taps = _TAPS[mode]
    # taps_per_axis[j]: taps along input dim (2 + j); grid component k - 1 - j drives it (x is last).
    taps_per_axis = [
        make_taps(grid[..., k - 1 - j], spatial[j], padding_mode, align_corners) for j in range(k)
    ]
    strides = [math.prod(spatial[j + 1 :]) for j in range(k)]  # row-major strides of (D,) H, W
    # Sizes spelled out, not -1: with N or C zero, -1 would be ambiguous.
    flat_input = input.reshape(n, c, math.prod(spatial))  # (N, C, prod(spatial))
    out_points = math.prod(out_spatial)
    output = input.new_zeros(n, c, *out_spatial)
    for combination in itertools.product(*taps_per_axis):
        flat_index = combination[0][0] * strides[0]
        weight, inside = combination[0][1], combination[0][2]
        for (index, tap_weight, tap_inside), stride in zip(combination[1:], strides[1:]):
            flat_index = flat_index + index * stride
            weight = weight * tap_weight
            inside = inside & tap_inside
        # Taps outside the image read 0; point their index anywhere valid, then mask the value.
        flat_index = torch.where(inside, flat_index, torch.zeros_like(flat_index))
        gathered = torch.gather(flat_input, 2, flat_index.reshape(n, 1, out_points).expand(n, c, out_points))
        gathered = gathered.view(n, c, *out_spatial)
        gathered = torch.where(inside.unsqueeze(1), gathered, torch.zeros_like(gathered))
        output = output + gathered * weight.unsqueeze(1)
    return output
