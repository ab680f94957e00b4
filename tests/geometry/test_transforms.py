"""Transform parameterisations: sizes, identities, matrices and grids."""

from __future__ import annotations

import math

import pytest
import torch

import stnkit
from stnkit.geometry import get_transform

EXPECTED_PARAMS = {
    "translation": 2,
    "attention": 3,
    "similarity": 4,
    "affine": 6,
    "projective": 8,
    "tps": 32,
    "affine3d": 12,
}


def test_registry_names_and_sizes() -> None:
    assert stnkit.list_transforms() == list(EXPECTED_PARAMS)
    for name, count in EXPECTED_PARAMS.items():
        transform = get_transform(name)
        assert transform.num_params == count
        assert transform.identity().shape == (count,)


def test_tps_num_control_points() -> None:
    assert get_transform("tps", num_control_points=25).num_params == 50
    with pytest.raises(ValueError, match="perfect square"):
        get_transform("tps", num_control_points=10)


@pytest.mark.parametrize(
    "name", ["translation", "attention", "similarity", "affine", "projective", "affine3d"]
)
def test_identity_matrix_is_eye(name: str) -> None:
    transform = get_transform(name)
    matrix = transform.matrix(transform.identity()[None])
    k = transform.spatial_dims
    torch.testing.assert_close(matrix[0], torch.eye(k + 1))


def test_similarity_is_rotation_and_scale() -> None:
    angle, scale = 0.3, 1.5
    params = torch.tensor([[scale * math.cos(angle), scale * math.sin(angle), 0.1, -0.2]])
    matrix = get_transform("similarity").matrix(params)[0, :2, :2]
    torch.testing.assert_close(matrix @ matrix.T, scale**2 * torch.eye(2))
    assert torch.det(matrix) > 0


def test_attention_and_translation_matrices() -> None:
    attention = get_transform("attention").matrix(torch.tensor([[0.5, 0.1, -0.3]]))
    torch.testing.assert_close(
        attention[0], torch.tensor([[0.5, 0.0, 0.1], [0.0, 0.5, -0.3], [0.0, 0.0, 1.0]])
    )
    translation = get_transform("translation").matrix(torch.tensor([[0.2, 0.4]]))
    torch.testing.assert_close(translation[0, :2, 2], torch.tensor([0.2, 0.4]))


def test_affine_family_grids_equal_affine_grid_of_their_matrix() -> None:
    for name in ("translation", "attention", "similarity", "affine"):
        transform = get_transform(name)
        params = transform.identity()[None] + 0.1 * torch.randn(3, transform.num_params)
        theta = transform.matrix(params)[:, :2, :]
        size = (3, 2, 7, 8)
        torch.testing.assert_close(transform.grid(params, size), stnkit.affine_grid(theta, size))


def test_matrix_forms_are_accepted_in_warp() -> None:
    image = torch.rand(2, 1, 8, 8)
    theta = torch.eye(2, 3).expand(2, 2, 3) + 0.1 * torch.randn(2, 2, 3)
    torch.testing.assert_close(
        stnkit.warp(image, theta), stnkit.warp(image, theta.reshape(2, 6), transform="affine")
    )
    homography = stnkit.geometry.to_homogeneous(theta) * 3.0  # projective matrices are scale free
    torch.testing.assert_close(
        stnkit.warp(image, homography, transform="projective"), stnkit.warp(image, theta)
    )
    control_points = stnkit.tps_lattice(16).expand(2, 16, 2)
    torch.testing.assert_close(stnkit.warp(image, control_points, transform="tps"), image, atol=1e-5, rtol=0)


def test_transform_object_passes_through() -> None:
    tps = stnkit.ThinPlateSpline(num_control_points=9)
    assert get_transform(tps) is tps
    image = torch.rand(1, 1, 6, 6)
    out = stnkit.warp(image, tps.identity()[None], transform=tps)
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)


def test_tps_has_no_matrix() -> None:
    tps = get_transform("tps")
    assert not tps.has_matrix
    with pytest.raises(NotImplementedError):
        tps.matrix(tps.identity()[None])


def test_warp_out_size_smaller_and_larger() -> None:
    image = torch.rand(3, 2, 28, 28)
    params = stnkit.identity_params("attention", 3)
    assert stnkit.warp(image, params, transform="attention", out_size=14).shape == (3, 2, 14, 14)
    assert stnkit.warp(image, params, transform="attention", out_size=(40, 50)).shape == (3, 2, 40, 50)


def test_warp_attention_zooms_into_the_centre() -> None:
    # s = 0.5 shows the central half of the image at twice the size.
    image = torch.zeros(1, 1, 8, 8)
    image[:, :, 2:6, 2:6] = 1.0
    out = stnkit.warp(image, torch.tensor([[0.5, 0.0, 0.0]]), transform="attention", mode="nearest")
    assert torch.all(out == 1.0)


def test_warp_translation_moves_content() -> None:
    # Output x samples input x + 0.5: with W = 8 and align_corners=False that is 2 pixels to the right,
    # so the content moves 2 pixels to the left.
    image = torch.rand(1, 1, 8, 8)
    out = stnkit.warp(image, torch.tensor([[0.5, 0.0]]), transform="translation")
    torch.testing.assert_close(out[..., :6], image[..., 2:])
    assert torch.all(out[..., 6:] == 0)


def parameter_forms(name: str, batch: int) -> list[torch.Tensor]:
    """The vector form (batch, num_params) and, where the transform has one, its matrix form."""
    spec = get_transform(name)
    vector = stnkit.identity_params(name, batch)
    forms = [vector]
    if spec.matrix_shape is not None:
        if name == "projective":  # the matrix form carries the fixed last entry
            forms.append(spec.matrix(vector))
        else:
            forms.append(vector.reshape(batch, *spec.matrix_shape))
    return forms


@pytest.mark.parametrize("name", stnkit.list_transforms())
def test_empty_batch_warps_in_every_parameter_form(name: str) -> None:
    spec = get_transform(name)
    image = torch.rand(0, 2, *([5] * spec.spatial_dims), requires_grad=True)
    for params in parameter_forms(name, 0):
        params.requires_grad_(True)
        out = stnkit.warp(image, params, transform=name, out_size=4)
        assert out.shape == (0, 2, *([4] * spec.spatial_dims))
        grad_image, grad_params = torch.autograd.grad(out.sum(), (image, params))
        assert grad_image.shape == image.shape and grad_params.shape == params.shape
        assert spec.grid(params, (0, 2, *([4] * spec.spatial_dims))).shape[0] == 0


def test_empty_batch_grids() -> None:
    assert stnkit.affine_grid(torch.zeros(0, 2, 3), (0, 1, 4, 5)).shape == (0, 4, 5, 2)
    assert stnkit.affine_grid(torch.zeros(0, 3, 4), (0, 1, 3, 4, 5)).shape == (0, 3, 4, 5, 3)
    assert stnkit.projective_grid(torch.zeros(0, 3, 3), (0, 1, 4, 5)).shape == (0, 4, 5, 2)
    assert stnkit.tps_grid(torch.zeros(0, 16, 2), (0, 1, 4, 5)).shape == (0, 4, 5, 2)
    with pytest.raises(ValueError, match="size must be positive"):
        stnkit.affine_grid(torch.zeros(0, 2, 3), (0, 1, 0, 5))


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("name", stnkit.list_transforms())
def test_warp_gradgradcheck(name: str, backend: str) -> None:
    # Double backward through stnkit.warp, as through F.affine_grid + F.grid_sample: gradient penalties
    # and meta-learning need it. Random params near the identity keep the points off the pixel kinks.
    spec = get_transform(name)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 2, *([4] * spec.spatial_dims), dtype=torch.float64, generator=generator)
    noise = 0.1 * torch.randn(1, spec.num_params, dtype=torch.float64, generator=generator)
    params = stnkit.identity_params(name, 1, dtype=torch.float64) + noise

    def fn(image: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return stnkit.warp(image, params, transform=name, out_size=3, backend=backend)

    inputs = (image.requires_grad_(True), params.requires_grad_(True))
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)
