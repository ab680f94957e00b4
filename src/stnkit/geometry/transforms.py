"""Transform parameterisations: parameter vector <-> matrix <-> sampling grid.

Each transform knows how many parameters it takes, the parameter vector of the identity warp and how to
build its sampling grid (and its matrix, where one exists). The localisation network of a
:class:`stnkit.SpatialTransformer` regresses exactly ``num_params`` numbers.

| name          | params | meaning (all map output positions to input positions)                   |
|---------------|--------|-------------------------------------------------------------------------|
| translation   | 2      | (tx, ty)                                                                |
| attention     | 3      | (s, tx, ty): isotropic scale + translation                              |
| similarity    | 4      | (a, b, tx, ty) with a = s cos(phi), b = s sin(phi): [[a, -b], [b, a]]   |
| affine        | 6      | row-major 2 x 3 matrix                                                  |
| projective    | 8      | row-major 3 x 3 homography with its last entry fixed to 1               |
| tps           | 2K     | input positions (x, y) of the K lattice control points, K = 16 default  |
| affine3d      | 12     | row-major 3 x 4 matrix, for (N, C, D, H, W) inputs                      |

The similarity uses (a, b) rather than (angle, scale): it is linear in its parameters, has no angle
wrap-around, and a zero-initialised regression head around the identity (1, 0, 0, 0) is well conditioned.
"""

from __future__ import annotations

import operator
from typing import ClassVar

import torch
from torch import Tensor

from stnkit.geometry.checks import (
    check_finite,
    check_flag,
    check_floating,
    check_tensor,
    is_tracing,
    short_repr,
)
from stnkit.geometry.grids import (
    _affine_grid_unchecked,
    _lattice_side,
    _projective_grid_unchecked,
    _tps_grid_unchecked,
    tps_lattice,
)
from stnkit.geometry.matrices import to_homogeneous

__all__ = [
    "Affine",
    "Affine3D",
    "Attention",
    "Projective",
    "Similarity",
    "ThinPlateSpline",
    "Transform",
    "Translation",
    "get_transform",
    "list_transforms",
]


class Transform:
    """Base class of the parameterisations. Subclasses set ``name`` and build grids from parameters.

    Attributes:
        name: registry name.
        spatial_dims: 2 for images (N, C, H, W), 3 for volumes (N, C, D, H, W).
        has_matrix: whether :meth:`matrix` exists (not for thin-plate splines).
    """

    name: ClassVar[str] = ""
    spatial_dims: ClassVar[int] = 2
    has_matrix: ClassVar[bool] = True

    @property
    def num_params(self) -> int:
        """Length of the parameter vector."""
        return len(self._identity_values())

    @property
    def matrix_shape(self) -> tuple[int, int] | None:
        """Shape of the natural matrix form accepted in place of the vector, if any (e.g. (2, 3))."""
        return None

    def _identity_values(self) -> list[float]:
        raise NotImplementedError

    def identity(self, dtype: torch.dtype | None = None, device: torch.device | None = None) -> Tensor:
        """The parameter vector of the identity warp, Tensor[num_params]."""
        return torch.tensor(self._identity_values(), dtype=dtype, device=device)

    def coerce(self, params: object, name: str = "params") -> Tensor:
        """Check ``params`` and return it as Tensor[N, num_params].

        Accepts Tensor[N, num_params] or, where the transform has one, its matrix form
        Tensor[N, *matrix_shape]. Raises ``TypeError`` / ``ValueError`` naming what was expected.
        """
        params = check_tensor(params, name)
        check_floating(params, name)
        expected = f"(N, {self.num_params})"
        if self.matrix_shape is not None:
            expected += f" or (N, {self.matrix_shape[0]}, {self.matrix_shape[1]})"
            if params.dim() == 3 and tuple(params.shape[1:]) == self.matrix_shape:
                params = self._vector_from_matrix(params)
        if params.dim() != 2 or params.shape[1] != self.num_params:
            raise ValueError(
                f"{name} for transform '{self.name}' must have shape {expected}, got {list(params.shape)}"
            )
        check_finite(params, name)
        return params

    def _vector_from_matrix(self, matrix: Tensor) -> Tensor:
        # Not reshape(N, -1): with N = 0 the -1 is ambiguous.
        return matrix.reshape(matrix.shape[0], self.num_params)

    def matrix(self, params: Tensor) -> Tensor:
        """Homogeneous matrix (N, k + 1, k + 1) of the parameters (input-from-output, normalised)."""
        raise NotImplementedError(f"transform '{self.name}' has no matrix")

    def grid(self, params: Tensor, size: tuple[int, ...], *, align_corners: bool = False) -> Tensor:
        """Sampling grid for ``params`` (N, num_params) and output ``size`` (N, C, H, W)."""
        align_corners = check_flag(align_corners, "align_corners")
        params = self.coerce(params)
        spatial = _check_grid_size(size, params.shape[0], self.spatial_dims)
        return self._grid(params, spatial, align_corners)

    def _grid(self, params: Tensor, spatial: tuple[int, ...], align_corners: bool) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_grid_size(size: tuple[int, ...], batch: int, spatial_dims: int) -> tuple[int, ...]:
    layout = "(N, C, H, W)" if spatial_dims == 2 else "(N, C, D, H, W)"
    try:  # ints (torch.Size's, NumPy's too), never truncated: 4.5 or "4" is a mistake, not a size
        if isinstance(size, str | bytes) or any(isinstance(s, bool) for s in size):
            raise TypeError
        full = tuple(operator.index(s) for s in size)
    except TypeError:
        raise ValueError(f"size must be {layout}, a sequence of ints, got {short_repr(size)}") from None
    # N may be 0 (an empty batch); channels and spatial sizes must be positive.
    if len(full) != spatial_dims + 2 or full[0] != batch or any(s <= 0 for s in full[1:]):
        raise ValueError(f"size must be {layout} with N = {batch} and positive sizes, got {full}")
    return full[2:]


class _AffineFamily(Transform):
    """Transforms that are affine: the grid comes from a (N, k, k + 1) matrix ``theta``."""

    def theta(self, params: Tensor) -> Tensor:
        """The affine matrix (N, k, k + 1) of already-checked parameters."""
        raise NotImplementedError

    def matrix(self, params: Tensor) -> Tensor:
        return to_homogeneous(self.theta(self.coerce(params)))

    def _grid(self, params: Tensor, spatial: tuple[int, ...], align_corners: bool) -> Tensor:
        return _affine_grid_unchecked(self.theta(params), spatial, align_corners)


class Translation(_AffineFamily):
    """Translation only: params (tx, ty)."""

    name = "translation"

    def _identity_values(self) -> list[float]:
        return [0.0, 0.0]

    def theta(self, params: Tensor) -> Tensor:
        tx, ty = params.unbind(-1)
        one, zero = torch.ones_like(tx), torch.zeros_like(tx)
        return torch.stack((one, zero, tx, zero, one, ty), dim=-1).view(-1, 2, 3)


class Attention(_AffineFamily):
    """Isotropic scale + translation, the paper's "attention" transform: params (s, tx, ty)."""

    name = "attention"

    def _identity_values(self) -> list[float]:
        return [1.0, 0.0, 0.0]

    def theta(self, params: Tensor) -> Tensor:
        scale, tx, ty = params.unbind(-1)
        zero = torch.zeros_like(scale)
        return torch.stack((scale, zero, tx, zero, scale, ty), dim=-1).view(-1, 2, 3)


class Similarity(_AffineFamily):
    """Rotation + isotropic scale + translation: params (a, b, tx, ty), matrix [[a, -b, tx], [b, a, ty]]."""

    name = "similarity"

    def _identity_values(self) -> list[float]:
        return [1.0, 0.0, 0.0, 0.0]

    def theta(self, params: Tensor) -> Tensor:
        a, b, tx, ty = params.unbind(-1)
        return torch.stack((a, -b, tx, b, a, ty), dim=-1).view(-1, 2, 3)


class Affine(_AffineFamily):
    """Full 2-D affine: params are the 2 x 3 matrix, row-major."""

    name = "affine"

    @property
    def matrix_shape(self) -> tuple[int, int] | None:
        return (2, 3)

    def _identity_values(self) -> list[float]:
        return [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]

    def theta(self, params: Tensor) -> Tensor:
        return params.view(-1, 2, 3)


class Affine3D(_AffineFamily):
    """Full 3-D affine for volumes: params are the 3 x 4 matrix, row-major."""

    name = "affine3d"
    spatial_dims = 3

    @property
    def matrix_shape(self) -> tuple[int, int] | None:
        return (3, 4)

    def _identity_values(self) -> list[float]:
        return [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]

    def theta(self, params: Tensor) -> Tensor:
        return params.view(-1, 3, 4)


class Projective(Transform):
    """2-D homography: params are the first 8 entries of the 3 x 3 matrix (row-major), the last is 1.

    A full (N, 3, 3) matrix is accepted too and divided by its last entry (homographies are defined up to
    scale); a matrix whose last entry is 0 has no such form and is refused.
    """

    name = "projective"

    @property
    def matrix_shape(self) -> tuple[int, int] | None:
        return (3, 3)

    def _identity_values(self) -> list[float]:
        return [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]

    def _vector_from_matrix(self, matrix: Tensor) -> Tensor:
        # A value check: on the CPU only and not while tracing, as the finiteness checks (check_finite).
        if matrix.device.type == "cpu" and not is_tracing():
            zero = (matrix[:, 2, 2] == 0).nonzero().flatten().tolist()
            if zero:
                raise ValueError(
                    f"params as (N, 3, 3) homographies are scaled so that entry [2, 2] is 1; it is 0 in "
                    f"{len(zero)} of them (first: index {zero[0]}), which this form cannot hold"
                )
        matrix = matrix / matrix[:, 2:3, 2:3]
        return matrix.reshape(matrix.shape[0], 9)[:, :8]

    def matrix(self, params: Tensor) -> Tensor:
        params = self.coerce(params)
        ones = torch.ones_like(params[:, :1])
        return torch.cat((params, ones), dim=1).view(-1, 3, 3)

    def _grid(self, params: Tensor, spatial: tuple[int, ...], align_corners: bool) -> Tensor:
        return _projective_grid_unchecked(self.matrix(params), spatial, align_corners)


class ThinPlateSpline(Transform):
    """Thin-plate spline with K control points on a regular lattice (see :func:`stnkit.tps_grid`).

    Params are the input positions of the K lattice points, flattened as (x_1, y_1, ..., x_K, y_K).

    Args:
        num_control_points: K, a perfect square >= 4 (16 in the paper).
    """

    name = "tps"
    has_matrix = False

    def __init__(self, num_control_points: int = 16) -> None:
        _lattice_side(num_control_points)
        self.num_control_points = num_control_points

    @property
    def num_params(self) -> int:
        return 2 * self.num_control_points

    @property
    def matrix_shape(self) -> tuple[int, int] | None:
        return (self.num_control_points, 2)

    def identity(self, dtype: torch.dtype | None = None, device: torch.device | None = None) -> Tensor:
        return tps_lattice(self.num_control_points, dtype=dtype, device=device).reshape(-1)

    def _grid(self, params: Tensor, spatial: tuple[int, ...], align_corners: bool) -> Tensor:
        control_points = params.view(-1, self.num_control_points, 2)
        return _tps_grid_unchecked(control_points, spatial, align_corners)

    def __repr__(self) -> str:
        return f"ThinPlateSpline(num_control_points={self.num_control_points})"


_REGISTRY: dict[str, type[Transform]] = {
    cls.name: cls
    for cls in (Translation, Attention, Similarity, Affine, Projective, ThinPlateSpline, Affine3D)
}


def list_transforms() -> list[str]:
    """Names accepted by :func:`get_transform`, e.g. ``["translation", "attention", ...]``."""
    return list(_REGISTRY)


def get_transform(transform: str | Transform, **kwargs: int) -> Transform:
    """Look up a transform by name, or pass a :class:`Transform` instance through.

    Args:
        transform: a name from :func:`list_transforms` or a :class:`Transform`.
        **kwargs: constructor arguments, e.g. ``num_control_points=25`` for ``"tps"``.

    Example:
        >>> get_transform("similarity").num_params
        4
    """
    if isinstance(transform, Transform):
        if kwargs:
            raise ValueError("keyword arguments are only used with a transform name")
        return transform
    if not isinstance(transform, str) or transform not in _REGISTRY:
        raise ValueError(f"transform must be one of {list_transforms()}, got {transform!r}")
    return _REGISTRY[transform](**kwargs)
