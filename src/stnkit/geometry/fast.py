"""Fast path for 2-D affine warps: one autograd node from ``theta`` to the output.

Built from the same pieces as the plain path (broadcast grid, torch's grid sampler), it differs in how
the gradient reaches ``theta``. Autograd through the broadcast grid would run six full-size
multiply-reductions; here the grid's gradient is reduced along rows and columns once and contracted
with the 1-D pixel coordinates:

    d theta[n, c, 0] = sum_w x_w sum_h g[n, h, w, c]
    d theta[n, c, 1] = sum_h y_h sum_w g[n, h, w, c]
    d theta[n, c, 2] = sum_h sum_w g[n, h, w, c]

It supports first derivatives only (as does torch's own grid sampler); for double backward use
``backend="reference"``. :func:`stnkit.warp` takes this path automatically where it applies, and the
tests hold it to the plain path and to the reference sampler.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from stnkit.geometry.grids import affine_grid_2d, normalized_coordinates

__all__ = ["affine_grid_2d", "affine_warp_2d"]

_MODE_CODES = {"bilinear": 0, "nearest": 1, "bicubic": 2}
_PADDING_CODES = {"zeros": 0, "border": 1, "reflection": 2}


class _AffineWarp2d(torch.autograd.Function):
    """output = grid_sample(input, affine_grid(theta)) with a closed-form gradient for theta."""

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        theta: Tensor,
        height: int,
        width: int,
        mode: str,
        padding_mode: str,
        align_corners: bool,
    ) -> Tensor:
        grid = affine_grid_2d(theta, height, width, align_corners)
        mode_code, padding_code = _MODE_CODES[mode], _PADDING_CODES[padding_mode]
        ctx.save_for_backward(input, grid)
        ctx.codes = (mode_code, padding_code, align_corners)
        return torch.ops.aten.grid_sampler_2d(input, grid, mode_code, padding_code, align_corners)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        input, grid = ctx.saved_tensors
        mode_code, padding_code, align_corners = ctx.codes
        need_input, need_theta = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_input, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_output.contiguous(),
            input,
            grid,
            mode_code,
            padding_code,
            align_corners,
            [need_input, need_theta],
        )
        grad_theta = _theta_gradient(grad_grid, align_corners) if need_theta else None
        return (grad_input if need_input else None, grad_theta, None, None, None, None, None)


def _theta_gradient(grad_grid: Tensor, align_corners: bool) -> Tensor:
    """d loss / d theta (N, 2, 3) from d loss / d grid (N, H, W, 2), by the sums in the module docstring."""
    height, width = grad_grid.shape[1:3]
    xs = normalized_coordinates(
        width, align_corners=align_corners, dtype=grad_grid.dtype, device=grad_grid.device
    )
    ys = normalized_coordinates(
        height, align_corners=align_corners, dtype=grad_grid.dtype, device=grad_grid.device
    )
    per_column = grad_grid.sum(dim=1)  # (N, W, 2)
    per_row = grad_grid.sum(dim=2)  # (N, H, 2)
    return torch.stack(
        (
            torch.einsum("nwc,w->nc", per_column, xs),
            torch.einsum("nhc,h->nc", per_row, ys),
            per_row.sum(dim=1),
        ),
        dim=-1,
    )


def affine_warp_2d(
    input: Tensor,
    theta: Tensor,
    height: int,
    width: int,
    mode: str,
    padding_mode: str,
    align_corners: bool,
) -> Tensor:
    """Warp ``input`` (N, C, H_in, W_in) with ``theta`` (N, 2, 3) to (N, C, height, width).

    Arguments are assumed valid (:func:`stnkit.warp` checks them).
    """
    output = _AffineWarp2d.apply(input, theta, height, width, mode, padding_mode, align_corners)
    assert isinstance(output, Tensor)
    return output
