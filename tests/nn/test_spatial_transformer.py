"""The SpatialTransformer layer and the localisation networks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import stnkit
from stnkit.nn import LocalizationCNN, LocalizationMLP, SpatialTransformer

TRANSFORMS_2D = [name for name in stnkit.list_transforms() if name != "affine3d"]


@pytest.mark.parametrize("transform", TRANSFORMS_2D)
@pytest.mark.parametrize("align_corners", [False, True])
def test_fresh_layer_is_the_identity(transform: str, align_corners: bool) -> None:
    stn = SpatialTransformer(
        localization=LocalizationCNN(in_channels=3), transform=transform, align_corners=align_corners
    )
    for shape in [(1, 3, 28, 28), (5, 3, 17, 30)]:
        x = torch.rand(shape)
        torch.testing.assert_close(stn(x), x, atol=1e-5, rtol=0)
    assert stn.last_params is not None
    assert stn.last_params.shape == (5, stn.transform.num_params)


def test_fresh_layer_is_the_identity_on_volumes_and_feature_maps() -> None:
    volume = torch.rand(2, 4, 5, 6, 7)
    stn3d = SpatialTransformer(localization=LocalizationMLP(in_features=4 * 5 * 6 * 7), transform="affine3d")
    torch.testing.assert_close(stn3d(volume), volume, atol=1e-5, rtol=0)
    features = torch.randn(3, 64, 9, 9)  # a feature map, values of both signs
    stn = SpatialTransformer(
        localization=LocalizationCNN(in_channels=64, channels=(16,)), transform="similarity"
    )
    torch.testing.assert_close(stn(features), features, atol=1e-5, rtol=0)


def test_head_starts_at_zero_weights_and_identity_bias() -> None:
    stn = SpatialTransformer(localization=LocalizationMLP(in_features=16), transform="projective")
    assert torch.all(stn.head.weight == 0)
    torch.testing.assert_close(stn.head.bias.detach(), stnkit.get_transform("projective").identity())


def test_out_size_downsamples() -> None:
    stn = SpatialTransformer(
        localization=LocalizationCNN(in_channels=1), transform="attention", out_size=(14, 14)
    )
    assert stn(torch.rand(2, 1, 28, 28)).shape == (2, 1, 14, 14)
    grid = stn.grid(stnkit.identity_params("attention", 2), (2, 1, 28, 28))
    assert grid.shape == (2, 14, 14, 2)


def test_custom_localization_needs_a_known_width() -> None:
    conv_only = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="num_features"):
        SpatialTransformer(localization=conv_only)
    stn = SpatialTransformer(localization=conv_only, num_features=4)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(stn(x), x, atol=1e-5, rtol=0)
    inferred = SpatialTransformer(localization=nn.Sequential(nn.Flatten(), nn.Linear(64, 7)))
    assert inferred.head.in_features == 7


def test_bad_localization_output_is_reported() -> None:
    stn = SpatialTransformer(localization=nn.Identity(), num_features=5)
    with pytest.raises(ValueError, match=r"localization must return \(N, F\) features"):
        stn(torch.rand(2, 1, 4, 4))
    stn = SpatialTransformer(localization=nn.Flatten(), num_features=5)
    with pytest.raises(ValueError, match="localization returned 16 features, the head expects 5"):
        stn(torch.rand(2, 1, 4, 4))
    with pytest.raises(TypeError, match="localization must be an nn.Module"):
        SpatialTransformer(localization=lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode must be one of"):
        SpatialTransformer(localization=nn.Flatten(), num_features=5, mode="area")


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        ("yes", "'yes' (str)"),
        (None, "None (NoneType)"),
        (1, "1 (int)"),
        (torch.tensor(True), "tensor(True) (Tensor)"),
    ],
)
def test_align_corners_must_be_a_bool(bad: object, shown: str) -> None:
    with pytest.raises(TypeError) as raised:
        SpatialTransformer(localization=nn.Flatten(), num_features=5, align_corners=bad)  # type: ignore[arg-type]
    assert str(raised.value) == f"align_corners must be a bool (True or False), got {shown}"
    stn = SpatialTransformer(localization=nn.Flatten(), num_features=5, align_corners=np.True_)  # type: ignore[arg-type]
    assert stn.align_corners is True  # a Python bool: what extra_repr, checkpoints and torch expect


def test_localization_input_checks() -> None:
    with pytest.raises(ValueError, match=r"LocalizationCNN expects \(N, 1, H, W\), got \[2, 3, 8, 8\]"):
        LocalizationCNN(in_channels=1)(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="LocalizationMLP expects inputs with 64 values per sample, got 48"):
        LocalizationMLP(in_features=64)(torch.rand(2, 3, 4, 4))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LocalizationMLP(in_features=-1), "in_features must be a positive int, got -1"),
        (
            lambda: LocalizationMLP(in_features=784, hidden=(-5,)),
            "hidden must be a sequence of positive ints",
        ),
        (
            lambda: LocalizationMLP(in_features=784, hidden="abc"),
            "hidden must be a sequence of positive ints",
        ),
        (lambda: LocalizationMLP(in_features=784, hidden=(0,)), "hidden must be a sequence of positive ints"),
        (lambda: LocalizationCNN(in_channels=0), "in_channels must be a positive int, got 0"),
        (lambda: LocalizationCNN(in_channels="1"), "in_channels must be a positive int, got '1'"),
        (
            lambda: LocalizationCNN(in_channels=1, channels=(-3,)),
            "channels must be a sequence of positive ints",
        ),
        (lambda: LocalizationCNN(in_channels=1, out_features=0), "out_features must be a positive int"),
        (lambda: LocalizationCNN(in_channels=1, pooled_size=0), "pooled_size must be a positive int"),
        (lambda: LocalizationCNN(in_channels=1, downsample=0), "downsample must be a positive int"),
        (lambda: LocalizationCNN(in_channels=1, kernel_size=4), "kernel_size must be odd, got 4"),
    ],
)
def test_localization_networks_refuse_sizes_they_cannot_build(build, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_layer_refuses_input_of_another_dtype_or_type_in_one_line() -> None:
    stn = SpatialTransformer(localization=LocalizationCNN(in_channels=1))
    for dtype in (torch.float64, torch.float16, torch.uint8):
        with pytest.raises(TypeError, match=f"expects torch.float32 input .* got {dtype}"):
            stn(torch.zeros(2, 1, 8, 8, dtype=dtype))
    with pytest.raises(TypeError, match="input must be a torch.Tensor, got list"):
        stn(torch.zeros(2, 1, 8, 8).tolist())
    with pytest.raises(ValueError, match="LocalizationMLP expects a batch"):
        LocalizationMLP(in_features=784)(torch.rand(784))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision hands it bf16 features
        assert stn(torch.rand(2, 1, 8, 8, dtype=torch.bfloat16)).shape == (2, 1, 8, 8)
    stn64 = stn.to(torch.float64)  # a module converted with its input works
    assert stn64(torch.rand(2, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_gradients_reach_the_localisation_network() -> None:
    stn = SpatialTransformer(localization=LocalizationCNN(in_channels=1), transform="affine")
    x = torch.rand(4, 1, 16, 16)
    stn(x).square().mean().backward()
    assert stn.head.weight.grad is not None and stn.head.weight.grad.abs().sum() > 0
    assert stn.head.bias.grad is not None and stn.head.bias.grad.abs().sum() > 0


def test_learns_to_undo_a_translation() -> None:
    """A translation transformer learns to re-centre a shifted blob (the layer trains, not collapses)."""
    torch.manual_seed(0)
    size = 16
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")

    def blob(cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((xs - cx[:, None, None]) ** 2 + (ys - cy[:, None, None]) ** 2) / 0.1)[:, None]

    stn = SpatialTransformer(
        localization=LocalizationMLP(in_features=size * size, hidden=(32,)), transform="translation"
    )
    optimizer = torch.optim.Adam(stn.parameters(), lr=1e-2)
    centred = blob(torch.zeros(64), torch.zeros(64))
    losses = []
    for _ in range(150):
        offsets = (torch.rand(64, 2) - 0.5) * 0.8
        loss = (stn(blob(offsets[:, 0], offsets[:, 1])) - centred).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.2 * sum(losses[:10]) / 10


@pytest.mark.parametrize("transform", TRANSFORMS_2D)
def test_forward_and_backward_read_no_values_off_the_cpu(transform: str) -> None:
    # Meta tensors have no values: any finiteness check (a host-device sync on CUDA) would raise.
    stn = SpatialTransformer(localization=LocalizationCNN(in_channels=1), transform=transform).to("meta")
    x = torch.rand(2, 1, 28, 28, device="meta", requires_grad=True)
    out = stn(x)
    assert out.shape == x.shape and out.device.type == "meta"
    out.sum().backward()
    assert stn.head.bias.grad is not None and stn.head.bias.grad.device.type == "meta"


@pytest.mark.parametrize("num_features", [0, -1, True, 2.5, "5"])
def test_num_features_must_be_a_positive_int(num_features: object) -> None:
    with pytest.raises(ValueError, match=f"num_features must be a positive int, got {num_features!r}"):
        SpatialTransformer(localization=nn.Flatten(), num_features=num_features)  # type: ignore[arg-type]


def test_integer_images_are_told_to_convert_and_float_ones_may_convert_the_module_instead() -> None:
    st = SpatialTransformer(localization=LocalizationMLP(in_features=16, hidden=(4,)), out_size=(4, 4))
    with pytest.raises(TypeError) as integer:
        st(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    assert str(integer.value).endswith("got torch.uint8; convert with x.to(torch.float32)")
    with pytest.raises(TypeError) as double:
        st(torch.zeros(2, 1, 4, 4, dtype=torch.float64))
    assert str(double.value).endswith(
        "convert with x.to(torch.float32) or the module with .to(torch.float64)"
    )


def test_a_non_finite_input_is_blamed_for_the_non_finite_parameters_it_gives() -> None:
    st = SpatialTransformer(localization=LocalizationMLP(in_features=16, hidden=(4,)), out_size=(4, 4))
    with torch.no_grad():
        st.head.weight.fill_(0.1)  # a fresh head ignores its features; this one passes NaN on
    images = torch.rand(2, 1, 4, 4)
    images[1, 0, 2, 2] = float("nan")
    with pytest.raises(stnkit.NonFiniteError, match=r"input holds 1 non-finite value\(s\) \(NaN or inf\)"):
        st(images)
    with torch.no_grad():
        st.head.bias.fill_(float("inf"))  # the input is finite: the parameters' own message stands
    with pytest.raises(stnkit.NonFiniteError, match="params must be finite"):
        st(torch.rand(2, 1, 4, 4))


@pytest.mark.parametrize(
    "make",
    [
        lambda a: LocalizationMLP(in_features=4, act_layer=a),
        lambda a: LocalizationCNN(in_channels=1, act_layer=a),
    ],
)
def test_an_activation_instance_is_refused_with_a_hint(make) -> None:
    with pytest.raises(
        TypeError,
        match=r"act_layer must be an nn.Module class such as nn.ReLU, got ReLU\(\) \(pass the class, ReLU, not an instance\)",
    ):
        make(nn.ReLU())
    make(nn.Tanh)
