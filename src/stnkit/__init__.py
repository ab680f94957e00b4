"""stnkit: Spatial Transformer Networks for PyTorch.

The public API: grids (:func:`affine_grid`, :func:`projective_grid`, :func:`tps_grid`), the sampler
(:func:`sample`), one-call warping (:func:`warp`), transform parameterisations (:func:`get_transform`),
matrix helpers and the :class:`SpatialTransformer` layer. The coordinate convention is written once in
:mod:`stnkit.geometry`.
"""

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
