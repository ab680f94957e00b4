"""stnkit.runs: a checkpoint rebuilt as its model, and the one-line errors of one that cannot be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from stnkit.engine import CheckpointError, TrainConfig, save_checkpoint
from stnkit.models import create_model
from stnkit.runs import load_run

KWARGS = {"in_channels": 1, "num_classes": 10, "image_size": [28, 28], "hidden": [8]}


def _checkpoint(path: Path, **override: Any) -> Path:
    """A checkpoint of a small untrained ST-FCN, with fields replaced by ``override``."""
    model = create_model("st-fcn-affine", **KWARGS)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))  # not the builder's initial weights
    state = {
        "model_name": "st-fcn-affine",
        "model_kwargs": KWARGS,
        "model": model.state_dict(),
        "epoch": 3,
        "config": TrainConfig(dataset="mnist", model="st-fcn-affine", seed=5).to_dict(),
    }
    return save_checkpoint({**state, **override}, path)


def test_load_run_rebuilds_the_model_with_its_weights_in_eval_mode(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "ckpt.pt")
    model, state, config = load_run(path)
    saved = torch.load(path, weights_only=True)["model"]
    assert not model.training and state["epoch"] == 3 and config.seed == 5
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model_name": 7}, "field 'model_name' must be a non-empty str, got int 7"),
        ({"model_kwargs": [1, 2]}, "field 'model_kwargs' must be a dict with str keys"),
        ({"model": "not weights"}, "field 'model' must be a dict of str -> tensor"),
        ({"model_name": "no-such-model"}, "no-such-model"),
        ({"model_kwargs": {**KWARGS, "foo": 1}}, "foo"),
        ({"model_kwargs": {**KWARGS, "hidden": [16]}}, "weights do not fit the model"),
    ],
    ids=["name-int", "kwargs-list", "weights-str", "name-unknown", "kwargs-unknown", "weights-shape"],
)
def test_load_run_refuses_a_checkpoint_naming_it_and_the_field(
    tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    path = _checkpoint(tmp_path / "bad.pt", **override)
    with pytest.raises(CheckpointError, match="bad.pt") as caught:
        load_run(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
