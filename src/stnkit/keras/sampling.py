"""Differentiable bilinear / nearest sampling and ``warp``, written with ``keras.ops``.

The sampler follows torch's ``grid_sample`` (stnkit's convention, ``docs/convention.md``) formula for
formula, so the torch side's tests carry over:

* a normalised coordinate ``x`` becomes the pixel coordinate ``((x + 1) W - 1) / 2`` (``align_corners``
  False) or ``(x + 1) / 2 (W - 1)`` (True); pixel centres sit at integers;
* ``border`` clamps pixel coordinates to [0, W - 1], ``reflection`` mirrors them at the corner pixels'
  centres (True) or outer edges (False) and then clamps; either has zero derivative at and beyond the
  clamp limits, as in torch; ``zeros`` leaves them alone and taps outside the image read 0;
* bilinear weights are ``(1 - f, f)`` on the taps ``floor(x)`` and ``floor(x) + 1`` with ``f = x - floor(x)``
  and the floor held constant. On a whole pixel the derivative is then torch's one-sided forward
  difference ``I[x + 1] - I[x]``, not the zero that ``max(0, 1 - |d|)`` gives there (which would leave
  a transformer at the identity without a gradient);
* nearest rounds half to even (torch's ``nearbyint``) and passes zero gradient to the grid.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from stnkit.keras.grids import (
    _normalized_coordinates_unchecked,
    add,
    as_param_vectors,
    as_tensor,
    check_flag,
    check_size,
    displacement,
)

__all__ = ["DATA_FORMATS", "MODES", "PADDING_MODES", "sample", "warp"]

MODES = ("bilinear", "nearest")
PADDING_MODES = ("zeros", "border", "reflection")
DATA_FORMATS = ("channels_last", "channels_first")

Tensor = Any  # a backend tensor (tf.Tensor, jax.Array, torch.Tensor) or a KerasTensor


# --- argument checks (once, at the public functions) -----------------------------------------------------


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``; a one-line ``ValueError`` naming them otherwise."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    assert isinstance(value, str)
    return value


def check_data_format(data_format: str | None) -> str:
    """``data_format``, or Keras' ``image_data_format()`` for ``None``."""
    if data_format is None:
        return keras.config.image_data_format()
    return check_choice(data_format, "data_format", DATA_FORMATS)


def _is_floating(dtype: object) -> bool:
    return keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16", "float32", "float64")


def channels_last_images(images: Tensor, data_format: str) -> Tensor:
    """Check a batch of images and return it as (N, H, W, C) with static H, W, C."""
    images = as_tensor(images)
    layout = "(N, H, W, C)" if data_format == "channels_last" else "(N, C, H, W)"
    shape = tuple(images.shape)
    if len(shape) != 4:
        raise ValueError(f"images must be {layout} ({data_format}), got shape {list(shape)}")
    if not _is_floating(images.dtype):
        raise TypeError(f"images must be floating point, got dtype {images.dtype}")
    if data_format == "channels_first":
        images = ops.transpose(images, (0, 2, 3, 1))
    if any(s is None or s <= 0 for s in images.shape[1:]):
        raise ValueError(f"images need known, positive sizes in {layout}, got shape {list(shape)}")
    return images


def from_channels_last(images: Tensor, data_format: str) -> Tensor:
    """(N, H, W, C) -> ``data_format``."""
    return images if data_format == "channels_last" else ops.transpose(images, (0, 3, 1, 2))


def _check_same_batch(images: Tensor, other: Tensor, name: str) -> None:
    a, b = images.shape[0], other.shape[0]
    if a is not None and b is not None and a != b:
        raise ValueError(f"images and {name} need the same batch size, got {a} and {b}")


# --- pixel coordinates and padding -----------------------------------------------------------------------


def unnormalize(coord: Tensor, size: int, align_corners: bool) -> Tensor:
    """Normalised coordinate -> pixel coordinate (pixel centres at integers), torch's formula."""
    if align_corners:
        return (coord + 1.0) / 2.0 * (size - 1)
    return ((coord + 1.0) * size - 1.0) / 2.0


def _clip(coord: Tensor, size: int) -> Tensor:
    """Clamp to [0, size - 1] with zero derivative at and beyond the limits (torch's clip_coordinates)."""
    clipped = ops.stop_gradient(ops.clip(coord, 0.0, size - 1.0))
    return ops.where((coord > 0.0) & (coord < size - 1.0), coord, clipped)


def _reflect(coord: Tensor, twice_low: int, twice_high: int) -> Tensor:
    """Mirror ``coord`` into [twice_low / 2, twice_high / 2] at both ends, repeatedly."""
    if twice_low == twice_high:
        return ops.zeros_like(coord)
    low = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    distance = ops.abs(coord - low)
    flips = ops.stop_gradient(ops.floor(distance / span))
    extra = distance - flips * span  # fmod(distance, span), derivative 1
    even = ops.equal(ops.mod(flips, 2.0), 0.0)
    return ops.where(even, extra + low, span - extra + low)


def _pad(coord: Tensor, size: int, padding_mode: str, align_corners: bool) -> Tensor:
    """Bring a pixel coordinate inside the image as ``border`` / ``reflection`` do; ``zeros``: as is."""
    if padding_mode == "border":
        return _clip(coord, size)
    if padding_mode == "reflection":
        if align_corners:
            coord = _reflect(coord, 0, 2 * (size - 1))
        else:
            coord = _reflect(coord, -1, 2 * size - 1)
        return _clip(coord, size)
    return coord


# --- the sampler -----------------------------------------------------------------------------------------


def _gather(
    flat_images: Tensor, batch_start: Tensor, x: Tensor, y: Tensor, height: int, width: int
) -> Tensor:
    """Pixels at integer-valued float positions (x, y), each (N, Ho, Wo), and whether they are inside.

    Returns values (N, Ho, Wo, C), read at positions clamped into the image, and the mask (N, Ho, Wo)
    of taps that really are inside it (the caller zeroes the others).
    """
    inside = (x >= 0.0) & (x <= width - 1.0) & (y >= 0.0) & (y <= height - 1.0)
    column = ops.cast(ops.clip(x, 0.0, width - 1.0), "int32")
    row = ops.cast(ops.clip(y, 0.0, height - 1.0), "int32")
    index = add(add(batch_start, row * width), column)  # (N, Ho, Wo) into the (N * H * W, C) pixels
    out_height, out_width = x.shape[1], x.shape[2]
    values = ops.take(flat_images, ops.reshape(index, (-1,)), axis=0)
    values = ops.reshape(values, (-1, out_height, out_width, flat_images.shape[-1]))
    return values, ops.cast(inside, flat_images.dtype)


def sample_pixels(
    images: Tensor, x: Tensor, y: Tensor, mode: str, padding_mode: str, align_corners: bool
) -> Tensor:
    """Sample channels-last ``images`` (N, H, W, C) at pixel coordinates x, y (N, Ho, Wo), unchecked.

    Returns (N, Ho, Wo, C).
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    x = _pad(x, width, padding_mode, align_corners)
    y = _pad(y, height, padding_mode, align_corners)
    flat_images = ops.reshape(images, (-1, channels))  # (N * H * W, C)
    # arange(N) without asking for N, which is unknown in symbolic (functional) and traced calls.
    batch_index = ops.cumsum(ops.ones_like(x[:, 0, 0], dtype="int32")) - 1
    batch_start = ops.reshape(batch_index * (height * width), (-1, 1, 1))
    if mode == "nearest":
        # Weight 1 with a zero derivative (not a constant): the grid is still connected and gets zero
        # gradients, as in torch. ops.round rounds half to even, as torch's nearbyint does.
        column, row = ops.stop_gradient(ops.round(x)), ops.stop_gradient(ops.round(y))
        values, inside = _gather(flat_images, batch_start, column, row, height, width)
        return values * ops.expand_dims(inside + 0.0 * (x + y), -1)
    x0, y0 = ops.stop_gradient(ops.floor(x)), ops.stop_gradient(ops.floor(y))
    fx, fy = x - x0, y - y0  # the floor is a constant: the derivative is the difference of the taps
    output = None
    for row, weight_y in ((y0, 1.0 - fy), (y0 + 1.0, fy)):
        for column, weight_x in ((x0, 1.0 - fx), (x0 + 1.0, fx)):
            values, inside = _gather(flat_images, batch_start, column, row, height, width)
            term = values * ops.expand_dims(weight_y * weight_x * inside, -1)
            output = term if output is None else output + term
    return output


def sample(
    images: Tensor,
    grid: Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
    data_format: str | None = None,
) -> Tensor:
    """Sample ``images`` at the normalised positions of ``grid``; the values of torch's ``grid_sample``.

    Args:
        images: (N, H, W, C) for ``channels_last`` (Keras' default) or (N, C, H, W), floating point.
        grid: (N, Ho, Wo, 2), last dimension (x, y) normalised to [-1, 1] (stnkit's convention).
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: torch's meaning.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` is Keras' image_data_format.

    Returns:
        (N, Ho, Wo, C) or (N, C, Ho, Wo).

    Example:
        >>> import numpy as np
        >>> image = np.arange(4.0, dtype="float32").reshape(1, 2, 2, 1)
        >>> centre = np.zeros((1, 1, 1, 2), dtype="float32")
        >>> float(sample(image, centre, align_corners=True)[0, 0, 0, 0])
        1.5
    """
    data_format = check_data_format(data_format)
    check_choice(mode, "mode", MODES)
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    align_corners = check_flag(align_corners, "align_corners")
    images = channels_last_images(images, data_format)
    grid = ops.cast(as_tensor(grid), images.dtype)
    if len(grid.shape) != 4 or grid.shape[-1] != 2 or None in grid.shape[1:]:
        raise ValueError(f"grid must have shape (N, Ho, Wo, 2), got {list(grid.shape)}")
    _check_same_batch(images, grid, "grid")
    x = unnormalize(grid[..., 0], images.shape[2], align_corners)
    y = unnormalize(grid[..., 1], images.shape[1], align_corners)
    output = sample_pixels(images, x, y, mode, padding_mode, align_corners)
    return from_channels_last(output, data_format)


def _output_pixel_positions(out_size: int, in_size: int, align_corners: bool) -> tuple[np.ndarray, float]:
    """Where the output's pixel centres sit in the input's pixel space at the identity, and the scale.

    Returns (positions float64 ndarray[out_size], pixels per normalised unit). For equal sizes the
    positions are the integers 0 .. size - 1 exactly.
    """
    if out_size == in_size:
        positions = np.arange(in_size, dtype=np.float64)
    else:
        positions = unnormalize(
            _normalized_coordinates_unchecked(out_size, align_corners), in_size, align_corners
        )
    scale = (in_size - 1) / 2.0 if align_corners else in_size / 2.0
    return positions, scale


def warp(
    images: Tensor,
    params: Tensor,
    *,
    transform: str = "affine",
    output_size: int | tuple[int, int] | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
    data_format: str | None = None,
) -> Tensor:
    """Warp ``images`` with a parameterised transform: the values of :func:`stnkit.warp`.

    The output's pixel centres plus the transform's displacement (see :mod:`stnkit.keras.grids`) are
    sampled directly in the input's pixel space, so identity parameters read whole pixels exactly: the
    output is the input, and the gradient is torch's forward difference.

    Args:
        images: (N, H, W, C) for ``channels_last`` (Keras' default) or (N, C, H, W), floating point.
        params: (N, num_params) of the transform, or its matrix form: affine (N, 2, 3), projective
            (N, 3, 3), tps (N, K, 2). Cast to the images' dtype.
        transform: ``"translation"``, ``"attention"``, ``"similarity"``, ``"affine"``, ``"projective"``
            or ``"tps"`` (K = num_params / 2 control points, a perfect square).
        output_size: (H, W) of the output, or an int for a square; ``None`` keeps the input's.
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: torch's meaning.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` is Keras' image_data_format.

    Returns:
        (N, Ho, Wo, C) or (N, C, Ho, Wo).

    Example:
        >>> import numpy as np
        >>> images = np.random.rand(2, 28, 28, 1).astype("float32")
        >>> zoom_in = np.array([[0.5, 0.0, 0.0]] * 2)  # attention: (s, tx, ty)
        >>> tuple(warp(images, zoom_in, transform="attention", output_size=14).shape)
        (2, 14, 14, 1)
    """
    data_format = check_data_format(data_format)
    check_choice(mode, "mode", MODES)
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    align_corners = check_flag(align_corners, "align_corners")
    images = channels_last_images(images, data_format)
    in_height, in_width = images.shape[1], images.shape[2]
    out_height, out_width = (in_height, in_width) if output_size is None else check_size(output_size)
    vectors, num_points = as_param_vectors(params, transform, images.dtype)
    _check_same_batch(images, vectors, "params")
    dx, dy = displacement(vectors, transform, num_points, out_height, out_width, align_corners)
    base_x, scale_x = _output_pixel_positions(out_width, in_width, align_corners)
    base_y, scale_y = _output_pixel_positions(out_height, in_height, align_corners)
    x = add(dx * scale_x, ops.convert_to_tensor(base_x.reshape(1, 1, -1), images.dtype))  # (N, Ho, Wo)
    y = add(dy * scale_y, ops.convert_to_tensor(base_y.reshape(1, -1, 1), images.dtype))
    output = sample_pixels(images, x, y, mode, padding_mode, align_corners)
    return from_channels_last(output, data_format)
