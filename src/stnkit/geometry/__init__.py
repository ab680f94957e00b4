"""Pure tensor geometry for spatial transformers: grids, transforms, matrices and sampling.

No state and no I/O. The convention, used by every function here:

* Coordinates are normalised to [-1, 1]; the last dimension of a grid is (x, y), or (x, y, z) in 3-D,
  with x along the width (the last tensor dimension).
* Parameters and matrices map **output** positions to **input** sample positions.
* ``align_corners`` means exactly what it means in torch: ``True`` puts -1 and 1 on the centres of the
  corner pixels, ``False`` on their outer edges.

See ``docs/convention.md`` for pictures and the pixel-space (OpenCV) correspondence.
"""

from stnkit.geometry.checks import NonFiniteError
from stnkit.geometry.fixed_point import sample_fixed_point
from stnkit.geometry.grids import (
    affine_grid,
    normalized_coordinates,
    projective_grid,
    tps_grid,
    tps_grid_matrix,
    tps_lattice,
    tps_transform_points,
)
from stnkit.geometry.matrices import (
    compose,
    from_homogeneous,
    invert,
    normalized_to_pixel,
    pixel_to_normalized,
    to_homogeneous,
)
from stnkit.geometry.sampling import BACKENDS, MODES, PADDING_MODES, sample, sample_reference
from stnkit.geometry.transforms import (
    Affine,
    Affine3D,
    Attention,
    Projective,
    Similarity,
    ThinPlateSpline,
    Transform,
    Translation,
    get_transform,
    list_transforms,
)
from stnkit.geometry.warp import identity_params, output_size, warp

__all__ = [
    "BACKENDS",
    "MODES",
    "PADDING_MODES",
    "Affine",
    "Affine3D",
    "Attention",
    "NonFiniteError",
    "Projective",
    "Similarity",
    "ThinPlateSpline",
    "Transform",
    "Translation",
    "affine_grid",
    "compose",
    "from_homogeneous",
    "get_transform",
    "identity_params",
    "invert",
    "list_transforms",
    "normalized_coordinates",
    "normalized_to_pixel",
    "output_size",
    "pixel_to_normalized",
    "projective_grid",
    "sample",
    "sample_fixed_point",
    "sample_reference",
    "to_homogeneous",
    "tps_grid",
    "tps_grid_matrix",
    "tps_lattice",
    "tps_transform_points",
    "warp",
]
