"""Doctest namespace: the examples in docstrings may use ``torch`` without importing it."""

from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace: dict[str, Any]) -> None:
    doctest_namespace["torch"] = torch
