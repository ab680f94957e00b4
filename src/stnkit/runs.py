"""A training run's checkpoint rebuilt as the model it trained, for evaluating, picturing or exporting.

``stnkit train`` saves the model's registry name and builder arguments beside its weights
(:func:`stnkit.engine.save_checkpoint`); :func:`load_run` builds that model again from the registry
(:func:`stnkit.models.create_model`) and loads the weights. The engine knows no model and the
registry no checkpoint, so the two meet here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from stnkit.engine import CheckpointError, TrainConfig, config_from_dict, load_checkpoint
from stnkit.models import UnknownModelError, create_model

__all__ = ["load_run"]


def load_run(checkpoint: str | Path) -> tuple[nn.Module, dict[str, Any], TrainConfig]:
    """Rebuild the model of a checkpoint with its weights, in eval mode.

    Args:
        checkpoint: a ``checkpoint.pt`` written by ``stnkit train``.

    Returns:
        The model, the checkpoint's whole state (``epoch``, ``metrics``, ...) and its training config.

    Raises:
        CheckpointError: the file cannot be read (:func:`stnkit.engine.load_checkpoint`), or its
            model fields cannot rebuild the model (the message names the file and the reason).

    Example:
        >>> model, state, config = load_run("runs/rts/checkpoint.pt")  # doctest: +SKIP
        >>> config.dataset, state["epoch"]  # doctest: +SKIP
        ('rts', 20)
    """
    # load_checkpoint has checked the fields' types: a str name, str-keyed kwargs, a dict of tensors.
    state = load_checkpoint(checkpoint)
    try:
        config = config_from_dict(state["config"])
        model = create_model(state["model_name"], **state["model_kwargs"])
    except (UnknownModelError, TypeError, ValueError) as err:
        raise CheckpointError(f"{checkpoint}: {_one_line(err)}") from err
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{checkpoint}: weights do not fit the model: {_one_line(err)}") from err
    model.eval()
    return model, state, config


def _one_line(err: Exception) -> str:
    # A builder's or load_state_dict's message may span lines (one per mismatched weight).
    return " ".join(str(err).split())
