"""Doctest namespace (examples may use ``torch`` without importing it) and collection rules."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace: dict[str, Any]) -> None:
    doctest_namespace["torch"] = torch


# src/stnkit/keras's docstring examples import keras and fix its backend for the process: they run in
# the per-backend subprocesses of tests/keras/test_keras_backends.py, never in the main test process.
collect_ignore = [] if os.environ.get("STNKIT_KERAS_SUBPROCESS") else ["src/stnkit/keras"]
