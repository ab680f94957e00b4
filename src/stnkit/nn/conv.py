"""A Conv2d for the layer right behind a spatial transformer: fast input gradients for few channels.

Behind a transformer the first convolution must return a gradient for its input (it flows on to the
sampling parameters), which a plain CNN never asks for. On the CPU, torch's oneDNN backward for that
gradient is slow when the input has one or a few channels: for a 5x5 conv 1 -> 32 at 28x28, batch
256, it took 20 ms of a 23 ms backward (2 threads, torch 2.13; the weight gradient alone: 2.3 ms).
The same gradient is, per input channel c, a batched matrix product (2.2 ms) and 25 shifted
additions (col2im by hand, 0.8-1.4 ms):

    cols[n] = weight[:, c].reshape(O, K * K).T @ grad_output[n].reshape(O, L)     (K * K, L)
    grad_input[n, c, i + ki, j + kj] += cols[n, (ki, kj), (i, j)]

:class:`InputGradConv2d` is an ``nn.Conv2d`` (same parameters and state dict) that takes this route
when it applies (stride 1, dilation 1, one group, zeros padding, at most ``MAX_CHANNELS`` input
channels, a CPU input that needs its gradient, not under tracing) and is a plain ``nn.Conv2d``
otherwise. The forward pass and the weight and bias gradients are torch's in every case.

Double backward (gradient penalties, meta-learning: ``create_graph=True``) is supported: the backward
pass then computes all gradients with torch's differentiable ``convolution_backward``, so second
derivatives are exactly ``nn.Conv2d``'s; the fast route serves the first-order case.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stnkit.geometry.checks import is_tracing

__all__ = ["MAX_CHANNELS", "InputGradConv2d", "conv2d_input_gradient"]

# Up to this many input channels the matrix-product route beat oneDNN (2 threads, batch 256, 5x5,
# 32 filters: 0.24x its time for 1 channel, 0.66x for 3, 0.83x for 4, but 1.65x for 8).
MAX_CHANNELS = 4


def conv2d_input_gradient(
    grad_output: Tensor, weight: Tensor, input_size: tuple[int, int], padding: tuple[int, int]
) -> Tensor:
    """d loss / d input of a stride-1, undilated, single-group conv2d (the adjoint of the convolution).

    Args:
        grad_output: Tensor[N, O, H_out, W_out].
        weight: Tensor[O, C, KH, KW].
        input_size: the input's (H, W).
        padding: the convolution's zero padding (PH, PW).

    Returns:
        Tensor[N, C, H, W].
    """
    batch, out_channels, out_h, out_w = grad_output.shape
    _, in_channels, kernel_h, kernel_w = weight.shape
    pad_h, pad_w = padding
    flat_grad = grad_output.reshape(batch, out_channels, out_h * out_w)
    padded = grad_output.new_zeros(batch, in_channels, input_size[0] + 2 * pad_h, input_size[1] + 2 * pad_w)
    for c in range(in_channels):
        # (KH*KW, O) @ (N, O, L) -> (N, KH*KW, L), one input channel at a time: MKL's batched product
        # slowed down 2-3x for more than ~40 rows. bmm over the expanded (stride-0) weight, because
        # torch.matmul would fold the batch into one product and copy grad_output twice to do it.
        weight_t = weight[:, c].reshape(out_channels, kernel_h * kernel_w).t().contiguous()
        columns = torch.bmm(weight_t.expand(batch, *weight_t.shape), flat_grad)
        columns = columns.view(batch, kernel_h, kernel_w, out_h, out_w)
        for ki in range(kernel_h):
            for kj in range(kernel_w):
                padded[:, c, ki : ki + out_h, kj : kj + out_w] += columns[:, ki, kj]
    return padded[:, :, pad_h : pad_h + input_size[0], pad_w : pad_w + input_size[1]]


class _ConvWithInputGradient(torch.autograd.Function):
    """conv2d whose input gradient comes from :func:`conv2d_input_gradient`."""

    @staticmethod
    def forward(
        ctx: Any, input: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int]
    ) -> Tensor:
        ctx.save_for_backward(input, weight)
        ctx.padding = padding
        ctx.bias_size = None if bias is None else [bias.shape[0]]
        return F.conv2d(input, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        input, weight = ctx.saved_tensors
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        need_bias = need_bias and ctx.bias_size is not None
        if torch.is_grad_enabled():
            # create_graph=True: torch's differentiable backward, so these gradients have gradients too.
            return (*_torch_conv_backward(ctx, grad_output, [need_input, need_weight, need_bias]), None)
        grad_output = grad_output.contiguous()
        _, grad_weight, grad_bias = _torch_conv_backward(ctx, grad_output, [False, need_weight, need_bias])
        grad_input = None
        if need_input:
            grad_input = conv2d_input_gradient(grad_output, weight, input.shape[2:], ctx.padding)
        return grad_input, grad_weight, grad_bias, None


def _torch_conv_backward(
    ctx: Any, grad_output: Tensor, output_mask: list[bool]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """(grad_input, grad_weight, grad_bias) of the saved convolution by torch, where ``output_mask`` asks."""
    if not any(output_mask):
        return None, None, None
    input, weight = ctx.saved_tensors
    grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
        grad_output,
        input,
        weight,
        ctx.bias_size,
        [1, 1],  # stride
        list(ctx.padding),
        [1, 1],  # dilation
        False,  # transposed
        [0, 0],  # output padding
        1,  # groups
        output_mask,
    )
    need_input, need_weight, need_bias = output_mask
    return (
        grad_input if need_input else None,
        grad_weight if need_weight else None,
        grad_bias if need_bias else None,
    )


class InputGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a faster input gradient for inputs of few channels (see the module docstring).

    Use it as the first convolution behind a spatial transformer. Same arguments, parameters and
    state dict as ``nn.Conv2d``; results equal to rounding.

    Example:
        >>> conv = InputGradConv2d(1, 8, 5)
        >>> x = torch.rand(2, 1, 12, 12, requires_grad=True)
        >>> conv(x).sum().backward()
        >>> x.grad.shape
        torch.Size([2, 1, 12, 12])
    """

    def _takes_fast_route(self, input: Tensor) -> bool:
        return (
            input.requires_grad
            and input.device.type == "cpu"
            and input.dim() == 4
            and self.in_channels <= MAX_CHANNELS
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and torch.is_grad_enabled()
            and not is_tracing()
            and not torch._C._are_functorch_transforms_active()
        )

    def forward(self, input: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, O, H_out, W_out), as ``nn.Conv2d``."""
        if not self._takes_fast_route(input):
            return super().forward(input)
        padding = (int(self.padding[0]), int(self.padding[1]))
        output = _ConvWithInputGradient.apply(input, self.weight, self.bias, padding)
        assert isinstance(output, Tensor)
        return output
