"""Shared checks for the geometry tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


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
