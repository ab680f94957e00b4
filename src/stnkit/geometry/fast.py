"""Fast path for 2-D affine warps: one autograd node from ``theta`` to the output.

Two implementations sit behind it, chosen per call:

* the fused C++ kernel (:mod:`stnkit.geometry.kernel`) for bilinear sampling of float32/float64 CPU
  tensors: it computes each sampling point from ``theta`` on the fly, so no grid is ever stored, and
  accumulates ``d loss / d theta`` directly;
* torch ops everywhere else (other modes, CUDA, no compiler): a broadcast grid, torch's grid sampler,
  and the grid's gradient reduced along rows and columns once and contracted with the 1-D pixel
  coordinates, instead of autograd through the grid's six full-size multiply-reductions:

    d theta[n, c, 0] = sum_w x_w sum_h g[n, h, w, c]
    d theta[n, c, 1] = sum_h y_h sum_w g[n, h, w, c]
    d theta[n, c, 2] = sum_h sum_w g[n, h, w, c]

Both compute first derivatives themselves. Where the gradient must itself be differentiable
(``create_graph=True``: gradient penalties, meta-learning, double backward), the backward instead
differentiates the plain path (``F.affine_grid`` + ``F.grid_sample``), so second derivatives are
torch's own, values included. At points that sit exactly on a pixel (the identity's), where bilinear
sampling has only one-sided derivatives, these first derivatives may then take the other side than
the kernel's (which sees exact points: docs/convention.md). :func:`stnkit.warp` takes this path automatically where it applies, and the
tests hold both implementations to the plain path, to torch and to the reference sampler.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from stnkit.geometry import kernel
from stnkit.geometry.grids import _normalized_coordinates_unchecked, affine_grid_2d

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
        ctx.options = (height, width, mode, padding_mode, align_corners)
        ctx.fused = _fused_kernel_applies(input, theta, mode)
        padding_code = _PADDING_CODES[padding_mode]
        if ctx.fused:
            # The tensors as given (not contiguous copies): a differentiable backward must reach them.
            ctx.save_for_backward(input, theta)
            return kernel.affine_bilinear_forward(
                input.contiguous(), theta.contiguous(), height, width, padding_code, align_corners
            )
        grid = affine_grid_2d(theta, height, width, align_corners)
        ctx.save_for_backward(input, theta, grid)
        return torch.ops.aten.grid_sampler_2d(input, grid, _MODE_CODES[mode], padding_code, align_corners)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        input, theta = ctx.saved_tensors[:2]
        height, width, mode, padding_mode, align_corners = ctx.options
        need_input, need_theta = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable too
            grads = _differentiable_gradients(
                grad_output,
                input,
                theta,
                (height, width, mode, padding_mode, align_corners),
                need_input,
                need_theta,
            )
            return (*grads, None, None, None, None, None)
        padding_code = _PADDING_CODES[padding_mode]
        if ctx.fused:
            grad_input, grad_theta = kernel.affine_bilinear_backward(
                grad_output.contiguous(),
                input.contiguous(),
                theta.contiguous(),
                padding_code,
                align_corners,
                need_input,
                need_theta,
            )
            return (grad_input, grad_theta, None, None, None, None, None)
        grad_input, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_output.contiguous(),
            input,
            ctx.saved_tensors[2],
            _MODE_CODES[mode],
            padding_code,
            align_corners,
            [need_input, need_theta],
        )
        grad_theta = _theta_gradient(grad_grid, align_corners) if need_theta else None
        return (grad_input if need_input else None, grad_theta, None, None, None, None, None)


def _differentiable_gradients(
    grad_output: Tensor,
    input: Tensor,
    theta: Tensor,
    options: tuple[int, int, str, str, bool],
    need_input: bool,
    need_theta: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """(d input, d theta) with a graph: autograd through the plain path, recomputed here.

    The kernel's gradients are not themselves differentiable; torch's grid sampler has a double
    backward, so differentiating ``F.grid_sample(input, F.affine_grid(theta))`` gives gradients whose
    own gradients are torch's, values included. (torch's own grid, not :func:`affine_grid_2d`: the two
    differ in the last bit here and there, which decides the side of a kink where a point sits exactly on
    a pixel, the identity's points for one.)
    """
    height, width, mode, padding_mode, align_corners = options
    wanted = [t for t, need in ((input, need_input), (theta, need_theta)) if need]
    size = [input.shape[0], input.shape[1], height, width]
    grid = F.affine_grid(theta, size, align_corners=align_corners)
    output = F.grid_sample(input, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    grads = iter(torch.autograd.grad(output, wanted, grad_output, create_graph=True))
    return (next(grads) if need_input else None, next(grads) if need_theta else None)


def _fused_kernel_applies(input: Tensor, theta: Tensor, mode: str) -> bool:
    """The C++ kernel covers bilinear sampling of float32/float64 CPU tensors (where it could be built)."""
    in_h, in_w = input.shape[2:]
    return (
        mode == "bilinear"
        and input.device.type == "cpu"
        and input.dtype in (torch.float32, torch.float64)
        and theta.dtype == input.dtype
        # int32 tap offsets: rows and columns of taps are clamped to [-2, size + 1].
        and (in_h + 4) * (in_w + 4) < 2**31
        and kernel.kernel_available()
    )


def _pixel_centres(
    height: int, width: int, align_corners: bool, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Normalised output coordinates (xs (W), ys (H)), the same numbers the grid path uses."""
    xs = _normalized_coordinates_unchecked(width, align_corners, dtype, device)
    ys = _normalized_coordinates_unchecked(height, align_corners, dtype, device)
    return xs, ys


def _theta_gradient(grad_grid: Tensor, align_corners: bool) -> Tensor:
    """d loss / d theta (N, 2, 3) from d loss / d grid (N, H, W, 2), by the sums in the module docstring."""
    height, width = grad_grid.shape[1:3]
    xs, ys = _pixel_centres(height, width, align_corners, grad_grid.dtype, grad_grid.device)
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
    wants_graph = torch.is_grad_enabled() and (input.requires_grad or theta.requires_grad)
    if not wants_graph and _fused_kernel_applies(input, theta, mode):
        # Inference: the kernel alone, without an autograd node (its set-up is most of a small call).
        return kernel.affine_bilinear_forward(
            input.contiguous(), theta.contiguous(), height, width, _PADDING_CODES[padding_mode], align_corners
        )
    output = _AffineWarp2d.apply(input, theta, height, width, mode, padding_mode, align_corners)
    assert isinstance(output, Tensor)
    return output
