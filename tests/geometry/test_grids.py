"""Grids: affine (2-D, 3-D), projective, thin-plate spline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit.geometry import grids, normalized_coordinates, tps_grid_matrix, tps_transform_points
from stnkit.geometry.cache import ByteBoundedCache, byte_bounded_cache, tensor_bytes

ALIGN = [False, True]


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("size", [(3, 1, 5, 7), (2, 4, 1, 6), (1, 2, 8, 8)])
def test_affine_grid_equals_torch_2d(align_corners: bool, size: tuple[int, ...]) -> None:
    theta = torch.randn(size[0], 2, 3, dtype=torch.float64)
    ours = stnkit.affine_grid(theta, size, align_corners=align_corners)
    theirs = F.affine_grid(theta, list(size), align_corners=align_corners)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_affine_grid_equals_torch_3d(align_corners: bool) -> None:
    size = (2, 3, 4, 5, 6)
    theta = torch.randn(2, 3, 4)
    ours = stnkit.affine_grid(theta, size, align_corners=align_corners)
    theirs = F.affine_grid(theta, list(size), align_corners=align_corners)
    assert ours.shape == (2, 4, 5, 6, 3)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_normalized_coordinates_match_torch_identity_grid(align_corners: bool) -> None:
    for num in (1, 2, 5, 8):
        theirs = F.affine_grid(torch.eye(2, 3)[None].double(), [1, 1, 1, num], align_corners=align_corners)
        ours = normalized_coordinates(num, align_corners=align_corners, dtype=torch.float64)
        torch.testing.assert_close(ours, theirs[0, 0, :, 0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_projective_with_affine_last_row_equals_affine(align_corners: bool) -> None:
    theta = torch.randn(3, 2, 3, dtype=torch.float64)
    homography = stnkit.geometry.to_homogeneous(theta)
    size = (3, 1, 6, 9)
    torch.testing.assert_close(
        stnkit.projective_grid(homography, size, align_corners=align_corners),
        stnkit.affine_grid(theta, size, align_corners=align_corners),
        rtol=0,
        atol=1e-12,
    )


def test_projective_grid_divides_by_w() -> None:
    # A pure perspective row: w = 1 + 0.5 x; the grid is (x / w, y / w).
    matrix = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]]], dtype=torch.float64)
    grid = stnkit.projective_grid(matrix, (1, 1, 3, 4), align_corners=True)
    xs = torch.linspace(-1, 1, 4, dtype=torch.float64)
    ys = torch.linspace(-1, 1, 3, dtype=torch.float64)
    w = 1 + 0.5 * xs
    torch.testing.assert_close(grid[0, 1, :, 0], xs / w)
    torch.testing.assert_close(grid[0, :, 2, 1], ys / w[2])


def test_projective_grid_stays_finite_where_w_vanishes() -> None:
    # w = x vanishes on the middle column of an odd-width grid.
    matrix = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
    grid = stnkit.projective_grid(matrix, (1, 1, 3, 5), align_corners=True)
    assert torch.isfinite(grid).all()


def test_tps_lattice_layout() -> None:
    lattice = stnkit.tps_lattice(9)
    expected = torch.tensor(
        [[-1, -1], [0, -1], [1, -1], [-1, 0], [0, 0], [1, 0], [-1, 1], [0, 1], [1, 1]],
        dtype=lattice.dtype,
    )
    torch.testing.assert_close(lattice, expected)


@pytest.mark.parametrize("num_points", [4, 16, 25])
def test_tps_passes_exactly_through_its_control_points(num_points: int) -> None:
    lattice = stnkit.tps_lattice(num_points, dtype=torch.float64)
    control_points = lattice + 0.2 * torch.randn(3, num_points, 2, dtype=torch.float64)
    mapped = tps_transform_points(control_points, lattice.expand(3, -1, -1))
    torch.testing.assert_close(mapped, control_points, rtol=0, atol=1e-10)
    # With align_corners=True on a sqrt(K) x sqrt(K) output, the pixel centres are the lattice itself.
    side = int(num_points**0.5)
    grid = stnkit.tps_grid(control_points, (3, 1, side, side), align_corners=True)
    torch.testing.assert_close(grid.reshape(3, num_points, 2), control_points, rtol=0, atol=1e-10)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_tps_of_an_affine_map_is_that_affine_map(align_corners: bool) -> None:
    # Thin-plate splines reproduce affine maps exactly (the bending energy is zero).
    theta = torch.tensor([[[0.8, -0.3, 0.1], [0.2, 1.1, -0.2]]], dtype=torch.float64)
    lattice = stnkit.tps_lattice(16, dtype=torch.float64)
    control_points = lattice @ theta[0, :, :2].T + theta[0, :, 2]
    size = (1, 1, 7, 5)
    torch.testing.assert_close(
        stnkit.tps_grid(control_points[None], size, align_corners=align_corners),
        stnkit.affine_grid(theta, size, align_corners=align_corners),
        rtol=0,
        atol=1e-10,
    )


def test_tps_grid_is_smooth_between_control_points() -> None:
    # Moving one control point moves nearby grid points more than far ones.
    lattice = stnkit.tps_lattice(16)[None]
    moved = lattice.clone()
    moved[0, 5, 0] += 0.3  # the point at (-1/3, -1/3)
    displacement = (stnkit.tps_grid(moved, (1, 1, 32, 32)) - stnkit.tps_grid(lattice, (1, 1, 32, 32))).norm(
        dim=-1
    )[0]
    near = displacement[10, 10]  # close to (-1/3, -1/3)
    far = displacement[28, 28]
    assert near > 0.2
    assert far < 0.1 * near


# --- per-size caches are bounded in bytes ------------------------------------------------------------


def test_byte_bounded_cache_evicts_least_recently_used_past_its_budget() -> None:
    calls: list[int] = []

    @byte_bounded_cache(max_bytes=100)
    def zeros(n: int) -> torch.Tensor:  # n float64 values: 8 n bytes
        calls.append(n)
        return torch.zeros(n, dtype=torch.float64)

    first = zeros(5)  # 40 bytes
    assert zeros(5) is first and calls == [5]
    zeros(4)  # 32 bytes: 72 in all
    zeros(5)  # 5 is now the most recently used
    zeros(3)  # 24 bytes: 96 in all
    zeros(2)  # 16 bytes: past 100, so 4, the least recently used, goes
    assert zeros.cached_bytes == 80 and len(zeros) == 3
    zeros(4)
    assert calls == [5, 4, 3, 2, 4]
    big = zeros(20)  # 160 bytes: larger than the budget, returned but not kept
    assert big.shape == (20,) and zeros.cached_bytes <= 100
    zeros.cache_clear()
    assert zeros.cached_bytes == 0 and len(zeros) == 0


def test_a_result_first_asked_for_while_tracing_with_fake_tensors_is_real_and_cached() -> None:
    # torch.export (the ONNX exporter) traces with fake tensors; a fake result kept in the cache
    # would come back from every later call in the process.
    from torch._subclasses.fake_tensor import FakeTensorMode

    @byte_bounded_cache(max_bytes=2**20)
    def inverse(n: int) -> torch.Tensor:
        return torch.linalg.inv(torch.eye(n, dtype=torch.float64) * 2)

    with FakeTensorMode():
        traced = inverse(3)
    assert type(traced) is torch.Tensor and inverse(3) is traced
    torch.testing.assert_close(traced, torch.eye(3, dtype=torch.float64) / 2)


def test_tensor_bytes_counts_tensors_in_tuples() -> None:
    pair = (3, torch.zeros(4, dtype=torch.float32), [torch.zeros(2, 2, dtype=torch.float64)])
    assert tensor_bytes(pair) == 16 + 32
    assert tensor_bytes("not a tensor") == 0


# Fill each cache with entries that sum to several times a 200 kB budget.
FILLERS = {
    "_tps_grid_map": lambda step: grids._tps_grid_map(16, (4 * step, 4 * step), False),
    "_tps_grid_map_t": lambda step: stnkit.tps_grid(stnkit.tps_lattice(16)[None], (1, 1, 4 * step, 8)),
    "_tps_solution_map": lambda step: grids._tps_solution_map(step * step),
}


@pytest.mark.parametrize("cache_name", list(FILLERS))
def test_tps_caches_are_bounded_in_bytes(cache_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = getattr(grids, cache_name)
    assert isinstance(cache, ByteBoundedCache)
    assert cache.max_bytes <= 256 * 2**20
    cache.cache_clear()
    monkeypatch.setattr(cache, "max_bytes", 200_000)
    for step in range(2, 16):
        FILLERS[cache_name](step)
        assert 0 < cache.cached_bytes <= 200_000
    assert len(cache) < 13  # some were evicted
    cache.cache_clear()


def test_tps_grid_is_the_same_from_the_cache_and_without() -> None:
    control_points = stnkit.tps_lattice(16, dtype=torch.float64)[None] + 0.1
    grids._tps_grid_map_t.cache_clear()
    fresh = stnkit.tps_grid(control_points, (1, 1, 5, 7))
    cached = stnkit.tps_grid(control_points, (1, 1, 5, 7))
    assert len(grids._tps_grid_map_t) == 1
    torch.testing.assert_close(cached, fresh, rtol=0, atol=0)


def test_tps_grid_matrix_is_the_linear_map_behind_tps_grid() -> None:
    torch.manual_seed(0)
    control_points = stnkit.tps_lattice(16, dtype=torch.float64) + 0.1 * torch.randn(3, 16, 2).double()
    for align_corners in (False, True):
        matrix = tps_grid_matrix(16, (5, 7), align_corners=align_corners)
        assert matrix.shape == (35, 16) and matrix.dtype == torch.float64
        expected = stnkit.tps_grid(control_points, (3, 1, 5, 7), align_corners=align_corners)
        assert torch.allclose((matrix @ control_points).view(3, 5, 7, 2), expected, atol=1e-12)


def test_tps_grid_matrix_is_a_copy_and_checks_its_arguments() -> None:
    tps_grid_matrix(16, (4, 4)).zero_()  # must not reach the cache behind tps_grid
    assert tps_grid_matrix(16, (4, 4)).abs().sum() > 0
    with pytest.raises(ValueError, match="perfect square"):
        tps_grid_matrix(15, (4, 4))
    with pytest.raises(ValueError, match=r"size must be \(H, W\)"):
        tps_grid_matrix(16, (4, 0))
