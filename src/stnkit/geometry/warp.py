"""``warp``: parameters -> sampling grid -> sampled output, in one call."""

from __future__ import annotations

import torch
from torch import Tensor

from stnkit.geometry.checks import (
    check_flag,
    check_floating,
    check_positive_int,
    check_same_batch,
    check_tensor,
    is_tracing,
    normalize_size,
)
from stnkit.geometry.fast import affine_warp_2d
from stnkit.geometry.sampling import check_sample_arguments, check_sample_options, sample_unchecked
from stnkit.geometry.transforms import Transform, _AffineFamily, get_transform

__all__ = ["identity_params", "output_size", "warp"]


def output_size(input: Tensor, out_size: int | tuple[int, ...] | None, spatial_dims: int) -> tuple[int, ...]:
    """Full output size ``(N, C, *spatial)`` for ``input`` and an ``out_size`` argument.

    Args:
        input: Tensor[N, C, *spatial_in].
        out_size: ``None`` (keep the input's spatial size), an int (square / cube), or a tuple
            (H, W) / (D, H, W).
        spatial_dims: 2 or 3.
    """
    if out_size is None:
        spatial = tuple(input.shape[2:])
    else:
        spatial = normalize_size(out_size, "out_size", spatial_dims)
    return (input.shape[0], input.shape[1], *spatial)


def warp(
    input: Tensor,
    params: Tensor,
    *,
    transform: str | Transform = "affine",
    out_size: int | tuple[int, ...] | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
    backend: str = "native",
) -> Tensor:
    """Warp ``input`` with a parameterised transform: params -> grid -> sample.

    Args:
        input: Tensor[N, C, H, W] (or Tensor[N, C, D, H, W] for ``affine3d``), floating point.
        params: Tensor[N, num_params] of the transform, or its matrix form: affine (N, 2, 3),
            projective (N, 3, 3), tps (N, K, 2), affine3d (N, 3, 4). Cast to ``input``'s dtype.
        transform: a name from :func:`stnkit.list_transforms` or a :class:`stnkit.Transform`.
        out_size: spatial size of the output; ``None`` keeps the input's. It may be smaller (the
            paper downsamples) or larger than the input.
        mode: ``"bilinear"``, ``"nearest"`` or ``"bicubic"`` (4-D only).
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: torch's meaning; see the convention in :mod:`stnkit.geometry.grids`.
        backend: ``"native"`` or ``"reference"``, as in :func:`stnkit.sample`.

    Returns:
        Tensor[N, C, *out_size], twice differentiable w.r.t. ``input`` and ``params`` (gradient
        penalties and meta-learning work as with ``F.affine_grid`` + ``F.grid_sample``).

    Example:
        >>> image = torch.rand(2, 1, 28, 28)
        >>> zoom_in = torch.tensor([[0.5, 0.0, 0.0]]).repeat(2, 1)  # attention: (s, tx, ty)
        >>> warp(image, zoom_in, transform="attention", out_size=(14, 14)).shape
        torch.Size([2, 1, 14, 14])
    """
    spec = get_transform(transform)
    align_corners = check_flag(align_corners, "align_corners")
    input = check_tensor(input, "input")
    check_floating(input, "input")
    if input.dim() != spec.spatial_dims + 2:
        layout = "(N, C, H, W)" if spec.spatial_dims == 2 else "(N, C, D, H, W)"
        raise ValueError(f"input for transform '{spec.name}' must be {layout}, got {list(input.shape)}")
    params = spec.coerce(params)
    check_same_batch(input, "input", params, "params")
    size = output_size(input, out_size, spec.spatial_dims)
    params = params.to(dtype=input.dtype, device=input.device)
    if isinstance(spec, _AffineFamily) and _takes_fast_path(spec, backend):
        check_sample_options(input, mode, padding_mode, backend)
        return affine_warp_2d(input, spec.theta(params), size[2], size[3], mode, padding_mode, align_corners)
    grid = spec._grid(params, size[2:], align_corners)
    check_sample_arguments(input, grid, mode, padding_mode, backend)
    return sample_unchecked(input, grid, mode, padding_mode, align_corners, backend)


def _takes_fast_path(spec: Transform, backend: str) -> bool:
    """2-D affine-family warps on the native backend use :mod:`stnkit.geometry.fast`.

    Not while tracing (torch.compile, ONNX export): those see the plain grid + grid_sample graph, which
    they fuse or export as standard operators; nor under torch.func transforms.
    """
    return (
        backend == "native"
        and isinstance(spec, _AffineFamily)
        and spec.spatial_dims == 2
        and not is_tracing()
        and not torch._C._are_functorch_transforms_active()  # vmap / jacrev need plain torch ops
    )


def identity_params(
    transform: str | Transform, batch_size: int, *, dtype: torch.dtype | None = None
) -> Tensor:
    """Identity parameters repeated for a batch: Tensor[batch_size, num_params] (``batch_size`` >= 0)."""
    spec = get_transform(transform)
    # An empty batch is a batch: 0 is allowed, as torch.Size allows it.
    if batch_size != 0 or isinstance(batch_size, bool):
        try:
            batch_size = check_positive_int(batch_size, "batch_size")
        except ValueError:
            raise ValueError(f"batch_size must be an int >= 0, got {batch_size!r}") from None
    if dtype is not None and not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    return spec.identity(dtype=dtype).expand(batch_size, -1).clone()
