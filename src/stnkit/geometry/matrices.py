"""Matrix helpers: homogeneous form, composition, inversion, pixel <-> normalised conversion.

Matrices come in two forms, told apart by their shape: affine ``(..., k, k + 1)`` (``(2, 3)`` in 2-D,
``(3, 4)`` in 3-D) and homogeneous ``(..., k + 1, k + 1)`` (``(3, 3)``, ``(4, 4)``). Every function here
returns the form it was given, so an affine ``theta`` stays ready for :func:`stnkit.affine_grid`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stnkit.geometry.checks import check_flag, check_floating, check_tensor, normalize_size

__all__ = [
    "compose",
    "from_homogeneous",
    "invert",
    "normalized_to_pixel",
    "pixel_to_normalized",
    "to_homogeneous",
]


def _matrix_kind(matrix: object, name: str) -> tuple[Tensor, int, bool]:
    """Return (matrix, spatial dims k, is_affine) after checking its shape and dtype."""
    matrix = check_tensor(matrix, name)
    check_floating(matrix, name)
    if matrix.dim() >= 2:
        rows, cols = matrix.shape[-2:]
        if rows + 1 == cols and rows in (2, 3):
            return matrix, rows, True
        if rows == cols and rows in (3, 4):
            return matrix, rows - 1, False
    raise ValueError(
        f"{name} must be an affine (..., 2, 3) / (..., 3, 4) or homogeneous (..., 3, 3) / (..., 4, 4) "
        f"matrix, got {list(matrix.shape)}"
    )


def to_homogeneous(matrix: Tensor) -> Tensor:
    """Append the row (0, ..., 0, 1) to an affine matrix; homogeneous ones pass through.

    Args:
        matrix: Tensor[..., k, k + 1] or Tensor[..., k + 1, k + 1].

    Returns:
        Tensor[..., k + 1, k + 1].

    Example:
        >>> to_homogeneous(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]]))
        tensor([[1., 0., 2.],
                [0., 1., 3.],
                [0., 0., 1.]])
    """
    matrix, k, is_affine = _matrix_kind(matrix, "matrix")
    if not is_affine:
        return matrix
    last_row = torch.zeros(k + 1, dtype=matrix.dtype, device=matrix.device)
    last_row[k] = 1.0
    last_row = last_row.expand(*matrix.shape[:-2], 1, k + 1)
    return torch.cat((matrix, last_row), dim=-2)


def from_homogeneous(matrix: Tensor) -> Tensor:
    """Drop the last row of a homogeneous affine matrix: (..., k + 1, k + 1) -> (..., k, k + 1).

    The caller is responsible for the last row being (0, ..., 0, 1): a projective matrix loses its
    perspective part here.
    """
    matrix, _, is_affine = _matrix_kind(matrix, "matrix")
    return matrix if is_affine else matrix[..., :-1, :]


def compose(*matrices: Tensor) -> Tensor:
    """The single matrix of warping with each matrix in turn, first to last.

    Warping an image with ``a`` and then warping the result with ``b`` equals one warp with
    ``compose(a, b) = a @ b``: our matrices map output positions to input positions, so the first warp's
    matrix stands on the left. Batch dimensions broadcast.

    Args:
        *matrices: one or more matrices, affine or homogeneous, all of the same dimension k.

    Returns:
        Affine ``(..., k, k + 1)`` if every argument is affine, else homogeneous ``(..., k + 1, k + 1)``.

    Example:
        >>> shift = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]])
        >>> compose(shift, shift)
        tensor([[1., 0., 1.],
                [0., 1., 0.]])
    """
    if not matrices:
        raise ValueError("compose needs at least one matrix")
    kinds = [_matrix_kind(m, f"matrices[{i}]") for i, m in enumerate(matrices)]
    dims = {k for _, k, _ in kinds}
    if len(dims) != 1:
        raise ValueError(f"compose needs matrices of one spatial dimension, got dimensions {dims}")
    dtypes = [m.dtype for m in matrices]
    if len(set(dtypes)) != 1:
        raise TypeError(f"compose needs matrices of one dtype, got {[str(d) for d in dtypes]}")
    batches = [tuple(m.shape[:-2]) for m in matrices]
    try:
        torch.broadcast_shapes(*batches)
    except RuntimeError:
        raise ValueError(
            f"compose needs batch shapes that broadcast, got {[list(b) for b in batches]}"
        ) from None
    result = to_homogeneous(matrices[0])
    for matrix in matrices[1:]:
        result = result @ to_homogeneous(matrix)
    all_affine = all(is_affine for _, _, is_affine in kinds)
    return from_homogeneous(result) if all_affine else result


def _inv(matrix: Tensor) -> Tensor:
    """``torch.linalg.inv``, with half-precision matrices inverted in float32 (torch has no half inverse)."""
    if matrix.dtype in (torch.float16, torch.bfloat16):
        return torch.linalg.inv(matrix.float()).to(matrix.dtype)
    return torch.linalg.inv(matrix)


def invert(matrix: Tensor) -> Tensor:
    """Inverse transform, in the form it was given (affine stays affine).

    Args:
        matrix: affine ``(..., k, k + 1)`` or homogeneous ``(..., k + 1, k + 1)``, invertible.

    Returns:
        The inverse, same shape.

    Example:
        >>> invert(torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 0.0]]))
        tensor([[ 0.5000,  0.0000, -0.5000],
                [ 0.0000,  0.5000,  0.0000]])
    """
    _, _, is_affine = _matrix_kind(matrix, "matrix")
    inverse = _inv(to_homogeneous(matrix))
    return from_homogeneous(inverse) if is_affine else inverse


def _normalizer(spatial: tuple[int, ...], align_corners: bool, like: Tensor, name: str) -> Tensor:
    """Homogeneous matrix taking pixel coordinates (x, y[, z]) to normalised ones for ``spatial``.

    Pixel coordinates put pixel centres at integers, (0, 0) the centre of the top-left pixel, as OpenCV
    does. ``spatial`` is (H, W) or (D, H, W).
    """
    k = len(spatial)
    matrix = torch.eye(k + 1, dtype=like.dtype, device=like.device)
    for axis in range(k):  # axis 0 is x, the last entry of spatial
        size = spatial[k - 1 - axis]
        if align_corners:
            if size < 2:
                raise ValueError(
                    f"{name} {spatial}: with align_corners=True every side must be at least 2 pixels"
                )
            scale, shift = 2.0 / (size - 1), -1.0
        else:
            scale, shift = 2.0 / size, 1.0 / size - 1.0
        matrix[axis, axis] = scale
        matrix[axis, k] = shift
    return matrix


def _conversion_sizes(
    matrix: Tensor, input_size: Sequence[int], output_size: Sequence[int] | None, k: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    in_size = normalize_size(input_size, "input_size", k)
    out_size = in_size if output_size is None else normalize_size(output_size, "output_size", k)
    return in_size, out_size


def pixel_to_normalized(
    matrix: Tensor,
    *,
    input_size: Sequence[int],
    output_size: Sequence[int] | None = None,
    align_corners: bool = False,
    inverse_map: bool = False,
) -> Tensor:
    """Convert a pixel-space matrix (OpenCV style) into stnkit's normalised ``theta``.

    OpenCV's ``warpAffine`` / ``warpPerspective`` take a matrix that maps *input* pixels to *output*
    pixels (as ``cv2.getAffineTransform(src, dst)`` returns), unless ``WARP_INVERSE_MAP`` is set. stnkit's
    matrices map normalised *output* positions to *input* positions. Pixel coordinates put pixel centres
    at integers, ``(0, 0)`` the centre of the top-left pixel.

    Args:
        matrix: affine (..., 2, 3) / (..., 3, 4) or homogeneous (..., 3, 3) / (..., 4, 4), pixel space.
        input_size: spatial size of the input image, (H, W) or (D, H, W).
        output_size: spatial size of the output image (default: ``input_size``).
        align_corners: the convention the result will be used with.
        inverse_map: ``True`` if ``matrix`` already maps output pixels to input pixels
            (``cv2.WARP_INVERSE_MAP``).

    Returns:
        ``theta`` in the same form as ``matrix``, for :func:`stnkit.warp` with the same sizes.

    Example:
        >>> shift_right = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # content moves +1 px in x
        >>> pixel_to_normalized(shift_right, input_size=(4, 4))
        tensor([[ 1.0000,  0.0000, -0.5000],
                [ 0.0000,  1.0000,  0.0000]])
    """
    align_corners = check_flag(align_corners, "align_corners")
    inverse_map = check_flag(inverse_map, "inverse_map")
    matrix, k, is_affine = _matrix_kind(matrix, "matrix")
    in_size, out_size = _conversion_sizes(matrix, input_size, output_size, k)
    input_from_output = to_homogeneous(matrix) if inverse_map else invert(to_homogeneous(matrix))
    to_norm_in = _normalizer(in_size, align_corners, matrix, "input_size")
    to_norm_out = _normalizer(out_size, align_corners, matrix, "output_size")
    theta = to_norm_in @ input_from_output @ _inv(to_norm_out)
    return from_homogeneous(theta) if is_affine else theta


def normalized_to_pixel(
    theta: Tensor,
    *,
    input_size: Sequence[int],
    output_size: Sequence[int] | None = None,
    align_corners: bool = False,
    inverse_map: bool = False,
) -> Tensor:
    """Inverse of :func:`pixel_to_normalized`: stnkit ``theta`` -> OpenCV-style pixel matrix.

    Args:
        theta: affine (..., 2, 3) / (..., 3, 4) or homogeneous (..., 3, 3) / (..., 4, 4).
        input_size: spatial size of the input image, (H, W) or (D, H, W).
        output_size: spatial size of the output image (default: ``input_size``).
        align_corners: the convention ``theta`` is used with.
        inverse_map: return the output-to-input pixel matrix (``cv2.WARP_INVERSE_MAP``) instead.

    Returns:
        The pixel-space matrix, in the same form as ``theta``.
    """
    align_corners = check_flag(align_corners, "align_corners")
    inverse_map = check_flag(inverse_map, "inverse_map")
    theta, k, is_affine = _matrix_kind(theta, "theta")
    in_size, out_size = _conversion_sizes(theta, input_size, output_size, k)
    to_norm_in = _normalizer(in_size, align_corners, theta, "input_size")
    to_norm_out = _normalizer(out_size, align_corners, theta, "output_size")
    input_from_output = _inv(to_norm_in) @ to_homogeneous(theta) @ to_norm_out
    pixel = input_from_output if inverse_map else _inv(input_from_output)
    return from_homogeneous(pixel) if is_affine else pixel
