"""Run the stnkit.keras tests once per Keras backend, each in its own process.

Keras fixes its backend when it is first imported (``KERAS_BACKEND``), so each backend gets a fresh
``python -m pytest tests/keras/backend src/stnkit/keras`` (the latter: the docstring examples). A backend
that is not installed is skipped with the reason; without keras the whole lot is skipped and the torch
side is untouched (``pip install 'stnkit[keras]'`` installs keras, tensorflow-cpu and jax).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Keras backend -> the package it needs.
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_the_keras_tests_pass_on_backend(backend: str) -> None:
    if not _installed("keras"):
        pytest.skip("keras is not installed: pip install 'stnkit[keras]'")
    if not _installed(BACKENDS[backend]):
        pytest.skip(f"the Keras backend '{backend}' is not installed (pip install {BACKENDS[backend]})")
    env = dict(os.environ, KERAS_BACKEND=backend, STNKIT_KERAS_SUBPROCESS="1", TF_CPP_MIN_LOG_LEVEL="2")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/keras/backend",
        "src/stnkit/keras",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=580)
    assert result.returncode == 0, (
        f"{backend}: {' '.join(command[1:])}\n{result.stdout[-6000:]}{result.stderr[-3000:]}"
    )


def test_without_keras_stnkit_works_and_stnkit_keras_says_what_to_install() -> None:
    code = """
import sys
sys.modules["keras"] = None  # as if keras were not installed
import torch, stnkit
out = stnkit.warp(torch.rand(1, 1, 4, 4), stnkit.identity_params("affine", 1))
assert out.shape == (1, 1, 4, 4)
try:
    import stnkit.keras
except ImportError as error:
    print(error)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == (
        "stnkit.keras needs Keras 3 and a backend: pip install 'stnkit[keras]' (keras, tensorflow-cpu, jax)"
    )
