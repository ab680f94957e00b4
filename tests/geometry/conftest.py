"""Shared checks for the geometry tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from stnkit.geometry import fast


def _assert_same_outputs_and_gradients(
    ours: torch.Tensor, theirs: torch.Tensor, inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """float64 outputs of two implementations, and their gradients w.r.t. (image, coordinates), agree.

    Values and image gradients to 1e-12; the coordinate-side gradient (grid or theta) sums many terms,
    so 1e-9 relative and absolute.
    """
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    upstream = torch.randn_like(ours)
    grads_ours = torch.autograd.grad(ours, inputs, upstream)
    grads_theirs = torch.autograd.grad(theirs, inputs, upstream)
    torch.testing.assert_close(grads_ours[0], grads_theirs[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(grads_ours[1], grads_theirs[1], rtol=1e-9, atol=1e-9)


@pytest.fixture
def assert_same_outputs_and_gradients() -> Callable[..., None]:
    return _assert_same_outputs_and_gradients


def _assert_fast_path_ran(output: torch.Tensor, *, fused: bool) -> None:
    """``output`` came from the fast path's autograd node, through the C++ kernel (fused) or torch ops.

    A test that holds the fast path to torch would otherwise pass on the wrong implementation where the
    kernel is silently unavailable or the plain grid + grid_sample path is taken.
    """
    node = output.grad_fn
    assert node is not None and node._forward_cls is fast._AffineWarp2d, type(node).__name__
    assert node.fused is fused, f"expected the {'kernel' if fused else 'torch-op path'} to run"


@pytest.fixture
def assert_fast_path_ran() -> Callable[..., None]:
    return _assert_fast_path_ran
