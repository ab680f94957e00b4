"""Pictures of a classifier's errors: the confusion picture and two models compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stnkit.data import GTSRB_CLASS_NAMES
from stnkit.models import create_model
from stnkit.viz import (
    ComparisonSection,
    plot_comparison,
    plot_confusion,
    plot_model_comparison,
    transformer_outputs,
)


def _valid_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        return image.size


def test_confusion_picture_of_43_classes(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    matrix = torch.randint(0, 3, (43, 43), generator=g)
    matrix.fill_diagonal_(200)
    small = _valid_png(plot_confusion(matrix[:5, :5], tmp_path / "small.png"))
    large = _valid_png(plot_confusion(matrix, tmp_path / "c.png", class_names=GTSRB_CLASS_NAMES, title="t"))
    assert large[0] > small[0] and large[1] > small[1]  # grows with the classes so that 43 stay readable
    assert large[1] >= 43 * 20  # at least ~20 px per row


def test_confusion_picture_without_errors(tmp_path: Path) -> None:
    _valid_png(plot_confusion(np.diag([3, 4, 5]), tmp_path / "perfect.png"))


@pytest.mark.parametrize(
    ("matrix", "names", "message"),
    [
        (np.zeros((2, 3)), None, r"square \(K, K\)"),
        (np.array([[1, -1], [0, 1]]), None, "non-negative integer"),
        (np.eye(3), ["a", "b"], "2 class names for a 3x3 matrix"),
    ],
)
def test_confusion_refuses_bad_input(tmp_path: Path, matrix, names, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plot_confusion(matrix, tmp_path / "x.png", class_names=names)


def test_transformer_outputs_of_a_baseline_are_empty() -> None:
    images = torch.rand(2, 1, 28, 28)
    assert transformer_outputs(create_model("cnn"), images) == []
    outputs = transformer_outputs(create_model("st-cnn-affine"), images)
    assert len(outputs) == 1 and outputs[0].shape == images.shape
    # A fresh transformer is the identity (up to the sampler's rounding).
    assert torch.allclose(outputs[0], images, atol=1e-4)


def test_model_comparison_picture(tmp_path: Path) -> None:
    models = [create_model("cnn"), create_model("st-cnn-affine")]
    images, labels = torch.rand(5, 1, 28, 28), torch.tensor([1, 2, 3, 4, 5])
    predictions = [torch.tensor([1, 2, 0, 0, 0]), torch.tensor([0, 0, 3, 4, 5])]
    groups = [("A right, B wrong", [0, 1]), ("B right, A wrong", [2, 3, 4]), ("nothing", [])]
    path = plot_model_comparison(
        models,
        images,
        labels,
        predictions,
        groups,
        tmp_path / "cmp.png",
        model_names=["cnn", "st"],
        title="t",
    )
    width, height = _valid_png(path)
    assert width > 3 * 100 and height > 3 * 2 * 100  # 3 columns; 3 blocks of 2 rows (input, B's output)
    with pytest.raises(ValueError, match="positions should lie in"):
        plot_model_comparison(
            models, images, labels, predictions, [("x", [5])], tmp_path / "bad.png", model_names=["a", "b"]
        )


def test_comparison_refuses_sections_that_disagree(tmp_path: Path) -> None:
    section = ComparisonSection(
        title="s",
        images=torch.rand(2, 1, 4, 4),
        labels=torch.tensor([0, 1]),
        predictions=[torch.tensor([0])],
        outputs=[[]],
    )
    with pytest.raises(ValueError, match="first dimension"):
        plot_comparison([section], tmp_path / "x.png", model_names=["a"])
    with pytest.raises(ValueError, match="for 2 models"):
        plot_comparison([section], tmp_path / "x.png", model_names=["a", "b"])
