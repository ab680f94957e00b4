from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from stnkit.data import (
    DataNotFoundError,
    GtsrbError,
    load_gtsrb,
    load_gtsrb_npz,
    load_gtsrb_original,
)


def test_npz_counts_and_labels(shared_gtsrb: Path) -> None:
    train = load_gtsrb(shared_gtsrb, split="train")
    test = load_gtsrb(shared_gtsrb, split="test")
    assert train.images.shape == (39209, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (12630, 3, 32, 32)
    for split in (train, test):
        assert split.labels.dtype == torch.int64
        assert split.labels.min() == 0 and split.labels.max() == 42
        assert len(split.filenames) == len(split.labels) == split.size_roi.shape[0]
    assert torch.bincount(train.labels)[:3].tolist() == [210, 2220, 2250]
    assert train.filenames[0] == "00000/00000_00000.ppm"
    assert (test.track_ids == -1).all() and train.track_ids.max() > 0


def test_npz_roi_crop_and_resize(shared_gtsrb: Path) -> None:
    npz = shared_gtsrb / "gtsrb" / "gtsrb32_test.npz"
    cropped = load_gtsrb_npz(npz, crop_roi=True, size=(24, 20))
    assert cropped.images.shape == (12630, 3, 24, 20)
    whole = load_gtsrb_npz(npz)
    # The ROI crop removes the ~10% margin: its border differs from the full image's.
    assert not torch.equal(cropped.images[:5, :, :2], whole.images[:5, :, :2])


def test_npz_corrupt_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError):
        load_gtsrb_npz(tmp_path / "absent.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(GtsrbError, match="bad.npz"):
        load_gtsrb_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "partial.npz", images=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(GtsrbError, match="missing arrays"):
        load_gtsrb_npz(tmp_path / "partial.npz")


def test_original_layout_reader(tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]]) -> None:
    counts = tiny_gtsrb(tmp_path, classes=3, per_class=2)
    train = load_gtsrb_original(tmp_path, split="train", size=16)
    test = load_gtsrb_original(tmp_path, split="test", size=(16, 12))
    assert train.images.shape == (counts["train"], 3, 16, 16)
    assert test.images.shape == (counts["test"], 3, 16, 12)
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.filenames[2] == "00001/00000_00000.ppm"
    assert train.track_ids.tolist() == [0, 1, 0, 1, 0, 1]
    assert train.size_roi[2].tolist() == [30, 33, 5, 5, 25, 28]


def test_original_layout_roi_crop(
    tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]], gtsrb_sign: Callable[..., np.ndarray]
) -> None:
    tiny_gtsrb(tmp_path, classes=2, per_class=1)
    cropped = load_gtsrb_original(tmp_path, split="train", crop_roi=True, size=8)
    whole = load_gtsrb_original(tmp_path, split="train", size=8)
    sign = torch.from_numpy(gtsrb_sign(30, 33, (5, 5, 25, 28), colour=60)[10, 10]).int()
    # The sign fills the crop: all but the outermost ring (where the antialiasing filter reaches
    # into the margin) is the sign colour. Without the crop, the margin takes that ring's place.
    inner = cropped.images[1, :, 1:7, 1:7].int()
    assert (inner - sign[:, None, None]).abs().max() <= 1
    assert (whole.images[1, :, 1, 1].int() - sign).abs().max() > 10


def test_load_gtsrb_finds_original_layout_under_root(
    tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]]
) -> None:
    tiny_gtsrb(tmp_path / "gtsrb")
    data = load_gtsrb(tmp_path, split="test")
    assert data.images.shape[-2:] == (32, 32)


def test_missing_test_labels(tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]]) -> None:
    tiny_gtsrb(tmp_path)
    (tmp_path / "GTSRB" / "Final_Test" / "GT-final_test.csv").unlink()
    with pytest.raises(DataNotFoundError, match="GTSRB_Final_Test_GT.zip"):
        load_gtsrb(tmp_path, split="test")


def test_missing_image_listed_in_csv(tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]]) -> None:
    tiny_gtsrb(tmp_path)
    (tmp_path / "GTSRB" / "Final_Training" / "Images" / "00001" / "00001_00001.ppm").unlink()
    with pytest.raises(DataNotFoundError, match="00001_00001.ppm"):
        load_gtsrb(tmp_path, split="train")


def test_corrupt_image(tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]]) -> None:
    tiny_gtsrb(tmp_path)
    (tmp_path / "GTSRB" / "Final_Test" / "Images" / "00003.ppm").write_bytes(b"P6\n garbage")
    with pytest.raises(GtsrbError, match="00003.ppm"):
        load_gtsrb(tmp_path, split="test")


def test_no_gtsrb_at_root(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="stnkit data download gtsrb"):
        load_gtsrb(tmp_path, split="train")
    with pytest.raises(ValueError, match="valid"):
        load_gtsrb(tmp_path, split="val")


def _tiny_npz(path: Path, n: int = 3, **override: np.ndarray) -> Path:
    """A well-formed gtsrb32-style npz of ``n`` images, with arrays replaced by ``override``."""
    arrays = {
        "images": np.zeros((n, 32, 32, 3), np.uint8),
        "labels": np.arange(n, dtype=np.int64),
        "filenames": np.array([f"{i:05d}.ppm" for i in range(n)]),
        "orig_size_roi": np.tile(np.array([40, 40, 5, 5, 35, 35], np.int64), (n, 1)),
        **override,
    }
    np.savez(path, **arrays)
    return path


def test_npz_well_formed_tiny_file_loads(tmp_path: Path) -> None:
    data = load_gtsrb_npz(_tiny_npz(tmp_path / "ok.npz"), crop_roi=True)
    assert data.images.shape == (3, 3, 32, 32) and data.labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "override, match",
    [
        ({"orig_size_roi": np.tile(np.array([40, 40, 5, 5, 35, 35]), (2, 1))}, "orig_size_roi"),
        ({"orig_size_roi": np.zeros((3, 4), np.int64)}, "orig_size_roi"),
        ({"filenames": np.array(["a.ppm"])}, "filenames"),
        ({"track_ids": np.zeros(5, np.int64)}, "track_ids"),
        ({"images": np.full((3, 32, 32, 3), 0.5, np.float32)}, "uint8"),
        ({"labels": np.array([0.0, 1.7, 2.0])}, "integer"),
        ({"labels": np.array([0, 1, 43])}, "0..42"),
        ({"labels": np.array([0, -1, 2])}, "0..42"),
    ],
    ids=[
        "roi-rows",
        "roi-columns",
        "filenames",
        "track-ids",
        "float-images",
        "float-labels",
        "label-43",
        "label-neg",
    ],
)
@pytest.mark.parametrize("crop_roi", [False, True])
def test_npz_refuses_mismatched_arrays(
    tmp_path: Path, override: dict[str, np.ndarray], match: str, crop_roi: bool
) -> None:
    path = _tiny_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(GtsrbError, match=match) as info:
        load_gtsrb_npz(path, crop_roi=crop_roi)
    assert "bad.npz" in str(info.value) and "\n" not in str(info.value)
