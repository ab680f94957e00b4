"""The thin-plate spline's grid maps are cached by plain keys, as NumPy, within a bound in bytes."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from stnkit import keras as sk
from stnkit.keras import grids

keras = pytest.importorskip("keras")

MAP_BYTES = 8 * 8 * 16 * 8  # one (H * W, K) float64 map with H * W = 64 and K = 16


@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch) -> OrderedDict:
    """A fresh cache for the test (other tests' maps left alone)."""
    cache: OrderedDict = OrderedDict()
    monkeypatch.setattr(grids, "_grid_maps", cache)
    return cache


def test_tps_grid_map_cache_keys_are_plain_python_and_values_read_only_numpy(empty_cache):
    points = sk.tps_lattice(16)[None].astype("float32")
    first = keras.ops.convert_to_numpy(
        sk.tps_grid(points, (np.int64(5), np.int64(7)), align_corners=np.bool_(True))
    )
    again = keras.ops.convert_to_numpy(sk.tps_grid(points, (5, 7), align_corners=True))
    # NumPy's integers and booleans and Python's make one key, of Python types only.
    assert list(empty_cache) == [(16, 5, 7, True)]
    assert all(type(part) in (int, bool) for part in next(iter(empty_cache)))
    (grid_map,) = empty_cache.values()
    # The cached value belongs to no backend, and nobody can change it in place.
    assert type(grid_map) is np.ndarray and grid_map.dtype == np.float64 and not grid_map.flags.writeable
    np.testing.assert_array_equal(first, again)


def test_tps_grid_maps_are_bounded_by_bytes_least_recently_used_out_first(empty_cache, monkeypatch):
    monkeypatch.setattr(grids, "_GRID_MAP_CACHE_BYTES", 2 * MAP_BYTES)
    first = grids._tps_grid_map(16, 8, 8, False)
    grids._tps_grid_map(16, 4, 16, False)
    assert grids._tps_grid_map(16, 8, 8, False) is first  # a hit; (4, 16) is now the least recent
    grids._tps_grid_map(16, 16, 4, False)  # a third map of the same bytes: (4, 16) goes
    assert list(empty_cache) == [(16, 8, 8, False), (16, 16, 4, False)]
    assert sum(m.nbytes for m in empty_cache.values()) <= 2 * MAP_BYTES


def test_a_tps_grid_map_larger_than_the_bound_is_computed_but_not_kept(empty_cache, monkeypatch):
    monkeypatch.setattr(grids, "_GRID_MAP_CACHE_BYTES", 2 * MAP_BYTES)
    grids._tps_grid_map(16, 8, 8, False)
    big = grids._tps_grid_map(16, 16, 16, False)  # four times MAP_BYTES
    assert list(empty_cache) == [(16, 8, 8, False)]  # not kept, and it did not push the small one out
    np.testing.assert_array_equal(big, grids._compute_tps_grid_map(16, 16, 16, False))
