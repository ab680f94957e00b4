"""The public names stay."""

from __future__ import annotations

import stnkit

PUBLIC = {
    "affine_grid",
    "projective_grid",
    "tps_grid",
    "tps_lattice",
    "sample",
    "warp",
    "get_transform",
    "list_transforms",
    "compose",
    "invert",
    "pixel_to_normalized",
    "normalized_to_pixel",
    "identity_params",
    "SpatialTransformer",
    "LocalizationCNN",
    "LocalizationMLP",
    "Transform",
    "Translation",
    "Attention",
    "Similarity",
    "Affine",
    "Projective",
    "ThinPlateSpline",
    "Affine3D",
}


def test_public_names_are_exported() -> None:
    assert set(stnkit.__all__) >= PUBLIC
    for name in stnkit.__all__:
        assert hasattr(stnkit, name), name
