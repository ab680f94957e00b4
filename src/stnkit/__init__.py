"""stnkit: Spatial Transformer Networks for PyTorch.

The public API: grids (:func:`affine_grid`, :func:`projective_grid`, :func:`tps_grid`), the sampler
(:func:`sample`), one-call warping (:func:`warp`), transform parameterisations (:func:`get_transform`),
matrix helpers and the :class:`SpatialTransformer` layer. The coordinate convention is written once in
:mod:`stnkit.geometry`.

The names below are imported on first use (PEP 562), so that ``import stnkit.keras`` (the Keras 3
layer, for TensorFlow and JAX users) does not load torch; ``import stnkit`` then ``stnkit.warp`` works
as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stnkit.geometry import (
        Affine,
        Affine3D,
        Attention,
        NonFiniteError,
        Projective,
        Similarity,
        ThinPlateSpline,
        Transform,
        Translation,
        affine_grid,
        compose,
        get_transform,
        identity_params,
        invert,
        list_transforms,
        normalized_to_pixel,
        pixel_to_normalized,
        projective_grid,
        sample,
        tps_grid,
        tps_lattice,
        warp,
    )
    from stnkit.nn import LocalizationCNN, LocalizationMLP, SpatialTransformer

__version__ = "0.1.0"

__all__ = [
    "Affine",
    "Affine3D",
    "Attention",
    "LocalizationCNN",
    "LocalizationMLP",
    "NonFiniteError",
    "Projective",
    "Similarity",
    "SpatialTransformer",
    "ThinPlateSpline",
    "Transform",
    "Translation",
    "__version__",
    "affine_grid",
    "compose",
    "get_transform",
    "identity_params",
    "invert",
    "list_transforms",
    "normalized_to_pixel",
    "pixel_to_normalized",
    "projective_grid",
    "sample",
    "tps_grid",
    "tps_lattice",
    "warp",
]

_FROM_NN = {"LocalizationCNN", "LocalizationMLP", "SpatialTransformer"}
_SUBPACKAGES = {"geometry", "nn", "models", "data", "engine", "viz"}


def __getattr__(name: str) -> Any:
    """Import a public name's home module on first access (and remember the name)."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"stnkit.{name}")
    if name not in __all__ or name == "__version__":
        raise AttributeError(f"module 'stnkit' has no attribute {name!r}")
    home = "stnkit.nn" if name in _FROM_NN else "stnkit.geometry"
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
