"""Sampling grids: affine (2-D and 3-D), projective and thin-plate spline.

Convention (the one used everywhere in stnkit, see ``docs/convention.md``):
    * Coordinates are normalised to [-1, 1] over the image: x runs along the width (last tensor dim),
      y along the height, z along the depth. The last dimension of a grid holds (x, y) or (x, y, z).
    * Parameters map **output** positions to **input** sample positions: ``grid[n, i, j]`` is the point of
      the input that output pixel ``(i, j)`` shows.
    * ``align_corners`` has exactly torch's meaning: with ``True`` the values -1 and 1 are the *centres* of
      the corner pixels; with ``False`` they are the outer *edges* of the corner pixels, so pixel ``i`` of
      ``W`` has its centre at ``(2 i + 1) / W - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from stnkit.geometry.cache import byte_bounded_cache
from stnkit.geometry.checks import (
    check_finite,
    check_flag,
    check_floating,
    check_shape,
    check_tensor,
    normalize_size,
)

__all__ = [
    "affine_grid",
    "affine_grid_2d",
    "normalized_coordinates",
    "projective_grid",
    "tps_grid",
    "tps_grid_matrix",
    "tps_lattice",
    "tps_transform_points",
]

# Bytes each per-size cache below may hold: a 16-point spline's map for 224 x 224 takes 6.4 MB in float64.
_CACHE_BYTES = 64 * 2**20

# |w| below this is treated as this (with w's sign) in the projective division, so that a point mapped
# to infinity becomes a point far outside the image instead of inf/NaN in the grid.
_MIN_HOMOGENEOUS_W = 1e-6


def normalized_coordinates(
    num: int, *, align_corners: bool, dtype: torch.dtype, device: torch.device | None = None
) -> Tensor:
    """Normalised coordinates of the centres of ``num`` pixels along one axis.

    Args:
        num: number of pixels along the axis.
        align_corners: torch's meaning (see the module docstring).
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        Tensor[num]: increasing coordinates in [-1, 1]. A single pixel sits at 0, as in torch.

    Example:
        >>> normalized_coordinates(4, align_corners=False, dtype=torch.float64)
        tensor([-0.7500, -0.2500,  0.2500,  0.7500], dtype=torch.float64)
    """
    return _normalized_coordinates_unchecked(num, check_flag(align_corners, "align_corners"), dtype, device)


def _normalized_coordinates_unchecked(
    num: int, align_corners: bool, dtype: torch.dtype, device: torch.device | None = None
) -> Tensor:
    """:func:`normalized_coordinates` without the check, for callers that already checked the flag."""
    if num == 1:
        return torch.zeros(1, dtype=dtype, device=device)
    index = torch.arange(num, dtype=dtype, device=device)
    if align_corners:
        return index * (2.0 / (num - 1)) - 1.0
    # (2 i + 1) / num - 1: pixel centres; the edges of the outer pixels are at -1 and 1.
    return (2.0 * index + 1.0) / num - 1.0


def _axes(spatial: tuple[int, ...], align_corners: bool, like: Tensor) -> list[Tensor]:
    """Per-axis coordinates in (x, y[, z]) order, each shaped to broadcast over (N, *spatial)."""
    k = len(spatial)
    axes = []
    for j in range(k):
        size = spatial[k - 1 - j]  # x is the last spatial dim, y the one before, ...
        coords = _normalized_coordinates_unchecked(size, align_corners, like.dtype, like.device)
        shape = [1] * (k + 1)
        shape[k - j] = size
        axes.append(coords.view(shape))
    return axes


def _apply_rows(matrix: Tensor, axes: list[Tensor]) -> list[Tensor]:
    """Apply each row of ``matrix`` (N, R, k + 1) to the homogeneous pixel coordinates.

    Built with broadcast multiply-adds instead of a batched matrix product over the pixel grid: it is
    cheaper on the CPU and keeps identity rows exact (1 * x + 0 * y + 0 == x bit for bit).
    """
    n, rows, k = matrix.shape[0], matrix.shape[1], len(axes)
    ones = [1] * k
    result = []
    for i in range(rows):
        value = matrix[:, i, k].view(n, *ones)  # translation column
        for j in range(k):
            value = value + matrix[:, i, j].view(n, *ones) * axes[j]
        result.append(value)  # (N, *spatial) after broadcasting
    return result


def _check_matrix(matrix: object, name: str, expected: tuple[int, int], size: object) -> Tensor:
    matrix = check_tensor(matrix, name)
    check_floating(matrix, name)
    check_shape(matrix, name, (None, *expected), f"(N, {expected[0]}, {expected[1]})")
    check_finite(matrix, name)
    return matrix


def _spatial_size(size: object, matrix: Tensor, name: str, spatial_dims: int) -> tuple[int, ...]:
    if isinstance(size, Sequence) and len(size) == spatial_dims + 2 and size[0] == 0 == matrix.shape[0]:
        # An empty batch: N = 0 is fine, the other sizes must still be positive.
        return normalize_size(tuple(size[1:]), "size")[1:]
    full = normalize_size(size, "size")
    if len(full) != spatial_dims + 2:
        expected = "(N, C, H, W)" if spatial_dims == 2 else "(N, C, D, H, W)"
        raise ValueError(f"size must be {expected} for {name} {list(matrix.shape)}, got {full}")
    if full[0] != matrix.shape[0]:
        raise ValueError(f"batch sizes differ: {name} has {matrix.shape[0]}, size has {full[0]}")
    return full[2:]


def affine_grid(theta: Tensor, size: tuple[int, ...], *, align_corners: bool = False) -> Tensor:
    """Sampling grid of an affine transform (2-D or 3-D); same values as ``F.affine_grid``.

    Args:
        theta: Tensor[N, 2, 3] (2-D) or Tensor[N, 3, 4] (3-D), input-from-output in normalised coordinates.
        size: the output size, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        align_corners: torch's meaning; see the convention in the module docstring.

    Returns:
        Tensor[N, H, W, 2] or Tensor[N, D, H, W, 3]: the input position each output pixel samples.

    Example:
        >>> theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        >>> affine_grid(theta, (1, 1, 2, 2), align_corners=True)[0, :, :, 0]
        tensor([[-1.,  1.],
                [-1.,  1.]])
    """
    align_corners = check_flag(align_corners, "align_corners")
    theta = check_tensor(theta, "theta")
    if theta.dim() == 3 and tuple(theta.shape[1:]) == (3, 4):
        theta = _check_matrix(theta, "theta", (3, 4), size)
        spatial = _spatial_size(size, theta, "theta", 3)
    else:
        theta = _check_matrix(theta, "theta", (2, 3), size)
        spatial = _spatial_size(size, theta, "theta", 2)
    return _affine_grid_unchecked(theta, spatial, align_corners)


def _affine_grid_unchecked(theta: Tensor, spatial: tuple[int, ...], align_corners: bool) -> Tensor:
    if len(spatial) == 2:
        return affine_grid_2d(theta, spatial[0], spatial[1], align_corners)
    axes = _axes(spatial, align_corners, theta)
    return torch.stack(_apply_rows(theta, axes), dim=-1)


def affine_grid_2d(theta: Tensor, height: int, width: int, align_corners: bool) -> Tensor:
    """Affine grid (N, H, W, 2) from theta (N, 2, 3), built with a single full-size operation.

    ``grid[n, h, w] = row_term[n, h] + column_term[n, w]`` with the small terms
    ``row_term = theta[:, :, 1] * y_h + theta[:, :, 2]`` and ``column_term = theta[:, :, 0] * x_w``;
    one broadcast addition writes the contiguous grid. Identity rows stay exact (0 * y + 0 + 1 * x == x).
    """
    xs = _normalized_coordinates_unchecked(width, align_corners, theta.dtype, theta.device)
    ys = _normalized_coordinates_unchecked(height, align_corners, theta.dtype, theta.device)
    row_term = theta[:, None, :, 1] * ys[None, :, None] + theta[:, None, :, 2]  # (N, H, 2)
    column_term = theta[:, None, :, 0] * xs[None, :, None]  # (N, W, 2)
    return row_term[:, :, None, :] + column_term[:, None, :, :]  # (N, H, W, 2)


def projective_grid(matrix: Tensor, size: tuple[int, ...], *, align_corners: bool = False) -> Tensor:
    """Sampling grid of a 2-D projective transform (homography).

    Each output position ``(x, y)`` samples the input at ``(u / w, v / w)`` with
    ``(u, v, w) = matrix @ (x, y, 1)``. Where ``|w|`` is below 1e-6 it is clamped to 1e-6 (keeping its
    sign), so the grid stays finite: such points land far outside the image.

    Args:
        matrix: Tensor[N, 3, 3], input-from-output in normalised coordinates.
        size: the output size ``(N, C, H, W)``.
        align_corners: torch's meaning; see the convention in the module docstring.

    Returns:
        Tensor[N, H, W, 2].

    Example:
        >>> projective_grid(torch.eye(3)[None], (1, 1, 2, 2)).shape
        torch.Size([1, 2, 2, 2])
    """
    align_corners = check_flag(align_corners, "align_corners")
    matrix = _check_matrix(matrix, "matrix", (3, 3), size)
    spatial = _spatial_size(size, matrix, "matrix", 2)
    return _projective_grid_unchecked(matrix, spatial, align_corners)


def _projective_grid_unchecked(matrix: Tensor, spatial: tuple[int, ...], align_corners: bool) -> Tensor:
    u, v, w = _apply_rows(matrix, _axes(spatial, align_corners, matrix))
    sign = torch.where(w < 0, -1.0, 1.0).to(w.dtype)
    w = torch.where(w.abs() < _MIN_HOMOGENEOUS_W, sign * _MIN_HOMOGENEOUS_W, w)
    return torch.stack((u / w, v / w), dim=-1)


def tps_lattice(
    num_points: int = 16, *, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> Tensor:
    """The fixed output-space control points of a thin-plate spline.

    A regular ``n x n`` lattice (``n = sqrt(num_points)``) spanning [-1, 1] in x and y, x varying
    fastest: point ``k`` is ``(x[k % n], y[k // n])``. Passing the lattice itself as ``control_points``
    to :func:`tps_grid` gives the identity warp.

    Args:
        num_points: K, a perfect square >= 4 (16 in the paper).
        dtype: floating dtype of the result (default: torch's default dtype).
        device: device of the result.

    Returns:
        Tensor[K, 2].

    Example:
        >>> tps_lattice(4)
        tensor([[-1., -1.],
                [ 1., -1.],
                [-1.,  1.],
                [ 1.,  1.]])
    """
    side = _lattice_side(num_points)
    if dtype is not None and not dtype.is_floating_point:  # an int lattice would round to -1, 0, 1
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    line = torch.linspace(-1.0, 1.0, side, dtype=dtype, device=device)
    ys, xs = torch.meshgrid(line, line, indexing="ij")
    return torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=-1)


def _lattice_side(num_points: int) -> int:
    side = math.isqrt(num_points) if isinstance(num_points, int) and num_points > 0 else 0
    if side < 2 or side * side != num_points:
        raise ValueError(
            f"num_points must be a perfect square >= 4 (a sqrt(K) x sqrt(K) lattice), got {num_points!r}"
        )
    return side


def _tps_kernel(squared_distance: Tensor) -> Tensor:
    """The thin-plate radial basis U(r) = r^2 log r^2, with U(0) = 0."""
    safe = squared_distance.clamp_min(torch.finfo(squared_distance.dtype).tiny)
    return torch.where(squared_distance > 0, squared_distance * torch.log(safe), 0.0)


def _tps_features(points: Tensor, lattice: Tensor) -> Tensor:
    """Rows [U(|p - c_1|), ..., U(|p - c_K|), 1, x, y] for each point p: (P, 2) -> (P, K + 3)."""
    squared = (points[:, None, :] - lattice[None, :, :]).square().sum(-1)
    ones = torch.ones_like(points[:, :1])
    return torch.cat((_tps_kernel(squared), ones, points), dim=1)


@byte_bounded_cache(max_bytes=_CACHE_BYTES)
def _tps_solution_map(num_points: int) -> Tensor:
    """The (K + 3, K) float64 matrix taking control points (K, 2) to the spline's coefficients.

    Solves the standard thin-plate system [[U, P], [P^T, 0]] [w; a] = [Y; 0] for a generic right-hand
    side once: it depends on the fixed lattice only.
    """
    lattice = tps_lattice(num_points, dtype=torch.float64)
    k = num_points
    system = torch.zeros(k + 3, k + 3, dtype=torch.float64)
    system[:k, :] = _tps_features(lattice, lattice)
    system[k:, :k] = system[:k, k:].T
    return torch.linalg.inv(system)[:, :k]


@byte_bounded_cache(max_bytes=_CACHE_BYTES)
def _tps_grid_map(num_points: int, spatial: tuple[int, int], align_corners: bool) -> Tensor:
    """The (H * W, K) float64 matrix taking control points to the sampling grid (linear in them)."""
    return _compute_tps_grid_map(num_points, spatial, align_corners)


def _compute_tps_grid_map(num_points: int, spatial: tuple[int, int], align_corners: bool) -> Tensor:
    """:func:`_tps_grid_map` without the cache."""
    height, width = spatial
    xs = _normalized_coordinates_unchecked(width, align_corners, torch.float64)
    ys = _normalized_coordinates_unchecked(height, align_corners, torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=-1)
    lattice = tps_lattice(num_points, dtype=torch.float64)
    return _tps_features(points, lattice) @ _tps_solution_map(num_points)


def tps_grid_matrix(num_points: int, size: tuple[int, int], *, align_corners: bool = False) -> Tensor:
    """The matrix that takes a spline's control points to its sampling grid (the grid is linear in them).

    Args:
        num_points: K, a perfect square >= 4 (the lattice of :func:`tps_lattice`).
        size: the output size ``(H, W)``.
        align_corners: torch's meaning; see the convention in the module docstring.

    Returns:
        Tensor[H * W, K] float64, a fresh copy: ``(matrix @ control_points).view(N, H, W, 2)`` is
        :func:`tps_grid` of ``control_points`` (Tensor[N, K, 2]) in float64.

    Example:
        >>> matrix = tps_grid_matrix(16, (4, 4))
        >>> identity = tps_lattice(16, dtype=torch.float64)
        >>> torch.allclose((matrix @ identity).view(4, 4, 2), tps_grid(identity[None], (1, 1, 4, 4))[0])
        True
    """
    align_corners = check_flag(align_corners, "align_corners")
    _lattice_side(num_points)
    if not (len(size) == 2 and all(isinstance(side, int) and side >= 1 for side in size)):
        raise ValueError(f"size must be (H, W) with positive integers, got {size!r}")
    return _tps_grid_map(num_points, (size[0], size[1]), align_corners).clone()


def _check_control_points(control_points: object) -> Tensor:
    control_points = check_tensor(control_points, "control_points")
    check_floating(control_points, "control_points")
    check_shape(control_points, "control_points", (None, None, 2), "(N, K, 2)")
    _lattice_side(control_points.shape[1])
    check_finite(control_points, "control_points")
    return control_points


def tps_grid(control_points: Tensor, size: tuple[int, ...], *, align_corners: bool = False) -> Tensor:
    """Sampling grid of a thin-plate spline warp.

    The spline maps the fixed output-space lattice :func:`tps_lattice` exactly onto ``control_points``
    (their input-image positions) and is smooth in between; the lattice itself gives the identity.

    Args:
        control_points: Tensor[N, K, 2], where each of the K lattice points samples the input.
        size: the output size ``(N, C, H, W)``.
        align_corners: torch's meaning; see the convention in the module docstring.

    Returns:
        Tensor[N, H, W, 2].

    Example:
        >>> identity = tps_lattice(16)[None]
        >>> grid = tps_grid(identity, (1, 1, 4, 4), align_corners=True)
        >>> torch.allclose(grid.reshape(1, 16, 2), identity, atol=1e-6)
        True
    """
    align_corners = check_flag(align_corners, "align_corners")
    control_points = _check_control_points(control_points)
    spatial = _spatial_size(size, control_points, "control_points", 2)
    return _tps_grid_unchecked(control_points, spatial, align_corners)


@byte_bounded_cache(max_bytes=_CACHE_BYTES)
def _tps_grid_map_t(
    num_points: int, spatial: tuple[int, int], align_corners: bool, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """:func:`_tps_grid_map` transposed, (K, H * W), in the dtype and on the device it is used with."""
    # Computed afresh, not through the float64 cache: that would hold a second copy of every map.
    grid_map = _compute_tps_grid_map(num_points, spatial, align_corners)
    return grid_map.t().to(dtype=dtype, device=device).contiguous()


def _tps_grid_unchecked(control_points: Tensor, spatial: tuple[int, ...], align_corners: bool) -> Tensor:
    height, width = spatial
    batch, num_points = control_points.shape[:2]
    map_t = _tps_grid_map_t(
        num_points, (height, width), align_corners, control_points.dtype, control_points.device
    )
    # One product (2N, K) @ (K, HW) and one interleaving copy to (N, HW, 2): on the CPU 1.3-7x faster
    # than the batched (HW, K) @ (N, K, 2), whose N skinny products write two columns each.
    rows = torch.mm(control_points.transpose(1, 2).reshape(batch * 2, num_points), map_t)  # (2N, HW)
    return rows.view(batch, 2, height * width).transpose(1, 2).reshape(batch, height, width, 2)


def tps_transform_points(control_points: Tensor, points: Tensor) -> Tensor:
    """Map output-space points through the thin-plate spline defined by ``control_points``.

    Args:
        control_points: Tensor[N, K, 2], as in :func:`tps_grid`.
        points: Tensor[N, P, 2], normalised output-space positions.

    Returns:
        Tensor[N, P, 2]: the input positions they sample.
    """
    control_points = _check_control_points(control_points)
    points = check_tensor(points, "points")
    check_shape(points, "points", (control_points.shape[0], None, 2), "(N, P, 2)")
    num_points = control_points.shape[1]
    lattice = tps_lattice(num_points, dtype=torch.float64)
    solution = _tps_solution_map(num_points).to(device=points.device)
    flat = points.to(torch.float64).reshape(-1, 2)
    features = _tps_features(flat, lattice.to(points.device)).view(*points.shape[:2], -1)
    return (features @ solution).to(control_points.dtype) @ control_points
