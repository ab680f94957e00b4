"""The fast 2-D affine path agrees with the plain path and the reference sampler."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit.geometry import MODES, PADDING_MODES, fast
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


# ---- Double backward ------------------------------------------------------------------------------

AFFINE_FAMILY = ["translation", "attention", "similarity", "affine"]


@pytest.mark.parametrize("transform", AFFINE_FAMILY)
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize(("align_corners", "at_identity"), [(False, False), (True, False), (False, True)])
def test_warp_default_path_passes_gradgradcheck(
    transform: str, padding_mode: str, align_corners: bool, at_identity: bool
) -> None:
    # Output 3x4 from a 4x5 input: even the identity's points fall between pixels, off bilinear
    # sampling's kinks, where finite differences are meaningful. Not with align_corners=True, which maps
    # corners to corners: there the identity sits on kinks (its values are checked against torch below).
    spec = stnkit.get_transform(transform)
    image = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    params = spec.identity(dtype=torch.float64).repeat(2, 1)
    if not at_identity:
        params = params + 0.2 * torch.randn_like(params)
    params.requires_grad_()
    assert _takes_fast_path(spec, "native")

    def warp(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return stnkit.warp(
            x, p, transform=transform, out_size=(3, 4), padding_mode=padding_mode, align_corners=align_corners
        )

    assert torch.autograd.gradgradcheck(warp, (image, params))


def second_derivatives(
    warp: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    theta: torch.Tensor,
    seed: int,
) -> tuple[torch.Tensor, ...]:
    """Gradients of <v, (d out / d image, d out / d theta)> w.r.t. image, theta and the upstream gradient."""
    generator = torch.Generator().manual_seed(seed)
    out = warp(image, theta)
    upstream = torch.randn(out.shape, generator=generator, dtype=out.dtype).requires_grad_()
    grad_image, grad_theta = torch.autograd.grad(out, (image, theta), upstream, create_graph=True)
    weights = [torch.randn(g.shape, generator=generator, dtype=g.dtype) for g in (grad_image, grad_theta)]
    penalty = (grad_image * weights[0]).sum() + (grad_theta * weights[1]).sum() + grad_theta.square().sum()
    return (
        grad_image,
        grad_theta,
        *torch.autograd.grad(penalty, (image, theta, upstream), allow_unused=True),
    )


# The kernel choice only matters for bilinear sampling; the other modes always take the torch-op path.
DOUBLE_BACKWARD_CASES = [
    (mode, padding_mode, align_corners, kernels)
    for mode, padding_mode, align_corners in CASES
    for kernels in ([True, False] if mode == "bilinear" else [False])
]


def spy_on_differentiable_gradients(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """Count the calls of the fast path's create_graph branch (one entry per call)."""
    calls: list[None] = []
    original = fast._differentiable_gradients

    def spy(*args: object, **kwargs: object) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        calls.append(None)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fast, "_differentiable_gradients", spy)
    return calls


def _use_kernel_or_torch_ops(kernels: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Route the fast path through the compiled kernel (skip where there is none) or torch ops."""
    if kernels and not fast.kernel.kernel_available():
        pytest.skip("the compiled kernel is not available here: the kernel cases would run torch ops")
    if not kernels:
        monkeypatch.setattr(fast.kernel, "kernel_available", lambda: False)


@pytest.mark.parametrize(("mode", "padding_mode", "align_corners", "kernels"), DOUBLE_BACKWARD_CASES)
@pytest.mark.parametrize("at_identity", [False, True])
def test_double_backward_is_torchs_own(
    mode: str,
    padding_mode: str,
    align_corners: bool,
    kernels: bool,
    at_identity: bool,
    monkeypatch: pytest.MonkeyPatch,
    assert_fast_path_ran: Callable[..., None],
) -> None:
    # With create_graph=True the fast path's backward differentiates F.affine_grid + F.grid_sample
    # itself (fast._differentiable_gradients), so its first and second derivatives are torch's by
    # construction, the same bits. What this can catch is the routing: which node and implementation
    # ran the forward, that the backward took that branch, and what it handed on (sizes, options, the
    # upstream gradient). Independent values: the reference sampler below, and gradgradcheck above.
    _use_kernel_or_torch_ops(kernels, monkeypatch)
    calls = spy_on_differentiable_gradients(monkeypatch)
    image = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    theta = torch.eye(2, 3, dtype=torch.float64).repeat(2, 1, 1)
    if not at_identity:
        theta = theta + 0.3 * torch.randn_like(theta)
    theta.requires_grad_()
    kwargs = {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}

    def ours(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = stnkit.warp(x, t, transform="affine", **kwargs)  # type: ignore[arg-type]
        assert_fast_path_ran(out, fused=kernels)
        return out

    def torchs(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(t, list(x.shape), align_corners=align_corners)
        return F.grid_sample(x, grid, **kwargs)  # type: ignore[arg-type]

    got = second_derivatives(ours, image, theta, 1)
    assert len(calls) == 1  # the create_graph branch, not the kernel's (or torch-op) backward
    for mine, expected in zip(got, second_derivatives(torchs, image, theta, 1), strict=True):
        if expected is None:
            assert mine is None or not bool(mine.any())
            continue
        assert mine is not None and torch.equal(mine, expected)


@pytest.mark.parametrize(("mode", "padding_mode", "align_corners", "kernels"), DOUBLE_BACKWARD_CASES)
def test_double_backward_values_equal_the_reference_samplers(
    mode: str,
    padding_mode: str,
    align_corners: bool,
    kernels: bool,
    monkeypatch: pytest.MonkeyPatch,
    assert_fast_path_ran: Callable[..., None],
) -> None:
    # The fast path's second derivatives against an implementation that shares no code with torch's grid
    # sampler: autograd through stnkit's reference sampler (from scratch in plain tensor ops). Random
    # points, off the kinks, where both are exact; on a kink (the identity) the side each takes depends
    # on its grid's last bit, so that case is held to torch's own above.
    _use_kernel_or_torch_ops(kernels, monkeypatch)
    generator = torch.Generator().manual_seed(2)
    image = torch.randn(2, 2, 6, 7, dtype=torch.float64, generator=generator).requires_grad_()
    noise = 0.3 * torch.randn(2, 2, 3, dtype=torch.float64, generator=generator)
    theta = (torch.eye(2, 3, dtype=torch.float64) + noise).requires_grad_()
    kwargs = {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}

    def ours(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = stnkit.warp(x, t, transform="affine", **kwargs)  # type: ignore[arg-type]
        assert_fast_path_ran(out, fused=kernels)
        return out

    def reference(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return stnkit.warp(x, t, transform="affine", backend="reference", **kwargs)  # type: ignore[arg-type]

    got = second_derivatives(ours, image, theta, 3)
    expected = second_derivatives(reference, image, theta, 3)
    assert any(e is not None and bool(e.any()) for e in expected[2:])  # there are second derivatives
    for mine, theirs in zip(got, expected, strict=True):
        if mine is None or theirs is None:  # no path (torch's nearest mode) or an all-zero one
            assert all(g is None or not bool(g.any()) for g in (mine, theirs))
            continue
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-9)


# ---- Memory ---------------------------------------------------------------------------------------


def test_fast_path_keeps_nothing_the_size_of_an_output() -> None:
    # Warps to ten sizes near 1000 x 1000 used to leave four H*W coordinate arrays per size in a cache
    # (308 MB in float64 after ten sizes). Nothing of that size may outlive a warp now. Tensors that
    # were alive before (other tests' data) do not count.
    import gc

    def big_tensors() -> dict[int, torch.Tensor]:
        gc.collect()
        return {
            id(obj): obj
            for obj in gc.get_objects()
            if issubclass(type(obj), torch.Tensor) and obj.numel() >= 995 * 995
        }

    before = set(big_tensors())
    image = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    theta = (
        torch.eye(2, 3, dtype=torch.float64) + 0.1 * torch.randn(1, 2, 3, dtype=torch.float64)
    ).requires_grad_()
    for side in range(995, 1005):
        stnkit.warp(image, theta, out_size=(side, side + 1)).sum().backward()
    new = [tensor for key, tensor in big_tensors().items() if key not in before]
    assert sum(t.numel() * t.element_size() for t in new) == 0


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_inference_without_a_graph_gives_the_same_bits(padding_mode: str) -> None:
    # Without gradients the kernel is called without an autograd node; same values, no grad_fn.
    image = torch.rand(3, 2, 9, 8)
    theta = torch.eye(2, 3) + 0.2 * torch.randn(3, 2, 3)
    with_graph = stnkit.warp(image, theta.clone().requires_grad_(), padding_mode=padding_mode)
    with torch.no_grad():
        without = stnkit.warp(image, theta, padding_mode=padding_mode)
    plain = stnkit.warp(image, theta, padding_mode=padding_mode)  # nothing requires grad
    assert with_graph.grad_fn is not None and without.grad_fn is None and plain.grad_fn is None
    assert torch.equal(with_graph.detach(), without) and torch.equal(without, plain)
