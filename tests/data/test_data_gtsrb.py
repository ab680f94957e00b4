from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from stnkit.data import (
    DataNotFoundError,
    GtsrbError,
    gtsrb,
    load_gtsrb,
    load_gtsrb_npz,
    load_gtsrb_original,
)
from stnkit.data.gtsrb import holdout_tracks


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
    labels = np.empty(2, dtype=object)  # object arrays are stored pickled
    np.savez(tmp_path / "pickled.npz", images=np.zeros((2, 32, 32, 3), np.uint8), labels=labels)
    with pytest.raises(GtsrbError, match="holds pickled objects, which stnkit never loads") as info:
        load_gtsrb_npz(tmp_path / "pickled.npz")
    assert "allow_pickle" not in str(info.value)


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


def test_npz_without_images_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(GtsrbError, match=r"empty\.npz: holds no images \(0 labels\)"):
        load_gtsrb_npz(_tiny_npz(tmp_path / "empty.npz", n=0), crop_roi=False)


# --- 48x48 from the original layout, and the choice of source ----------------------------------


def _write_npz_copy(base: Path, split: str, n: int) -> None:
    """A gtsrb32_<split>.npz of ``n`` black images beside a tiny original layout."""
    folder = base / "gtsrb"
    folder.mkdir(parents=True, exist_ok=True)
    _tiny_npz(folder / f"gtsrb32_{split}.npz", n=n, labels=np.zeros(n, np.int64))


def test_load_gtsrb_at_48_reads_the_original_layout(
    tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]]
) -> None:
    counts = tiny_gtsrb(tmp_path / "gtsrb", classes=3, per_class=2)
    _write_npz_copy(tmp_path, "train", counts["train"])
    at_48 = load_gtsrb(tmp_path, split="train", size=48)
    direct = load_gtsrb_original(tmp_path / "gtsrb", split="train", size=48)
    assert at_48.images.shape == (counts["train"], 3, 48, 48)
    # The archives' pictures resized once, not the black 32x32 copy interpolated.
    assert torch.equal(at_48.images, direct.images) and at_48.images.max() > 0
    assert at_48.track_ids.tolist() == [0, 1, 0, 1, 0, 1]
    # Up to 32x32 the copy is preferred, as before; `source` forces either one.
    assert load_gtsrb(tmp_path, split="train").images.max() == 0
    assert load_gtsrb(tmp_path, split="train", size=48, source="npz").images.max() == 0
    assert torch.equal(
        load_gtsrb(tmp_path, split="train", source="original").images,
        load_gtsrb_original(tmp_path / "gtsrb", split="train").images,
    )


def test_load_gtsrb_source_absent_or_unknown(tmp_path: Path) -> None:
    _write_npz_copy(tmp_path, "test", 3)
    with pytest.raises(DataNotFoundError, match="no original layout") as info:
        load_gtsrb(tmp_path, split="test", size=48, source="original")
    assert "stnkit data download gtsrb" in str(info.value) and "\n" not in str(info.value)
    # Without the layout, "auto" at 48 falls back to interpolating the copy (documented).
    assert load_gtsrb(tmp_path, split="test", size=48).images.shape == (3, 3, 48, 48)
    with pytest.raises(ValueError, match="unknown GTSRB source 'zip'; valid"):
        load_gtsrb(tmp_path, split="test", source="zip")


def test_original_reader_caches_until_the_annotations_change(
    tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]]
) -> None:
    tiny_gtsrb(tmp_path, classes=2, per_class=2)
    first = load_gtsrb_original(tmp_path, split="train", size=48)
    assert load_gtsrb_original(tmp_path, split="train", size=48) is first
    assert load_gtsrb_original(tmp_path, split="train", size=40) is not first
    csv_path = tmp_path / "GTSRB" / "Final_Training" / "Images" / "00001" / "GT-00001.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(lines[:2]))  # drop the class's second image
    assert load_gtsrb_original(tmp_path, split="train", size=48).labels.tolist() == [0, 0, 1]


def _read_sizes_in_order(read: Callable[[int], object], cache: gtsrb._RecentSplits) -> None:
    """Reads at three sizes: at most the last two stay cached, least recently used out first."""
    at_8, at_12 = read(8), read(12)
    assert read(8) is at_8  # a hit: 8 is now the most recently used, 12 the least
    at_16 = read(16)
    assert len(cache) == 2
    assert read(8) is at_8 and read(16) is at_16
    assert read(12) is not at_12  # dropped, so read again (which drops 8, now the least recent)
    assert len(cache) == 2


def test_original_reader_keeps_the_last_two_splits(
    tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each entry holds a whole split (271 MB for the training split at 48x48): a process that tries
    # several sizes or crops keeps only the last two reads.
    cache = gtsrb._RecentSplits(gtsrb._SPLITS_KEPT)  # the module's bound, none of its entries
    monkeypatch.setattr(gtsrb, "_ORIGINAL_READS", cache)
    tiny_gtsrb(tmp_path, classes=2, per_class=1)
    _read_sizes_in_order(lambda size: load_gtsrb_original(tmp_path, split="train", size=size), cache)


def test_npz_reader_keeps_the_last_two_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = gtsrb._RecentSplits(gtsrb._SPLITS_KEPT)
    monkeypatch.setattr(gtsrb, "_NPZ_READS", cache)
    path = _tiny_npz(tmp_path / "tiny.npz")
    _read_sizes_in_order(lambda size: load_gtsrb_npz(path, size=size), cache)


# --- a validation split of whole tracks ---------------------------------------------------------


def _tracks(counts: dict[int, int], frames: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, track_ids) of ``counts[c]`` tracks of ``frames`` images for each class ``c``."""
    labels = [c for c, n in counts.items() for _ in range(n * frames)]
    tracks = [t for _, n in counts.items() for t in range(n) for _ in range(frames)]
    return torch.tensor(labels), torch.tensor(tracks)


def _tracks_of(labels: torch.Tensor, tracks: torch.Tensor, mask: torch.Tensor) -> set[tuple[int, int]]:
    return set(zip(labels[mask].tolist(), tracks[mask].tolist()))


def test_holdout_takes_the_last_whole_tracks_of_each_class() -> None:
    labels, tracks = _tracks({0: 10, 1: 4, 2: 2})  # 48 images
    held = holdout_tracks(labels, tracks, 12)  # a quarter: 2.5 -> 3, 1 and 0.5 -> 1 tracks
    assert _tracks_of(labels, tracks, held) == {(0, 7), (0, 8), (0, 9), (1, 3), (2, 1)}
    assert not _tracks_of(labels, tracks, held) & _tracks_of(labels, tracks, ~held)
    # Never all of a class's tracks, at least one of each.
    most = holdout_tracks(labels, tracks, 47)
    assert _tracks_of(labels, tracks, ~most) == {(0, 0), (1, 0), (2, 0)}
    assert set(labels[holdout_tracks(labels, tracks, 1)].tolist()) == {0, 1, 2}


def test_holdout_depends_only_on_labels_and_tracks() -> None:
    labels, tracks = _tracks({0: 5, 3: 7, 4: 3}, frames=4)
    held = holdout_tracks(labels, tracks, 20)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    assert torch.equal(holdout_tracks(labels[order], tracks[order], 20), held[order])


@pytest.mark.parametrize(
    ("counts", "val_size", "match"),
    [
        ({0: 3, 1: 1}, 3, "class 1 has 1 track"),
        ({0: 3, 1: 2}, 0, "val_size must be in 1..14"),
        ({0: 3, 1: 2}, 15, "val_size must be in 1..14"),
    ],
)
def test_holdout_refusals(counts: dict[int, int], val_size: int, match: str) -> None:
    labels, tracks = _tracks(counts)
    with pytest.raises(ValueError, match=match):
        holdout_tracks(labels, tracks, val_size)


def test_holdout_needs_track_ids() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="track ids are missing"):
        holdout_tracks(labels, torch.full((4,), -1), 2)


def test_holdout_on_real_gtsrb(shared_gtsrb: Path) -> None:
    train = load_gtsrb(shared_gtsrb, split="train")
    held = holdout_tracks(train.labels, train.track_ids, 4000)
    # 134 whole tracks (of 1,307) near 4,000 images; every class on both sides.
    assert int(held.sum()) == 4020
    assert len(_tracks_of(train.labels, train.track_ids, held)) == 134
    assert not _tracks_of(train.labels, train.track_ids, held) & _tracks_of(
        train.labels, train.track_ids, ~held
    )
    assert train.labels[held].unique().numel() == train.labels[~held].unique().numel() == 43
    # The larger split of the val10k recipe: 334 tracks, at least two of every class.
    held = holdout_tracks(train.labels, train.track_ids, 10000)
    tracks = _tracks_of(train.labels, train.track_ids, held)
    assert int(held.sum()) == 10019 and len(tracks) == 334
    assert min(sum(1 for label, _ in tracks if label == c) for c in range(43)) == 2
