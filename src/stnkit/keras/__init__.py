"""Spatial transformers for Keras 3: one code path (``keras.ops``) for TensorFlow, JAX and torch.

The same convention, parameter layouts and numbers as the torch side (``docs/convention.md``):
coordinates normalised to [-1, 1], grids ending in (x, y), parameters mapping output positions to input
positions, ``align_corners`` as in torch. Images are ``channels_last`` by default (Keras' convention).
Nothing here imports torch; install with ``pip install 'stnkit[keras]'``.

    >>> import numpy as np
    >>> from stnkit.keras import warp
    >>> images = np.random.rand(4, 42, 42, 1).astype("float32")
    >>> identity = np.array([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]] * 4)
    >>> bool(np.allclose(keras.ops.convert_to_numpy(warp(images, identity)), images))
    True
"""

try:
    import keras
except ImportError as error:  # pragma: no cover - exercised in a subprocess (tests/keras)
    raise ImportError(
        "stnkit.keras needs Keras 3 and a backend: pip install 'stnkit[keras]' (keras, tensorflow-cpu, jax)"
    ) from error

if int(keras.__version__.split(".")[0]) < 3:  # pragma: no cover
    raise ImportError(f"stnkit.keras needs Keras 3, found keras {keras.__version__}")

from stnkit.keras.grids import (
    TRANSFORMS,
    affine_grid,
    grid,
    identity_params,
    normalized_coordinates,
    num_params,
    projective_grid,
    tps_grid,
    tps_lattice,
)
from stnkit.keras.layers import SpatialTransformer
from stnkit.keras.sampling import DATA_FORMATS, MODES, PADDING_MODES, sample, warp

__all__ = [
    "DATA_FORMATS",
    "MODES",
    "PADDING_MODES",
    "TRANSFORMS",
    "SpatialTransformer",
    "affine_grid",
    "grid",
    "identity_params",
    "normalized_coordinates",
    "num_params",
    "projective_grid",
    "sample",
    "tps_grid",
    "tps_lattice",
    "warp",
]
