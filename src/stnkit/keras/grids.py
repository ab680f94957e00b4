"""Sampling grids of the 2-D transforms, written with ``keras.ops`` (TensorFlow, JAX and torch backends).

Convention (the torch side's, ``docs/convention.md``):
    * coordinates are normalised to [-1, 1]; the last dimension of a grid holds (x, y), x along the width;
    * parameters map **output** positions to **input** sample positions;
    * ``align_corners`` has torch's meaning: ``True`` puts -1 and 1 at the centres of the corner pixels,
      ``False`` at their outer edges (pixel ``i`` of ``W`` has its centre at ``(2 i + 1) / W - 1``).

Parameter layouts, the same as :func:`stnkit.get_transform` (params have shape (N, num_params)):

| name        | params | meaning                                                        | matrix form  |
|-------------|--------|----------------------------------------------------------------|--------------|
| translation | 2      | (tx, ty)                                                       |              |
| attention   | 3      | (s, tx, ty): isotropic scale + translation                     |              |
| similarity  | 4      | (a, b, tx, ty): [[a, -b, tx], [b, a, ty]]                      |              |
| affine      | 6      | row-major 2 x 3 matrix                                         | (N, 2, 3)    |
| projective  | 8      | row-major 3 x 3 homography, last entry fixed to 1              | (N, 3, 3)    |
| tps         | 2K     | input positions (x_1, y_1, ..., x_K, y_K) of the K lattice points | (N, K, 2) |

Every grid is built as ``base + displacement``: the pixel centres of the output plus a displacement that
is exactly zero for identity parameters (``(1 - 1) * x + 0 * y + 0``). :func:`stnkit.keras.warp` adds
the displacement to the output's pixel positions in the input's pixel space, so identity parameters
sample whole pixels exactly and the gradient there is torch's one-sided (forward) difference.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = [
    "TRANSFORMS",
    "affine_grid",
    "grid",
    "identity_params",
    "normalized_coordinates",
    "num_params",
    "projective_grid",
    "tps_grid",
    "tps_lattice",
]

TRANSFORMS = ("translation", "attention", "similarity", "affine", "projective", "tps")
_AFFINE_FAMILY = ("translation", "attention", "similarity", "affine")
_IDENTITY = {
    "translation": [0.0, 0.0],
    "attention": [1.0, 0.0, 0.0],
    "similarity": [1.0, 0.0, 0.0, 0.0],
    "affine": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    "projective": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
}
# |w| below this is treated as this (with w's sign) in the projective division, as on the torch side.
_MIN_HOMOGENEOUS_W = 1e-6

Tensor = Any  # a backend tensor (tf.Tensor, jax.Array, torch.Tensor) or a KerasTensor


# --- constants, in float64 NumPy -----------------------------------------------------------------------


def normalized_coordinates(num: int, align_corners: bool) -> np.ndarray:
    """Normalised coordinates of the centres of ``num`` pixels along one axis, float64 ndarray[num].

    A single pixel sits at 0, as in torch.

    Example:
        >>> normalized_coordinates(4, align_corners=False).tolist()
        [-0.75, -0.25, 0.25, 0.75]
    """
    return _normalized_coordinates_unchecked(num, check_flag(align_corners, "align_corners"))


def _normalized_coordinates_unchecked(num: int, align_corners: bool) -> np.ndarray:
    """:func:`normalized_coordinates` without the check, for callers that already checked the flag."""
    if num == 1:
        return np.zeros(1)
    index = np.arange(num, dtype=np.float64)
    if align_corners:
        return index * (2.0 / (num - 1)) - 1.0
    return (2.0 * index + 1.0) / num - 1.0


def _lattice_side(num_points: int) -> int:
    side = math.isqrt(num_points) if isinstance(num_points, int) and num_points > 0 else 0
    if side < 2 or side * side != num_points:
        raise ValueError(
            f"the number of TPS control points must be a perfect square >= 4, got {num_points!r}"
        )
    return side


def tps_lattice(num_points: int = 16) -> np.ndarray:
    """The fixed output-space control points of a thin-plate spline, float64 ndarray[K, 2].

    A regular ``n x n`` lattice spanning [-1, 1], x varying fastest (as :func:`stnkit.tps_lattice`).

    Example:
        >>> tps_lattice(4).tolist()
        [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]
    """
    line = np.linspace(-1.0, 1.0, _lattice_side(num_points))
    ys, xs = np.meshgrid(line, line, indexing="ij")
    return np.stack((xs.reshape(-1), ys.reshape(-1)), axis=-1)


def _tps_features(points: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Rows [U(|p - c_1|), ..., U(|p - c_K|), 1, x, y] with U(r) = r^2 log r^2: (P, 2) -> (P, K + 3)."""
    squared = np.square(points[:, None, :] - lattice[None, :, :]).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        radial = np.where(squared > 0, squared * np.log(np.where(squared > 0, squared, 1.0)), 0.0)
    return np.concatenate((radial, np.ones_like(points[:, :1]), points), axis=1)


def _compute_tps_grid_map(num_points: int, height: int, width: int, align_corners: bool) -> np.ndarray:
    """The (H * W, K) float64 matrix taking control points (K, 2) to the grid (H * W, 2).

    Solves the thin-plate system [[U, P], [P^T, 0]] [w; a] = [Y; 0] once for a generic right-hand side:
    it depends on the fixed lattice and the output size only.
    """
    lattice = tps_lattice(num_points)
    k = num_points
    system = np.zeros((k + 3, k + 3))
    system[:k, :] = _tps_features(lattice, lattice)
    system[k:, :k] = system[:k, k:].T
    solution = np.linalg.inv(system)[:, :k]  # (K + 3, K)
    xs = _normalized_coordinates_unchecked(width, align_corners)
    ys = _normalized_coordinates_unchecked(height, align_corners)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    points = np.stack((grid_x.reshape(-1), grid_y.reshape(-1)), axis=-1)
    return _tps_features(points, lattice) @ solution


# The maps cached, bounded by bytes rather than by count: one map is H * W * K * 8 bytes (6 MiB at
# 224 x 224 with K = 16, 32 MiB at 512 x 512), so ``lru_cache(maxsize=32)`` could hold a GiB. 64 MiB is
# the torch side's bound (stnkit.geometry.grids): ten maps at 224 x 224, two at 512 x 512. Computing a
# map took a sixth (224 x 224) to a tenth (512 x 512) of a 32-image TPS warp's time (torch backend, the
# loaded 2-core AMD EPYC): worth keeping, not worth a GiB.
_GRID_MAP_CACHE_BYTES = 64 * 2**20
_grid_maps: OrderedDict[tuple[int, int, int, bool], np.ndarray] = OrderedDict()
_grid_maps_lock = threading.Lock()  # data pipelines may build grids from several threads


def _tps_grid_map(num_points: int, height: int, width: int, align_corners: bool) -> np.ndarray:
    """:func:`_compute_tps_grid_map`, cached (least recently used out first past 64 MiB).

    Keyed by plain Python ints and a bool, whatever integer or boolean types the caller holds; the value
    is a read-only NumPy array that each caller turns into a tensor of the current backend, so no
    backend's tensor is ever cached.
    """
    key = (int(num_points), int(height), int(width), bool(align_corners))
    with _grid_maps_lock:
        if key in _grid_maps:
            _grid_maps.move_to_end(key)
            return _grid_maps[key]
    grid_map = _compute_tps_grid_map(*key)
    grid_map.flags.writeable = False  # shared between calls: nobody may change it in place
    with _grid_maps_lock:
        if grid_map.nbytes <= _GRID_MAP_CACHE_BYTES:
            _grid_maps[key] = grid_map
            _grid_maps.move_to_end(key)
            while sum(m.nbytes for m in _grid_maps.values()) > _GRID_MAP_CACHE_BYTES:
                _grid_maps.popitem(last=False)
    return grid_map


# --- parameters ------------------------------------------------------------------------------------------


def _check_transform(transform: object) -> str:
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {list(TRANSFORMS)}, got {transform!r}")
    assert isinstance(transform, str)
    return transform


def num_params(transform: str, num_control_points: int = 16) -> int:
    """Length of the parameter vector of ``transform`` (``2 K`` for ``"tps"``).

    Example:
        >>> num_params("similarity")
        4
    """
    if _check_transform(transform) == "tps":
        _lattice_side(num_control_points)
        return 2 * num_control_points
    return len(_IDENTITY[transform])


def identity_params(transform: str, num_control_points: int = 16) -> np.ndarray:
    """The parameter vector of the identity warp, float64 ndarray[num_params].

    Example:
        >>> identity_params("attention").tolist()
        [1.0, 0.0, 0.0]
    """
    if _check_transform(transform) == "tps":
        return tps_lattice(num_control_points).reshape(-1)
    return np.array(_IDENTITY[transform])


def as_tensor(value: Tensor) -> Tensor:
    """A backend tensor of ``value`` (NumPy arrays, lists); symbolic ``KerasTensor`` s pass through."""
    return value if isinstance(value, keras.KerasTensor) else ops.convert_to_tensor(value)


def add(a: Tensor, b: Tensor) -> Tensor:
    """``a + b`` with broadcasting, written as ``a - (-b)`` (the same number, exactly).

    Keras 3.15's TensorFlow ``ops.add`` (also what a functional model replays ``+`` with) turns some
    broadcasting additions into ``tf.nn.bias_add`` along the wrong axis: (N, H, W) + (N, H, 1) adds
    along W when H == W. ``ops.subtract`` has no such special case.
    """
    return ops.subtract(a, ops.negative(b))


def _check_finite_if_concrete(x: Tensor, name: str) -> None:
    """Refuse NaN or infinity in ``x`` where its values are at hand (eager, on the CPU).

    Non-finite sample points would be cast to garbage gather indices, which each backend meets
    differently (an error deep in TensorFlow or torch, silent NaN in JAX). As on the torch side, traced
    or symbolic values (``tf.function``, ``jax.jit``, a functional model being built) and tensors on an
    accelerator are not read back: that would stall every call.
    """
    values = _concrete_values(x)
    if values is not None and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"{name} must be finite, got {bad} non-finite value(s) (NaN or inf)")


def _check_scalable_homographies(matrices: Tensor) -> None:
    """Refuse (N, 3, 3) homographies whose entry [2, 2] is 0 (where the values are at hand): no
    (N, 8) form, which fixes that entry at 1, holds them."""
    values = _concrete_values(matrices)
    if values is not None:
        zero = np.flatnonzero(values[:, 2, 2] == 0)
        if zero.size:
            raise ValueError(
                f"params as (N, 3, 3) homographies are scaled so that entry [2, 2] is 1; it is 0 in "
                f"{zero.size} of them (first: index {zero[0]}), which this form cannot hold"
            )


def _concrete_values(x: Tensor) -> np.ndarray | None:
    """``x`` as a NumPy array if it is a concrete CPU tensor, else None."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, keras.KerasTensor):
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or "GPU" in x.device.upper():
            return None
    elif backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer) or any(d.platform != "cpu" for d in x.devices()):
            return None
    elif backend == "torch" and x.device.type != "cpu":
        return None
    return np.asarray(ops.convert_to_numpy(x))


def _static_shape(x: Tensor) -> tuple[int | None, ...]:
    return tuple(None if s is None else int(s) for s in x.shape)


def as_param_vectors(params: Tensor, transform: str, dtype: str) -> tuple[Tensor, int]:
    """Check ``params`` and return them as (N, num_params) in ``dtype``, with K (TPS) or 0.

    Accepts the vector form (N, num_params) or the matrix form: affine (N, 2, 3), projective (N, 3, 3)
    (divided by its last entry) or tps (N, K, 2). For ``"tps"``, K is read from the shape.
    """
    transform = _check_transform(transform)
    params = as_tensor(params)
    given = keras.backend.standardize_dtype(params.dtype)
    if not given.startswith(("float", "bfloat")):  # an int or bool cast would hide a mistake
        raise TypeError(f"params must have a floating point dtype, got {given}")
    _check_finite_if_concrete(params, "params")
    params = ops.cast(params, dtype)
    shape = _static_shape(params)
    matrix_forms = {"affine": (2, 3), "projective": (3, 3), "tps": (None, 2)}
    if len(shape) == 3 and transform in matrix_forms:
        rows, cols = matrix_forms[transform]
        if (rows is None or shape[1] == rows) and shape[2] == cols and shape[1] is not None:
            if transform == "projective":
                _check_scalable_homographies(params)
                params = params / params[:, 2:3, 2:3]
                return ops.reshape(params, (-1, 9))[:, :8], 0
            if transform == "tps":
                _lattice_side(shape[1])
                return ops.reshape(params, (-1, 2 * shape[1])), shape[1]
            return ops.reshape(params, (-1, 6)), 0
    if len(shape) == 2 and shape[1] is not None:
        if transform == "tps" and shape[1] % 2 == 0:
            _lattice_side(shape[1] // 2)
            return params, shape[1] // 2
        if transform != "tps" and shape[1] == len(_IDENTITY[transform]):
            return params, 0
    shapes = {
        "affine": "(N, 6) or (N, 2, 3)",
        "projective": "(N, 8) or (N, 3, 3)",
        "tps": "(N, 2K) or (N, K, 2) with K a perfect square >= 4",
    }
    # Not .get(transform, default): the default would be built first, and "tps" has no identity length.
    expected = shapes[transform] if transform in shapes else f"(N, {len(_IDENTITY[transform])})"
    raise ValueError(f"params for transform '{transform}' must have shape {expected}, got {list(shape)}")


# --- displacements ---------------------------------------------------------------------------------------


def _axes(height: int, width: int, align_corners: bool, dtype: str) -> tuple[Tensor, Tensor]:
    """Output pixel centres, x as (1, 1, W) and y as (1, H, 1), to broadcast over (N, H, W)."""
    xs = _normalized_coordinates_unchecked(width, align_corners).reshape(1, 1, width)
    ys = _normalized_coordinates_unchecked(height, align_corners).reshape(1, height, 1)
    return ops.convert_to_tensor(xs, dtype=dtype), ops.convert_to_tensor(ys, dtype=dtype)


def _column(params: Tensor, index: int) -> Tensor:
    """params[:, index] as (N, 1, 1), to broadcast over (N, H, W)."""
    return ops.reshape(params[:, index], (-1, 1, 1))


def _affine_rows(params: Tensor, transform: str) -> list[list[Tensor]]:
    """theta as two rows [t_0, t_1, t_2] of (N, 1, 1) tensors; ``None`` entries are constants 0 / 1."""
    p = [_column(params, i) for i in range(len(_IDENTITY[transform]))]
    if transform == "translation":
        return [[None, None, p[0]], [None, None, p[1]]]
    if transform == "attention":
        return [[p[0], None, p[1]], [None, p[0], p[2]]]
    if transform == "similarity":
        return [[p[0], -p[1], p[2]], [p[1], p[0], p[3]]]
    return [p[0:3], p[3:6]]


def _affine_displacement(
    params: Tensor, transform: str, height: int, width: int, align_corners: bool
) -> tuple[Tensor, Tensor]:
    """(dx, dy), each (N, H, W): theta @ (x, y, 1) minus (x, y); exactly 0 for identity theta."""
    xs, ys = _axes(height, width, align_corners, params.dtype)
    zero = ops.zeros((1, height, width), dtype=params.dtype)
    displacement = []
    for axis, (t_x, t_y, t_shift) in enumerate(_affine_rows(params, transform)):
        # Diagonal entries enter as (t - 1): the identity then contributes an exact 0.
        value = add(t_shift, zero)  # the parameter first: it may be symbolic (a KerasTensor)
        if t_x is not None:
            value = add(value, (t_x - 1.0 if axis == 0 else t_x) * xs)
        if t_y is not None:
            value = add(value, (t_y - 1.0 if axis == 1 else t_y) * ys)
        displacement.append(value)
    return displacement[0], displacement[1]


def _projective_displacement(
    params: Tensor, height: int, width: int, align_corners: bool
) -> tuple[Tensor, Tensor]:
    """(dx, dy), each (N, H, W): (u / w, v / w) minus (x, y) with (u, v, w) = H @ (x, y, 1)."""
    xs, ys = _axes(height, width, align_corners, params.dtype)
    p = [_column(params, i) for i in range(8)]
    u = add(add(p[0] * xs, p[1] * ys), p[2])  # identity: 1 * x + 0 * y + 0 == x exactly
    v = add(add(p[3] * xs, p[4] * ys), p[5])
    w = add(p[6] * xs, p[7] * ys) + 1.0
    smallest = ops.where(w < 0, ops.full_like(w, -_MIN_HOMOGENEOUS_W), ops.full_like(w, _MIN_HOMOGENEOUS_W))
    w = ops.where(ops.abs(w) < _MIN_HOMOGENEOUS_W, smallest, w)
    return u / w - xs, v / w - ys


def _tps_displacement(
    params: Tensor, num_points: int, height: int, width: int, align_corners: bool
) -> tuple[Tensor, Tensor]:
    """(dx, dy), each (N, H, W): the spline through (control points - lattice).

    The spline reproduces affine maps, so the lattice alone gives the pixel centres: the displacement is
    the (linear) spline of the control points' offsets from the lattice, exactly 0 at the identity.
    """
    lattice = ops.convert_to_tensor(tps_lattice(num_points).reshape(1, -1), dtype=params.dtype)
    offsets = ops.reshape(params - lattice, (-1, num_points, 2))  # (N, K, 2)
    grid_map = ops.convert_to_tensor(_tps_grid_map(num_points, height, width, align_corners), params.dtype)
    moved = ops.einsum("pk,nkc->npc", grid_map, offsets)  # (N, H * W, 2)
    moved = ops.reshape(moved, (-1, height, width, 2))
    return moved[..., 0], moved[..., 1]


def displacement(
    params: Tensor, transform: str, num_points: int, height: int, width: int, align_corners: bool
) -> tuple[Tensor, Tensor]:
    """Normalised displacement (dx, dy), each (N, H, W), of checked (N, num_params) params."""
    if transform in _AFFINE_FAMILY:
        return _affine_displacement(params, transform, height, width, align_corners)
    if transform == "projective":
        return _projective_displacement(params, height, width, align_corners)
    return _tps_displacement(params, num_points, height, width, align_corners)


# --- public grids ----------------------------------------------------------------------------------------


def check_size(size: object, name: str = "output_size") -> tuple[int, int]:
    """``(H, W)`` from an int or a pair of positive ints; a one-line ``ValueError`` otherwise."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else size
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in pair)
    ):
        raise ValueError(f"{name} must be a positive int or a pair (H, W) of positive ints, got {size!r}")
    return int(pair[0]), int(pair[1])


def check_flag(value: object, name: str) -> bool:
    """``value`` as a Python bool if it is a bool or a ``numpy.bool_``; a one-line ``TypeError`` otherwise.

    Ints, strings, ``None`` and tensors are refused rather than read by truthiness (the torch side's
    :func:`stnkit.geometry.checks.check_flag`, which this module may not import: it would load torch).
    """
    if isinstance(value, bool):  # the only cost on the valid path
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    shown = " ".join(repr(value).split())  # one line even for a multi-line repr (a big tensor)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise TypeError(f"{name} must be a bool (True or False), got {shown} ({type(value).__name__})")


def grid(
    params: Tensor,
    output_size: int | tuple[int, int],
    *,
    transform: str = "affine",
    align_corners: bool = False,
    dtype: str | None = None,
) -> Tensor:
    """Sampling grid (N, H, W, 2) of ``transform`` with ``params`` for an output of ``output_size``.

    Args:
        params: (N, num_params) or the transform's matrix form (see the module docstring).
        output_size: (H, W) of the output, or an int for a square.
        transform: a name of :data:`TRANSFORMS`.
        align_corners: torch's meaning.
        dtype: the grid's dtype (default: Keras' ``floatx``).

    Returns:
        (N, H, W, 2): the normalised input position (x, y) each output pixel samples.

    Example:
        >>> import numpy as np
        >>> g = grid(np.array([[1.0, 0.0, 0.0]]), (2, 2), transform="attention")
        >>> keras.ops.convert_to_numpy(g)[0, :, :, 0].tolist()
        [[-0.5, 0.5], [-0.5, 0.5]]
    """
    height, width = check_size(output_size)
    align_corners = check_flag(align_corners, "align_corners")
    dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
    if not dtype.startswith(("float", "bfloat")):  # a grid holds fractional positions
        raise TypeError(f"dtype must be a floating point dtype, got {dtype}")
    vectors, num_points = as_param_vectors(params, transform, dtype)
    dx, dy = displacement(vectors, transform, num_points, height, width, align_corners)
    xs, ys = _axes(height, width, align_corners, dtype)
    return ops.stack((add(dx, xs), add(dy, ys)), axis=-1)


def affine_grid(theta: Tensor, output_size: int | tuple[int, int], *, align_corners: bool = False) -> Tensor:
    """Affine sampling grid (N, H, W, 2) from theta (N, 2, 3); the values of ``F.affine_grid``."""
    return grid(theta, output_size, transform="affine", align_corners=align_corners)


def projective_grid(
    matrix: Tensor, output_size: int | tuple[int, int], *, align_corners: bool = False
) -> Tensor:
    """Projective sampling grid (N, H, W, 2) from a homography (N, 3, 3) or its 8 free entries."""
    return grid(matrix, output_size, transform="projective", align_corners=align_corners)


def tps_grid(
    control_points: Tensor, output_size: int | tuple[int, int], *, align_corners: bool = False
) -> Tensor:
    """Thin-plate-spline sampling grid (N, H, W, 2) from control points (N, K, 2), see :func:`tps_lattice`."""
    return grid(control_points, output_size, transform="tps", align_corners=align_corners)
