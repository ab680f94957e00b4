"""The fast 2-D affine path agrees with the plain path and the reference sampler."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit.geometry import MODES, PADDING_MODES
from stnkit.geometry.fast import affine_grid_2d, affine_warp_2d
from stnkit.geometry.warp import _takes_fast_path

CASES = list(itertools.product(MODES, PADDING_MODES, [False, True]))


def plain_warp(
    image: torch.Tensor, theta: torch.Tensor, out: tuple[int, int], **kwargs: object
) -> torch.Tensor:
    grid = stnkit.affine_grid(
        theta, (image.shape[0], image.shape[1], *out), align_corners=kwargs["align_corners"]
    )
    return F.grid_sample(image, grid, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "padding_mode", "align_corners"), CASES)
def test_fast_path_matches_plain_path_values_and_gradients(
    mode: str, padding_mode: str, align_corners: bool, assert_same_outputs_and_gradients: Callable[..., None]
) -> None:
    image = torch.randn(3, 2, 9, 11, dtype=torch.float64, requires_grad=True)
    theta = (
        torch.eye(2, 3, dtype=torch.float64) + 0.6 * torch.randn(3, 2, 3, dtype=torch.float64)
    ).requires_grad_()
    kwargs = {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}
    fast = affine_warp_2d(image, theta, 7, 13, **kwargs)  # type: ignore[arg-type]
    plain = plain_warp(image, theta, (7, 13), **kwargs)
    assert_same_outputs_and_gradients(fast, plain, (image, theta))


@pytest.mark.parametrize("transform", ["translation", "attention", "similarity", "affine"])
def test_warp_native_equals_reference_for_affine_family(transform: str) -> None:
    spec = stnkit.get_transform(transform)
    image = torch.randn(2, 3, 10, 8, dtype=torch.float64, requires_grad=True)
    params = (
        spec.identity(dtype=torch.float64) + 0.3 * torch.randn(2, spec.num_params, dtype=torch.float64)
    ).requires_grad_()
    assert _takes_fast_path(spec, "native")
    native = stnkit.warp(image, params, transform=transform, out_size=(6, 7))
    reference = stnkit.warp(image, params, transform=transform, out_size=(6, 7), backend="reference")
    torch.testing.assert_close(native, reference, rtol=0, atol=1e-12)
    upstream = torch.randn_like(native)
    for ours, theirs in zip(
        torch.autograd.grad(native, (image, params), upstream),
        torch.autograd.grad(reference, (image, params), upstream),
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_fast_path_gradcheck() -> None:
    image = torch.randn(2, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    theta = (
        torch.eye(2, 3, dtype=torch.float64) + 0.2 * torch.randn(2, 2, 3, dtype=torch.float64)
    ).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, t: affine_warp_2d(x, t, 4, 5, "bilinear", "zeros", False), (image, theta)
    )


def test_fast_path_skips_input_gradient_when_not_needed() -> None:
    image = torch.rand(2, 1, 8, 8)
    theta = (torch.eye(2, 3) + 0.1 * torch.randn(2, 2, 3)).requires_grad_()
    stnkit.warp(image, theta).sum().backward()
    assert image.grad is None
    assert theta.grad is not None and torch.isfinite(theta.grad).all()


def test_fast_grid_equals_affine_grid() -> None:
    theta = torch.randn(4, 2, 3)
    for align_corners in (False, True):
        torch.testing.assert_close(
            affine_grid_2d(theta, 5, 7, align_corners),
            F.affine_grid(theta, [4, 1, 5, 7], align_corners=align_corners),
            rtol=0,
            atol=1e-6,
        )


def test_fast_path_is_not_taken_for_other_transforms_or_backends() -> None:
    assert not _takes_fast_path(stnkit.get_transform("affine"), "reference")
    assert not _takes_fast_path(stnkit.get_transform("projective"), "native")
    assert not _takes_fast_path(stnkit.get_transform("affine3d"), "native")


def test_export_sees_standard_operators() -> None:
    # torch.export / torch.compile / the ONNX exporter trace the plain grid + grid_sampler graph.
    class Warp(torch.nn.Module):
        def forward(self, image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
            return stnkit.warp(image, theta)

    image = torch.rand(2, 1, 6, 6)
    theta = torch.eye(2, 3).expand(2, 2, 3).contiguous()
    program = torch.export.export(Warp(), (image, theta))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "aten.grid_sampler.default" in targets
    torch.testing.assert_close(program.module()(image, theta), image, atol=1e-6, rtol=0)


def test_functorch_transforms_use_the_plain_path() -> None:
    image = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    theta = torch.tensor([[[0.9, 0.1, 0.05], [-0.1, 1.1, 0.03]]], dtype=torch.float64)  # off the kinks
    jacobian = torch.func.jacrev(lambda t: stnkit.warp(image, t).sum())(theta)
    expected = torch.autograd.functional.jacobian(
        lambda t: stnkit.warp(image, t, backend="reference").sum(), theta
    )
    torch.testing.assert_close(jacobian, expected)
