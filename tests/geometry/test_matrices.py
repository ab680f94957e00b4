"""compose / invert / pixel <-> normalised conversions, with property-based tests."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stnkit
from stnkit.geometry import from_homogeneous, normalized_to_pixel, pixel_to_normalized, to_homogeneous

finite = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, allow_infinity=False)


@st.composite
def well_conditioned_affine(draw: st.DrawFn, k: int = 2) -> torch.Tensor:
    """A (k, k + 1) affine matrix whose linear part is the identity plus a bounded perturbation."""
    values = draw(st.lists(finite, min_size=k * (k + 1), max_size=k * (k + 1)))
    matrix = torch.tensor(values, dtype=torch.float64).view(k, k + 1) * 0.3
    matrix[:, :k] += torch.eye(k, dtype=torch.float64)
    return matrix


@st.composite
def homography(draw: st.DrawFn) -> torch.Tensor:
    matrix = to_homogeneous(draw(well_conditioned_affine()))
    perspective = draw(st.lists(st.floats(-0.2, 0.2), min_size=2, max_size=2))
    matrix[2, :2] = torch.tensor(perspective, dtype=torch.float64)
    return matrix


sizes = st.tuples(st.integers(2, 64), st.integers(2, 64))


@settings(max_examples=50, deadline=None)
@given(well_conditioned_affine(), well_conditioned_affine())
def test_compose_with_inverse_is_identity(a: torch.Tensor, b: torch.Tensor) -> None:
    eye = torch.eye(2, 3, dtype=torch.float64)
    torch.testing.assert_close(stnkit.compose(a, stnkit.invert(a)), eye, atol=1e-9, rtol=0)
    torch.testing.assert_close(stnkit.compose(stnkit.invert(a), a), eye, atol=1e-9, rtol=0)
    # (a b)^-1 = b^-1 a^-1
    torch.testing.assert_close(
        stnkit.invert(stnkit.compose(a, b)),
        stnkit.compose(stnkit.invert(b), stnkit.invert(a)),
        atol=1e-9,
        rtol=0,
    )


@settings(max_examples=50, deadline=None)
@given(well_conditioned_affine(), well_conditioned_affine(), well_conditioned_affine())
def test_compose_is_associative(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> None:
    torch.testing.assert_close(
        stnkit.compose(stnkit.compose(a, b), c), stnkit.compose(a, stnkit.compose(b, c)), atol=1e-9, rtol=0
    )


@settings(max_examples=30, deadline=None)
@given(homography())
def test_invert_homography(matrix: torch.Tensor) -> None:
    torch.testing.assert_close(
        stnkit.compose(matrix, stnkit.invert(matrix)), torch.eye(3, dtype=torch.float64), atol=1e-9, rtol=0
    )


def _normalize_point(point: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    height, width = size
    scale = torch.tensor([width, height], dtype=torch.float64)
    if align_corners:
        return point / (scale - 1) * 2 - 1
    return (2 * point + 1) / scale - 1


@settings(max_examples=60, deadline=None)
@given(
    well_conditioned_affine(),
    sizes,
    sizes,
    st.booleans(),
    st.lists(finite, min_size=2, max_size=2),
)
def test_pixel_to_normalized_maps_points_like_the_pixel_matrix(
    matrix: torch.Tensor,
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    align_corners: bool,
    point: list[float],
) -> None:
    # OpenCV style: the pixel matrix sends input pixel p to output pixel M p. stnkit's theta must send
    # the normalised output position of M p back to the normalised input position of p.
    pixel_matrix = matrix * torch.tensor([[1.0, 1.0, 10.0], [1.0, 1.0, 10.0]], dtype=torch.float64)
    p_in = torch.tensor(point, dtype=torch.float64) * 10
    p_out = pixel_matrix[:, :2] @ p_in + pixel_matrix[:, 2]
    theta = pixel_to_normalized(
        pixel_matrix, input_size=in_size, output_size=out_size, align_corners=align_corners
    )
    mapped = theta[:, :2] @ _normalize_point(p_out, out_size, align_corners) + theta[:, 2]
    torch.testing.assert_close(mapped, _normalize_point(p_in, in_size, align_corners), atol=1e-8, rtol=0)


@settings(max_examples=60, deadline=None)
@given(homography(), sizes, sizes, st.booleans(), st.booleans())
def test_pixel_normalized_round_trip(
    matrix: torch.Tensor,
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    align_corners: bool,
    inverse: bool,
) -> None:
    kwargs = {"input_size": in_size, "output_size": out_size, "align_corners": align_corners}
    theta = pixel_to_normalized(matrix, inverse_map=inverse, **kwargs)
    back = normalized_to_pixel(theta, inverse_map=inverse, **kwargs)
    torch.testing.assert_close(back / back[2, 2], matrix / matrix[2, 2], atol=1e-8, rtol=1e-8)


@settings(max_examples=30, deadline=None)
@given(st.integers(-3, 3), st.integers(-3, 3), st.integers(8, 20), st.booleans())
def test_integer_pixel_shift_moves_the_image_exactly(
    dx: int, dy: int, size: int, align_corners: bool
) -> None:
    image = torch.rand(1, 1, size, size + 3, dtype=torch.float64)
    shift = torch.tensor([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=torch.float64)  # content moves (dx, dy)
    theta = pixel_to_normalized(shift, input_size=(size, size + 3), align_corners=align_corners)
    out = stnkit.warp(image, theta[None], align_corners=align_corners)
    rows = slice(max(dy, 0), size + min(dy, 0))
    cols = slice(max(dx, 0), size + 3 + min(dx, 0))
    src_rows = slice(max(-dy, 0), size + min(-dy, 0))
    src_cols = slice(max(-dx, 0), size + 3 + min(-dx, 0))
    torch.testing.assert_close(out[0, 0, rows, cols], image[0, 0, src_rows, src_cols], atol=1e-10, rtol=0)


def test_homogeneous_round_trip_and_batching() -> None:
    theta = torch.randn(5, 2, 3)
    assert to_homogeneous(theta).shape == (5, 3, 3)
    torch.testing.assert_close(from_homogeneous(to_homogeneous(theta)), theta)
    volume_theta = torch.randn(4, 3, 4)
    assert to_homogeneous(volume_theta).shape == (4, 4, 4)


def test_compose_mixed_forms_returns_homogeneous() -> None:
    theta = torch.eye(2, 3)
    assert stnkit.compose(theta, torch.eye(3)).shape == (3, 3)
    assert stnkit.compose(theta, theta).shape == (2, 3)


def test_matrix_errors() -> None:
    with pytest.raises(ValueError, match="affine"):
        stnkit.invert(torch.randn(2, 2))
    with pytest.raises(ValueError, match="one spatial dimension"):
        stnkit.compose(torch.eye(2, 3), torch.eye(3, 4))
    with pytest.raises(ValueError, match="compose needs at least one matrix"):
        stnkit.compose()
    with pytest.raises(ValueError, match="input_size must have 2 entries"):
        pixel_to_normalized(torch.eye(2, 3), input_size=(4, 4, 4))
    with pytest.raises(ValueError, match="at least 2 pixels"):
        pixel_to_normalized(torch.eye(2, 3), input_size=(1, 4), align_corners=True)
    with pytest.raises(TypeError, match="floating-point"):
        stnkit.invert(torch.eye(3, dtype=torch.int64))


def test_compose_names_mismatched_dtypes_and_batches() -> None:
    a, b = torch.eye(2, 3).repeat(4, 1, 1), torch.eye(2, 3).repeat(3, 1, 1)
    with pytest.raises(ValueError, match=r"compose needs batch shapes that broadcast, got \[\[4\], \[3\]\]"):
        stnkit.compose(a, b)
    with pytest.raises(
        TypeError, match="compose needs matrices of one dtype, got \\['torch.float32', 'torch.float64'\\]"
    ):
        stnkit.compose(a, a.double())
    assert stnkit.compose(a, torch.eye(2, 3)).shape == (4, 2, 3)  # a single matrix broadcasts


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matrices_invert_through_float32(dtype: torch.dtype) -> None:
    matrix = torch.tensor([[2.0, 0.0, 1.0], [0.0, 4.0, 0.0]], dtype=dtype)
    inverse = stnkit.invert(matrix)
    assert inverse.dtype == dtype
    torch.testing.assert_close(inverse.float(), torch.tensor([[0.5, 0.0, -0.5], [0.0, 0.25, 0.0]]))
