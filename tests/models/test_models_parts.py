"""Model parts that are not whole models: per-image contrast normalisation."""

from __future__ import annotations

import pytest
import torch

from stnkit.models import create_model
from stnkit.models.parts import ImageStandardize


def test_each_image_comes_out_with_zero_mean_and_unit_variance() -> None:
    x = torch.rand(5, 3, 8, 9, dtype=torch.float64) * torch.rand(5, 1, 1, 1, dtype=torch.float64)
    y = ImageStandardize(eps=0.0)(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(y.var(dim=(1, 2, 3), correction=0), torch.ones(5, dtype=torch.float64))


def test_brightness_and_contrast_are_taken_out_but_colour_ratios_kept() -> None:
    x = torch.rand(4, 3, 6, 6, dtype=torch.float64)
    gain = torch.tensor([0.2, 0.5, 1.0, 3.0], dtype=torch.float64).view(4, 1, 1, 1)
    offset = torch.tensor([0.0, 0.3, -0.1, 0.05], dtype=torch.float64).view(4, 1, 1, 1)
    standardize = ImageStandardize(eps=0.0)
    assert torch.allclose(standardize(gain * x + offset), standardize(x), atol=1e-10)
    # one mean for all channels: a red image and a grey image of the same brightness differ
    grey = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64) + 0.1 * torch.rand(1, 1, 4, 4)
    red = grey.clone()
    red[:, 0] += 0.3
    assert not torch.allclose(standardize(red), standardize(grey), atol=1e-3)


def test_a_uniform_image_is_not_blown_up() -> None:
    flat = torch.full((1, 3, 4, 4), 0.7) + 1e-4 * torch.rand(1, 3, 4, 4)
    assert ImageStandardize()(flat).abs().max() < 0.01


@pytest.mark.parametrize("name", ["gtsrb-cnn", "gtsrb-st-cnn", "gtsrb-multi-st-cnn"])
def test_gtsrb_standardize_adds_no_parameters_and_sits_in_the_path(name: str) -> None:
    torch.manual_seed(0)
    plain = create_model(name).eval()
    normed = create_model(name, standardize=True).eval()
    plain_values, normed_values = plain.state_dict().values(), normed.state_dict().values()
    assert [v.shape for v in plain_values] == [v.shape for v in normed_values]
    # same weights in the same order (the names shift by the new modules)
    normed.load_state_dict(dict(zip(normed.state_dict().keys(), plain_values)))
    dim = torch.rand(2, 3, 32, 32) * 0.2  # a dark image: standardising changes what the net sees
    assert not torch.allclose(plain(dim), normed(dim), atol=1e-4)
    assert any(isinstance(m, ImageStandardize) for m in normed.modules())
