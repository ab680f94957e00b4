"""Shared helpers for the command-line tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stnkit.engine import TrainConfig, save_checkpoint
from stnkit.models import create_model

# A small MNIST classifier: 28x28, one hidden layer of 8 (lists, as a run records them).
SMALL_MNIST_KWARGS: dict[str, Any] = {"image_size": [28, 28], "hidden": [8]}


def write_untrained_checkpoint(
    path: Path,
    name: str = "cnn",
    *,
    dataset: str = "mnist",
    build_kwargs: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> Path:
    """Save a freshly built (untrained) model at ``path`` as a run trained on ``dataset`` would.

    Args:
        path: the checkpoint file to write.
        name: a registered model name.
        dataset: the dataset the checkpoint's config names.
        build_kwargs: the builder's arguments, recorded as the checkpoint's ``model_kwargs``
            (default: :data:`SMALL_MNIST_KWARGS`).
        fields: checkpoint fields to replace after building (malformed ``model_kwargs``, ``model_name``
            or ``model`` for the error tests).
    """
    kwargs = dict(SMALL_MNIST_KWARGS if build_kwargs is None else build_kwargs)
    state = {
        "model_name": name,
        "model_kwargs": kwargs,
        "model": create_model(name, **kwargs).state_dict(),
        "epoch": 1,
        "config": TrainConfig(dataset=dataset, model=name).to_dict(),
    }
    return save_checkpoint({**state, **(fields or {})}, path)


@pytest.fixture
def untrained_checkpoint() -> Callable[..., Path]:
    """:func:`write_untrained_checkpoint`, for tests that need a checkpoint without a training."""
    return write_untrained_checkpoint
