"""The paper's distorted-MNIST variants (R, RTS, P, E, TC) and MNIST addition, on stnkit's warps.

Every variant is two steps, so that randomness and pixels are separate:

* ``sample_*_params(n, generator, ...)`` draws the random parameters of ``n`` images from a
  ``torch.Generator`` (small tensors; the loaders draw a whole epoch at once in image order, so
  an image's distortion does not depend on batch size, workers or ranks);
* ``apply_*(digits, params, ...)`` makes the images of a whole batch at once.

Every pixel is computed so that it comes out bit-identical on every machine (x86-64 or ARM, any torch
CPU code path, with or without the fused kernel): the canonical test sets are the yardstick that test
errors measured anywhere are compared on. Random numbers come from integer generators or float64
draws; positions are computed in float64 and sampled by :func:`stnkit.geometry.sample_fixed_point`,
which rounds them to 1/256 px and interpolates the uint8 digits exactly (no rounding); TC places
digits and clutter with integer indexing and saturating integer sums. So the images are uint8 values
(returned as float32 multiples of 1/255), and a different last bit in a float64 position changes a
pixel only if the position lies within ~1e-14 px of a 1/256 px boundary (see docs/data.md).

Geometry is written in pixels and converted to stnkit's normalised convention
(``align_corners=False``: a W-pixel image spans [-1, 1], so one pixel is 2 / W; parameters map
output positions to input positions). For a digit of side ``W_in`` drawn into a canvas of side
``W_out``, rotated by ``a``, scaled by ``s`` and moved by ``t`` pixels (centre to centre), the
output-to-input affine map is::

    x_in = (W_out / W_in) / s * R(-a) @ x_out  -  2 / (W_in * s) * R(-a) @ t

The settings (see docs/data.md for the reasons and which ones are our choice):

====== ===================================================================================
R      rotation uniform in [-90, 90] degrees, 28x28.
RTS    rotation uniform in [-45, 45] degrees, scale uniform in [0.7, 1.2], placed uniformly at
       random in a 42x42 canvas so that the scaled 28x28 frame stays inside.
P      scale uniform in [0.75, 1.0], then the four corners of the scaled frame moved by
       N(0, sigma^2) per coordinate, sigma = 0.25 (normalised, = 3.5 px on 28x28), truncated at
       2 sigma; draws whose horizon line crosses the canvas are redrawn; 28x28 projective warp.
E      thin-plate spline on the 4x4 lattice of :func:`stnkit.geometry.tps_lattice` (corners
       included, spacing 28/3 px), each control point moved by N(0, 1.5^2) px; 28x28.
TC     the digit at a uniformly random integer offset in a 60x60 canvas, plus 6 clutter patches
       of 6x6 px cropped from the central 20x20 box of random other digits of the same split,
       placed uniformly; patches are added and clipped to [0, 1], then the digit likewise.
ADD    two independent RTS digits (the image and a random partner) in 2 channels of 42x42;
       label = sum of the two digits (19 classes).
====== ===================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from stnkit.data.pixels import to_uint8, to_unit_float
from stnkit.geometry import affine_grid, projective_grid, tps_grid_matrix, tps_lattice
from stnkit.geometry.fixed_point import sample_fixed_point

__all__ = [
    "DISTORTIONS",
    "Distortion",
    "apply_elastic",
    "apply_mnist_add",
    "apply_projective",
    "apply_rotation",
    "apply_rts",
    "apply_translated_cluttered",
    "distort",
    "get_distortion",
    "sample_elastic_params",
    "sample_mnist_add_params",
    "sample_projective_params",
    "sample_rotation_params",
    "sample_rts_params",
    "sample_translated_cluttered_params",
    "similarity_theta",
]

Params = dict[str, Tensor]

DIGIT = 28  # MNIST side in pixels

# R
R_MAX_DEGREES = 90.0
# RTS (the 42x42 canvas of the classic reproductions)
RTS_MAX_DEGREES = 45.0
RTS_SCALE = (0.7, 1.2)
RTS_CANVAS = 42
# P
P_SCALE = (0.75, 1.0)
P_SIGMA = 0.25  # normalised units of the 28x28 frame (3.5 px)
P_TRUNCATE = 2.0  # in sigmas
P_MIN_W = 0.1  # redraw corners whose homography has w < this anywhere on the canvas
# E
E_NUM_POINTS = 16  # 4x4 lattice
E_SIGMA_PX = 1.5
# TC
TC_CANVAS = 60
TC_NUM_CLUTTER = 6
TC_CLUTTER_SIZE = 6
TC_CLUTTER_BOX = (4, 24)  # crop inside rows/cols [4, 24): the 20x20 box MNIST digits sit in


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _normal(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """float32 N(0, 1) draws, the same bits on every CPU.

    torch's float32 ``randn`` takes a vectorised Box-Muller path on AVX2 CPUs and a scalar one elsewhere,
    which differ in the last bits; its float64 draws take the scalar path on every CPU. Rounding those to
    float32 absorbs any last-bit difference of the C library's log and cos, so the parameters (and their
    hash) come out identical on every machine.
    """
    return torch.randn(shape, generator=generator, dtype=torch.float64).float()


def similarity_theta(
    angle: Tensor, scale: Tensor, shift_px: Tensor, *, in_size: int, out_size: int
) -> Tensor:
    """Output-to-input affine matrices that draw a rotated, scaled, moved image into a canvas.

    Args:
        angle: Tensor[N], radians (positive turns from +x towards +y, i.e. clockwise on screen).
        scale: Tensor[N], size of the drawn image relative to the input.
        shift_px: Tensor[N, 2], (x, y) offset in output pixels of the image centre from the
            canvas centre.
        in_size: side of the (square) input in pixels.
        out_size: side of the (square) output canvas in pixels.

    Returns:
        Tensor[N, 2, 3] for :func:`stnkit.warp` with ``align_corners=False``.

    Example:
        >>> theta = similarity_theta(torch.zeros(1), torch.ones(1), torch.zeros(1, 2),
        ...                          in_size=28, out_size=28)
        >>> torch.equal(theta, torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]))
        True
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    # R(-a): undo the rotation (output -> input).
    inverse_rotation = torch.stack((torch.stack((cos, sin), -1), torch.stack((-sin, cos), -1)), -2)
    linear = inverse_rotation * (out_size / in_size / scale)[:, None, None]  # (N, 2, 2)
    offset = -(inverse_rotation @ shift_px[:, :, None]) * (2.0 / (in_size * scale))[:, None, None]
    return torch.cat((linear, offset), dim=2)


def _sample(digits: Tensor, grid: Tensor) -> Tensor:
    """Digits (B, [C,] 28, 28) at the float64 positions of ``grid`` (B, H, W, 2) -> float32 (B, C, H, W)."""
    return to_unit_float(sample_fixed_point(to_uint8(digits, "digits"), grid))


def _affine(digits: Tensor, theta: Tensor, out_size: int) -> Tensor:
    """Digits through float64 output-to-input matrices ``theta`` (B, 2, 3) into an ``out_size`` square."""
    size = (theta.shape[0], 1, out_size, out_size)
    return _sample(digits, affine_grid(theta.double(), size))


# --- R -------------------------------------------------------------------------------------


def sample_rotation_params(n: int, generator: torch.Generator) -> Params:
    """R: ``angle`` Tensor[n] in radians, uniform in [-90, 90] degrees."""
    max_angle = math.radians(R_MAX_DEGREES)
    return {"angle": _uniform(n, -max_angle, max_angle, generator)}


def apply_rotation(digits: Tensor, params: Params) -> Tensor:
    """R: digits (B, [1,] 28, 28) -> Tensor[B, 1, 28, 28] rotated about the centre."""
    n = digits.shape[0]
    angle = params["angle"].double()  # float64 from here on: see the module docstring
    theta = similarity_theta(
        angle, torch.ones_like(angle), angle.new_zeros(n, 2), in_size=DIGIT, out_size=DIGIT
    )
    return _affine(digits, theta, DIGIT)


# --- RTS -----------------------------------------------------------------------------------


def sample_rts_params(n: int, generator: torch.Generator, *, canvas: int = RTS_CANVAS) -> Params:
    """RTS: ``angle`` [n] rad in +-45 deg, ``scale`` [n] in [0.7, 1.2], ``shift`` [n, 2] px.

    The shift keeps the scaled 28x28 frame inside the canvas: |t| <= (canvas - 28 s) / 2.
    """
    max_angle = math.radians(RTS_MAX_DEGREES)
    angle = _uniform(n, -max_angle, max_angle, generator)
    scale = _uniform(n, *RTS_SCALE, generator)
    room = (canvas - DIGIT * scale) / 2  # (n,), >= 4.2 px at scale 1.2 in 42x42
    shift = (2 * torch.rand(n, 2, generator=generator) - 1) * room[:, None]
    return {"angle": angle, "scale": scale, "shift": shift}


def apply_rts(digits: Tensor, params: Params, *, canvas: int = RTS_CANVAS) -> Tensor:
    """RTS: digits (B, [1,] 28, 28) -> Tensor[B, 1, canvas, canvas]."""
    angle, scale, shift = (params[key].double() for key in ("angle", "scale", "shift"))
    theta = similarity_theta(angle, scale, shift, in_size=DIGIT, out_size=canvas)
    return _affine(digits, theta, canvas)


# --- P -------------------------------------------------------------------------------------

# Corners of the frame in normalised (x, y): (4, 2).
_CORNERS = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def homography_from_points(source: Tensor, target: Tensor) -> Tensor:
    """The homographies taking 4 ``source`` points onto 4 ``target`` points (DLT, h33 = 1).

    Args:
        source: Tensor[N, 4, 2].
        target: Tensor[N, 4, 2].

    Returns:
        Tensor[N, 3, 3] with ``H @ (x, y, 1) ~ (u, v, 1)`` for each source (x, y), target (u, v).
    """
    x, y = source[..., 0], source[..., 1]  # (N, 4)
    u, v = target[..., 0], target[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack((x, y, ones, zeros, zeros, zeros, -u * x, -u * y), -1)  # (N, 4, 8)
    rows_v = torch.stack((zeros, zeros, zeros, x, y, ones, -v * x, -v * y), -1)
    system = torch.cat((rows_u, rows_v), dim=1).double()  # (N, 8, 8)
    rhs = torch.cat((u, v), dim=1).double()  # (N, 8)
    h = torch.linalg.solve(system, rhs)  # float64: the system is small but not well scaled
    return torch.cat((h, torch.ones_like(h[:, :1])), dim=1).view(-1, 3, 3).to(source.dtype)


def _min_w(corners: Tensor) -> Tensor:
    """Tensor[N]: the least homogeneous w of the output-to-input homography on the canvas.

    w is affine in (x, y), so its minimum over the square canvas is at one of its corners; w > 0
    everywhere means no canvas point maps through infinity (which would show a mirrored digit).
    """
    corners = corners.double()
    input_from_output = homography_from_points(corners, _CORNERS.double().expand_as(corners))
    return input_from_output[:, 2, :2].abs().sum(-1).neg() + input_from_output[:, 2, 2]


def _draw_corners(n: int, generator: torch.Generator) -> Tensor:
    scale = _uniform(n, *P_SCALE, generator)
    noise = _normal((n, 4, 2), generator).clamp_(-P_TRUNCATE, P_TRUNCATE) * P_SIGMA
    return _CORNERS * scale[:, None, None] + noise


def sample_projective_params(n: int, generator: torch.Generator) -> Params:
    """P: ``corners`` Tensor[n, 4, 2]: where the frame's corners land, normalised.

    Scale uniform in [0.75, 1.0] about the centre, then N(0, 0.25^2) per coordinate truncated at
    +-2 sigma. The ~1.9 % of draws whose homography sends part of the canvas through infinity are
    redrawn (deterministically, from the same generator).
    """
    corners = _draw_corners(n, generator)
    redraw = torch.nonzero(_min_w(corners) < P_MIN_W).flatten()
    while redraw.numel() > 0:  # a few rounds of ever fewer rows
        fresh = _draw_corners(redraw.numel(), generator)
        corners[redraw] = fresh
        redraw = redraw[_min_w(fresh) < P_MIN_W]
    return {"corners": corners}


def apply_projective(digits: Tensor, params: Params) -> Tensor:
    """P: digits (B, [1,] 28, 28) -> Tensor[B, 1, 28, 28] through the corner homography."""
    corners = params["corners"].double()
    # Sampling runs output -> input: the moved corners must map back to the frame's corners.
    input_from_output = homography_from_points(corners, _CORNERS.double().expand_as(corners))
    return _sample(digits, projective_grid(input_from_output, (corners.shape[0], 1, DIGIT, DIGIT)))


# --- E -------------------------------------------------------------------------------------


def sample_elastic_params(n: int, generator: torch.Generator) -> Params:
    """E: ``displacement`` Tensor[n, 16, 2], normalised, N(0, (1.5 px)^2) per coordinate."""
    sigma = E_SIGMA_PX * 2.0 / DIGIT  # pixels -> normalised units (align_corners=False)
    return {"displacement": _normal((n, E_NUM_POINTS, 2), generator) * sigma}


def apply_elastic(digits: Tensor, params: Params) -> Tensor:
    """E: digits (B, [1,] 28, 28) -> Tensor[B, 1, 28, 28] through a random thin-plate spline."""
    lattice = tps_lattice(E_NUM_POINTS, dtype=torch.float64)  # (16, 2), x fastest, spans [-1, 1]
    control_points = lattice + params["displacement"].double()  # (B, 16, 2) input positions
    grid_map = tps_grid_matrix(E_NUM_POINTS, (DIGIT, DIGIT))  # (HW, 16) float64
    grid = torch.matmul(grid_map, control_points).view(-1, DIGIT, DIGIT, 2)
    return _sample(digits, grid)


# --- TC ------------------------------------------------------------------------------------


def sample_translated_cluttered_params(n: int, generator: torch.Generator, *, num_sources: int) -> Params:
    """TC: integer digit ``shift`` [n, 2] and clutter ``source`` [n, 6], ``crop`` and ``place``
    [n, 6, 2] (top-left corners, (x, y) pixels)."""
    half = (TC_CANVAS - DIGIT) // 2  # 16: integer shifts keep pixel centres on pixel centres
    k, size = TC_NUM_CLUTTER, TC_CLUTTER_SIZE
    low, high = TC_CLUTTER_BOX
    return {
        "shift": torch.randint(-half, half + 1, (n, 2), generator=generator),
        "source": torch.randint(0, num_sources, (n, k), generator=generator),
        "crop": torch.randint(low, high - size + 1, (n, k, 2), generator=generator),
        "place": torch.randint(0, TC_CANVAS - size + 1, (n, k, 2), generator=generator),
    }


def _patch_index(corner: Tensor, size: int, stride: int) -> Tensor:
    """Flat indices (..., size * size) of the ``size`` x ``size`` patches whose top-left (x, y) is ``corner``."""
    steps = torch.arange(size)
    rows = corner[..., 1, None, None] + steps[:, None]  # (..., size, 1)
    cols = corner[..., 0, None, None] + steps[None, :]  # (..., 1, size)
    return (rows * stride + cols).flatten(-2)


def _clutter(sources: Tensor, params: Params) -> Tensor:
    """int32 Tensor[B, 60 * 60]: the clutter patches added together and clipped to 255."""
    source, crop, place = params["source"], params["crop"], params["place"]
    b = source.shape[0]
    # Gather the (B, K, size * size) crops from the source digits, then add them into the flat canvas.
    flat_sources = to_uint8(sources, "digits").flatten(1)  # (N, 28 * 28)
    patches = flat_sources[source[..., None], _patch_index(crop, TC_CLUTTER_SIZE, DIGIT)].int()
    canvas = torch.zeros(b, TC_CANVAS * TC_CANVAS, dtype=torch.int32)
    canvas.scatter_add_(1, _patch_index(place, TC_CLUTTER_SIZE, TC_CANVAS).flatten(1), patches.flatten(1))
    return canvas.clamp_(max=255)


def apply_translated_cluttered(digits: Tensor, params: Params, sources: Tensor) -> Tensor:
    """TC: digits (B, [1,] 28, 28) -> Tensor[B, 1, 60, 60], digit over MNIST clutter.

    Integer shifts move whole pixels, so the digit is copied, not resampled, and added to the clutter
    in integers (saturating at 255).

    Args:
        digits: the digits to place.
        params: from :func:`sample_translated_cluttered_params`.
        sources: uint8 Tensor[N, 28, 28], the split's digits the clutter is cropped from.
    """
    flat_digits = to_uint8(digits, "digits").flatten(1).int()  # (B, 28 * 28)
    top_left = params["shift"] + (TC_CANVAS - DIGIT) // 2  # (B, 2) (x, y): the shift moves the centre
    canvas = _clutter(sources, params)
    canvas.scatter_add_(1, _patch_index(top_left, DIGIT, TC_CANVAS), flat_digits)
    images = canvas.clamp_(max=255).to(torch.uint8)
    return to_unit_float(images.view(-1, 1, TC_CANVAS, TC_CANVAS))


# --- MNIST addition ------------------------------------------------------------------------


def sample_mnist_add_params(n: int, generator: torch.Generator, *, num_sources: int) -> Params:
    """ADD: ``partner`` [n] source index, and RTS params for each channel (``*_0``, ``*_1``)."""
    partner = torch.randint(0, num_sources, (n,), generator=generator)
    first, second = sample_rts_params(n, generator), sample_rts_params(n, generator)
    params = {"partner": partner}
    params.update({f"{key}_0": value for key, value in first.items()})
    params.update({f"{key}_1": value for key, value in second.items()})
    return params


def apply_mnist_add(digits: Tensor, params: Params, sources: Tensor) -> Tensor:
    """ADD: digits (B, [1,] 28, 28) -> Tensor[B, 2, 42, 42]: channel 0 the digit, 1 its partner."""
    keys = ("angle", "scale", "shift")
    first = apply_rts(digits, {key: params[f"{key}_0"] for key in keys})
    second = apply_rts(sources[params["partner"]], {key: params[f"{key}_1"] for key in keys})
    return torch.cat((first, second), dim=1)


# --- registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distortion:
    """A distorted-MNIST variant.

    Attributes:
        name: registry name.
        out_channels: channels of the result.
        out_size: (H, W) of the result.
        sample: (n, generator, num_sources) -> params of n images.
        apply: (digits uint8/float (B, [1,] 28, 28), params, sources uint8 (N, 28, 28)) ->
            Tensor[B, out_channels, H, W] in [0, 1].
    """

    name: str
    out_channels: int
    out_size: tuple[int, int]
    sample: Callable[[int, torch.Generator, int], Params]
    apply: Callable[[Tensor, Params, Tensor], Tensor]


DISTORTIONS: dict[str, Distortion] = {
    "r": Distortion(
        "r",
        1,
        (DIGIT, DIGIT),
        lambda n, g, _: sample_rotation_params(n, g),
        lambda d, p, _: apply_rotation(d, p),
    ),
    "rts": Distortion(
        "rts",
        1,
        (RTS_CANVAS, RTS_CANVAS),
        lambda n, g, _: sample_rts_params(n, g),
        lambda d, p, _: apply_rts(d, p),
    ),
    "p": Distortion(
        "p",
        1,
        (DIGIT, DIGIT),
        lambda n, g, _: sample_projective_params(n, g),
        lambda d, p, _: apply_projective(d, p),
    ),
    "e": Distortion(
        "e",
        1,
        (DIGIT, DIGIT),
        lambda n, g, _: sample_elastic_params(n, g),
        lambda d, p, _: apply_elastic(d, p),
    ),
    "tc": Distortion(
        "tc",
        1,
        (TC_CANVAS, TC_CANVAS),
        lambda n, g, m: sample_translated_cluttered_params(n, g, num_sources=m),
        apply_translated_cluttered,
    ),
    "mnist-add": Distortion(
        "mnist-add",
        2,
        (RTS_CANVAS, RTS_CANVAS),
        lambda n, g, m: sample_mnist_add_params(n, g, num_sources=m),
        apply_mnist_add,
    ),
}


def get_distortion(name: str) -> Distortion:
    """The :class:`Distortion` called ``name`` (case-insensitive).

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    key = name.lower()
    if key not in DISTORTIONS:
        raise ValueError(f"unknown distortion {name!r}; valid: {sorted(DISTORTIONS)}")
    return DISTORTIONS[key]


def distort(
    name: str,
    digits: Tensor,
    *,
    generator: torch.Generator | None = None,
    sources: Tensor | None = None,
) -> Tensor:
    """Distort a batch of MNIST digits in one call (random parameters from ``generator``).

    Args:
        name: ``"r"``, ``"rts"``, ``"p"``, ``"e"``, ``"tc"`` or ``"mnist-add"``.
        digits: uint8 or float Tensor[B, 28, 28] or Tensor[B, 1, 28, 28].
        generator: source of randomness (default: a fresh unseeded one).
        sources: uint8 Tensor[N, 28, 28] for the clutter / partner digits (default: ``digits``).

    Returns:
        Tensor[B, C, H, W] float32 in [0, 1].

    Example:
        >>> digits = torch.zeros(4, 28, 28, dtype=torch.uint8)
        >>> distort("rts", digits, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 42, 42])
    """
    spec = get_distortion(name)
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    if sources is None:
        sources = digits if digits.dim() == 3 else digits[:, 0]
    params = spec.sample(digits.shape[0], generator, sources.shape[0])
    return spec.apply(digits, params, sources)
