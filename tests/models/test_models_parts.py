"""Model parts that are not whole models: per-image contrast normalisation, parallel transformers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from stnkit.models import create_model
from stnkit.models.parts import (
    ImageStandardize,
    LocalContrastNorm,
    ParallelSpatialTransformer,
    count_parameters,
)


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


def _local_contrast_reference(x: torch.Tensor, kernel_size: int, sigma: float, eps: float) -> torch.Tensor:
    # Pixel by pixel, from the definition: Gaussian weights over the window's pixels inside the image
    # (all channels), renormalised to sum 1; subtract the weighted mean, divide by the weighted
    # deviation of the centred image, floored by the image's mean deviation.
    b, c, h, w = x.shape
    r = kernel_size // 2

    def weighted_mean(values: torch.Tensor, n: int, i: int, j: int) -> torch.Tensor:
        total = values.new_zeros(())
        weight = 0.0
        for di in range(-r, r + 1):
            for dj in range(-r, r + 1):
                if 0 <= i + di < h and 0 <= j + dj < w:
                    g = math.exp(-(di * di + dj * dj) / (2 * sigma * sigma))
                    total = total + g * values[n, :, i + di, j + dj].sum()
                    weight += g * c
        return total / weight

    centred = torch.empty_like(x)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                centred[n, :, i, j] = x[n, :, i, j] - weighted_mean(x, n, i, j)
    deviation = torch.empty(b, 1, h, w, dtype=x.dtype)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                deviation[n, 0, i, j] = weighted_mean(centred.square(), n, i, j).clamp_min(eps**2).sqrt()
    floor = deviation.mean(dim=(2, 3), keepdim=True)
    return centred / torch.maximum(deviation, floor)


@pytest.mark.parametrize(("kernel_size", "sigma"), [(3, 1.0), (5, 1.5)])
def test_local_contrast_norm_equals_the_pixel_by_pixel_definition(kernel_size: int, sigma: float) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 6, 7, dtype=torch.float64)
    x[1, :, :, :3] *= 0.1  # a dark half: the local deviation falls below the image's mean there
    norm = LocalContrastNorm(3, kernel_size=kernel_size, sigma=sigma)
    expected = _local_contrast_reference(x, kernel_size, sigma, norm.eps)
    assert torch.allclose(norm.double()(x), expected, atol=1e-12)


def test_local_contrast_norm_takes_out_gain_and_offset_and_evens_out_light_within_an_image() -> None:
    torch.manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(2, 3, 16, 16, dtype=torch.float64)
    norm = LocalContrastNorm(3, eps=1e-9).double()
    assert torch.allclose(norm(0.3 * x + 0.1), norm(x), atol=1e-9)
    # A shadow over the left half: its local deviation falls below the image's mean one, so the
    # floor caps how far it is lifted, but away from the shadow's edge it comes out much closer to the
    # lit image than under one global mean and deviation (ImageStandardize).
    shadowed = x.clone()
    shadowed[..., :8] *= 0.25
    left = (..., slice(None), slice(0, 3))  # columns 3+ window radii from the shadow's edge
    standardize = ImageStandardize(eps=0.0)
    local_gap = (norm(shadowed)[left] - norm(x)[left]).abs().mean()
    global_gap = (standardize(shadowed)[left] - standardize(x)[left]).abs().mean()
    assert local_gap < 0.8 * global_gap


def test_local_contrast_norm_is_finite_with_gradients_on_a_flat_image() -> None:
    flat = torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64, requires_grad=True)
    out = LocalContrastNorm(3).double()(flat)
    out.sum().backward()
    assert torch.isfinite(out).all() and out.abs().max() < 1e-6
    assert flat.grad is not None and torch.isfinite(flat.grad).all()


def test_local_contrast_norm_gradcheck() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    norm = LocalContrastNorm(2, kernel_size=3, sigma=1.0).double()
    assert torch.autograd.gradcheck(norm, (x,))
    assert torch.autograd.gradgradcheck(norm, (x,))


@pytest.mark.parametrize(("kernel_size", "sigma"), [(4, 1.0), (0, 1.0), (3, 0.0)])
def test_local_contrast_norm_refuses_bad_windows(kernel_size: int, sigma: float) -> None:
    with pytest.raises(ValueError, match="kernel_size must be odd|sigma must be"):
        LocalContrastNorm(3, kernel_size=kernel_size, sigma=sigma)


@pytest.mark.parametrize("name", ["gtsrb-cnn", "gtsrb-st-cnn", "gtsrb-multi-st-cnn"])
def test_gtsrb_local_contrast_sits_where_standardize_does(name: str) -> None:
    torch.manual_seed(0)
    standardized = create_model(name, standardize=True).eval()
    local = create_model(name, local_contrast=True).eval()
    # the same parameters (the norm has none and saves nothing), so the same state dict keys
    assert list(standardized.state_dict()) == list(local.state_dict())
    local.load_state_dict(standardized.state_dict())
    n_std = sum(isinstance(m, ImageStandardize) for m in standardized.modules())
    n_local = sum(isinstance(m, LocalContrastNorm) for m in local.modules())
    assert n_local == n_std >= 1
    image = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(standardized(image), local(image), atol=1e-4)


def test_gtsrb_refuses_both_contrast_norms() -> None:
    with pytest.raises(Exception, match="standardize and local_contrast"):
        create_model("gtsrb-st-cnn", standardize=True, local_contrast=True)


# --- parallel transformers ------------------------------------------------------------------------


def test_parallel_heads_can_each_have_their_own_localization_net() -> None:
    shared = create_model("2xst-fcn-affine", in_channels=2, num_classes=19)
    own = create_model("2xst-fcn-affine", in_channels=2, num_classes=19, shared_localization=False)
    assert isinstance(own.stn, ParallelSpatialTransformer) and isinstance(
        shared.stn, ParallelSpatialTransformer
    )
    assert shared.stn.shares_localization and not own.stn.shares_localization
    first, second = (head.localization for head in own.stn.head_list())
    assert first is not second and not torch.equal(*(next(loc.parameters()) for loc in (first, second)))
    # Exactly one more localisation net's parameters; the same output, the identity at the start.
    assert count_parameters(own) - count_parameters(shared) == count_parameters(second)
    x = torch.rand(3, 2, 42, 42)
    assert own.stn(x).shape == shared.stn(x).shape == (3, 4, 28, 28)
    assert torch.allclose(own.stn(x), shared.stn(x), atol=1e-6)
    assert create_model("2xst-cnn-affine", in_channels=2, num_classes=19, shared_localization=False)(
        x
    ).shape == (
        3,
        19,
    )


def test_parallel_heads_need_one_localization_net_each() -> None:
    with pytest.raises(ValueError, match="one localization per head: 2 heads, got 3"):
        ParallelSpatialTransformer(localization=[nn.Flatten() for _ in range(3)], num_heads=2)
    with pytest.raises(ValueError, match="one localization per head: 2 heads, got 1"):
        ParallelSpatialTransformer(localization=nn.ModuleList([nn.Flatten()]), num_heads=2)
    heads = ParallelSpatialTransformer(localization=nn.ModuleList([_ChannelCentre(0), _ChannelCentre(1)]))
    assert not heads.shares_localization and heads.localize(torch.rand(3, 2, 8, 8)).shape == (3, 2, 6)


class _ChannelCentre(nn.Module):
    """Features (B, 2): the intensity-weighted centre of one channel, (x, y) in normalised coordinates."""

    out_features = 2

    def __init__(self, channel: int):
        super().__init__()
        self.channel = channel

    def forward(self, x: Tensor) -> Tensor:
        image = x[:, self.channel]  # (B, H, W)
        h, w = image.shape[-2:]
        # pixel centres in align_corners=False coordinates
        xs, ys = (2 * torch.arange(w) + 1) / w - 1, (2 * torch.arange(h) + 1) / h - 1
        mass = image.sum((-2, -1))
        return torch.stack(((image.sum(-2) * xs).sum(-1) / mass, (image.sum(-1) * ys).sum(-1) / mass), dim=-1)


def _blobs(batch: int, channels: int, size: int, generator: torch.Generator) -> Tensor:
    """One Gaussian blob per channel, each at its own random place."""
    centres = torch.rand(batch, channels, 2, generator=generator) * (size - 12) + 6
    grid = torch.arange(size, dtype=torch.float32)
    dx = grid.view(1, 1, 1, size) - centres[..., 0, None, None]
    dy = grid.view(1, 1, size, 1) - centres[..., 1, None, None]
    return torch.exp(-(dx**2 + dy**2) / 8)


def test_channel_following_tells_which_channel_each_head_looks_at() -> None:
    # Head i's translation is the centre of channel 1 - i: a perfect follower of the other channel.
    stn = ParallelSpatialTransformer(localization=[_ChannelCentre(1), _ChannelCentre(0)], num_heads=2)
    with torch.no_grad():
        for head in stn.head_list():
            head.head.weight.zero_()
            head.head.weight[2, 0] = head.head.weight[5, 1] = 1.0  # affine (a, b, tx, c, d, ty)
    x = _blobs(300, 2, 32, torch.Generator().manual_seed(0))
    following = stn.channel_following(x)
    assert following.shape == (2, 2)
    assert following[0, 1] > 0.999 and following[1, 0] > 0.999
    assert following[0, 0].abs() < 0.2 and following[1, 1].abs() < 0.2


def test_channel_following_is_nan_for_heads_that_do_not_move_and_needs_a_batch() -> None:
    # A fresh model: every head at the identity, looking at the same place whatever the input.
    stn = create_model("2xst-fcn-affine", in_channels=2, num_classes=19).stn
    assert isinstance(stn, ParallelSpatialTransformer)
    x = _blobs(8, 2, 42, torch.Generator().manual_seed(1))
    assert stn.channel_following(x).isnan().all()
    with pytest.raises(ValueError, match=r"B >= 2.*got shape \[1, 2, 42, 42\]"):
        stn.channel_following(x[:1])
