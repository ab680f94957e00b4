"""Shared test fixtures and helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stnkit.numerics import PORTABLE_ENVIRONMENT

# The CLI's commands choose portable numerics (stnkit.numerics), which torch reads at its first
# computation: set them before any test computes, so that in-process commands can run on a CPU with
# AVX-512 too. Every test then runs with the numbers the CLI gives on any machine.
os.environ.update(PORTABLE_ENVIRONMENT)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    """The real data beside the repository (../shared/data); skip if this machine lacks it."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA
