"""stnkit.keras imports nothing from torch and exports its public names."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import stnkit.keras as sk

keras = pytest.importorskip("keras")

PUBLIC = {
    "SpatialTransformer",
    "warp",
    "sample",
    "grid",
    "affine_grid",
    "projective_grid",
    "tps_grid",
    "tps_lattice",
    "identity_params",
    "num_params",
    "TRANSFORMS",
    "PADDING_MODES",
    "MODES",
}


def test_public_names_are_exported():
    assert set(sk.__all__) >= PUBLIC
    for name in sk.__all__:
        assert hasattr(sk, name), name


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="Keras' torch backend imports torch itself")
def test_importing_stnkit_keras_does_not_import_torch():
    code = "import sys, stnkit.keras; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
