"""InputGradConv2d: nn.Conv2d's results and state dict, with the input gradient computed its own way."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stnkit.nn import InputGradConv2d
from stnkit.nn.conv import _ConvWithInputGradient, conv2d_input_gradient


@pytest.mark.parametrize(
    ("in_channels", "kernel_size", "padding", "bias"),
    [(1, 5, 0, True), (3, 5, 2, False), (2, (3, 5), (1, 2), True), (4, 1, 0, True)],
)
def test_matches_conv2d_values_and_gradients(
    in_channels: int, kernel_size: int | tuple[int, int], padding: int | tuple[int, int], bias: bool
) -> None:
    torch.manual_seed(0)
    ours = InputGradConv2d(in_channels, 6, kernel_size, padding=padding, bias=bias).double()
    plain = nn.Conv2d(in_channels, 6, kernel_size, padding=padding, bias=bias).double()
    plain.load_state_dict(ours.state_dict())
    image = torch.randn(3, in_channels, 9, 11, dtype=torch.float64, requires_grad=True)
    assert ours._takes_fast_route(image)
    out, expected = ours(image), plain(image)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, (image, *ours.parameters()), upstream)
    grads_expected = torch.autograd.grad(expected, (image, *plain.parameters()), upstream)
    for got, want in zip(grads, grads_expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_gradcheck() -> None:
    conv = InputGradConv2d(2, 3, 3, padding=1).double()
    image = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (image,))


def test_input_gradient_function_matches_autograd_in_float32() -> None:
    torch.manual_seed(1)
    weight = torch.randn(32, 1, 5, 5)
    image = torch.rand(64, 1, 28, 28, requires_grad=True)
    out = torch.nn.functional.conv2d(image, weight)
    upstream = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, image, upstream)
    got = conv2d_input_gradient(upstream, weight, (28, 28), (0, 0))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_state_dict_is_conv2d_state_dict() -> None:
    ours, plain = InputGradConv2d(1, 4, 3), nn.Conv2d(1, 4, 3)
    assert ours.state_dict().keys() == plain.state_dict().keys()
    ours.load_state_dict(plain.state_dict())
    assert torch.equal(ours.weight, plain.weight)


@pytest.mark.parametrize(
    ("kwargs", "in_channels"),
    [
        ({"stride": 2}, 1),
        ({"dilation": 2}, 1),
        ({"groups": 2}, 2),
        ({"padding": "same"}, 1),
        ({"padding_mode": "reflect", "padding": 1}, 1),
        ({}, 5),  # more channels than MAX_CHANNELS: oneDNN is faster there
    ],
)
def test_plain_route_where_the_fast_one_does_not_apply(kwargs: dict[str, object], in_channels: int) -> None:
    conv = InputGradConv2d(in_channels, 4, 3, **kwargs)  # type: ignore[arg-type]
    image = torch.randn(2, in_channels, 8, 8, requires_grad=True)
    assert not conv._takes_fast_route(image)
    expected = nn.Conv2d(in_channels, 4, 3, **kwargs)  # type: ignore[arg-type]
    expected.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(image), expected(image))


def test_plain_route_when_the_input_needs_no_gradient() -> None:
    conv = InputGradConv2d(1, 4, 3)
    assert not conv._takes_fast_route(torch.randn(2, 1, 8, 8))
    with torch.no_grad():
        assert not conv._takes_fast_route(torch.randn(2, 1, 8, 8, requires_grad=True))


@pytest.mark.parametrize(("bias", "padding"), [(True, (1, 1)), (False, (0, 2))])
def test_gradcheck_and_gradgradcheck_for_input_weight_and_bias(bias: bool, padding: tuple[int, int]) -> None:
    image = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    bias_tensor = torch.randn(3, dtype=torch.float64, requires_grad=True) if bias else None

    def fn(image: torch.Tensor, weight: torch.Tensor, *bias: torch.Tensor) -> torch.Tensor:
        return _ConvWithInputGradient.apply(image, weight, bias[0] if bias else None, padding)

    inputs = (image, weight) if bias_tensor is None else (image, weight, bias_tensor)
    # fast_mode: checks random projections of the Jacobians (column by column took a minute on 2 cores).
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)


def test_double_backward_equals_conv2d() -> None:
    # A gradient penalty on the input gradient, as in WGAN-GP or input-gradient regularisation.
    torch.manual_seed(2)
    ours = InputGradConv2d(1, 4, 3, padding=1).double()
    plain = nn.Conv2d(1, 4, 3, padding=1).double()
    plain.load_state_dict(ours.state_dict())
    image = torch.randn(3, 1, 7, 8, dtype=torch.float64, requires_grad=True)
    assert ours._takes_fast_route(image)
    results = []
    for conv in (ours, plain):
        out = conv(image)
        (grad_image,) = torch.autograd.grad(out.square().sum(), image, create_graph=True)
        penalty = grad_image.square().sum()
        results.append(torch.autograd.grad(penalty, (image, *conv.parameters())))
    for got, want in zip(*results, strict=True):
        assert want.abs().max() > 0
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_first_order_backward_builds_no_graph() -> None:
    conv = InputGradConv2d(1, 4, 3).double()
    image = torch.randn(2, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    (grad_image,) = torch.autograd.grad(conv(image).sum(), image)
    assert not grad_image.requires_grad
