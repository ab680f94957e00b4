from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from stnkit.data import DataNotFoundError, IdxError, load_mnist, read_idx


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1" if type_code == 0x08 else ">i4").tobytes()


@pytest.fixture
def images() -> np.ndarray:
    return np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, images: np.ndarray, compress: bool) -> None:
    data = idx_bytes(images)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(data) if compress else data)
    np.testing.assert_array_equal(read_idx(path), images)


def test_read_idx_int32(tmp_path: Path) -> None:
    values = np.array([-3, 7, 1 << 20], dtype=np.int32)
    (tmp_path / "i.idx").write_bytes(idx_bytes(values, type_code=0x0C))
    out = read_idx(tmp_path / "i.idx")
    assert out.dtype == np.int32 and out.tolist() == values.tolist()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda b: b"\x01" + b[1:], "bad IDX magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "bad IDX magic"),  # unknown type code
        (lambda b: b[:3] + b"\x00" + b[4:], "bad IDX magic"),  # zero dimensions
        (lambda b: b[:-7], "truncated: header says shape"),
        (lambda b: b + b"\x00\x00", "trailing bytes"),
        (lambda b: b[:9], "truncated header"),
        (lambda b: b[:3], "too short"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path: Path, images: np.ndarray, mutate: object, match: str) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mutate(idx_bytes(images)))  # type: ignore[operator]
    with pytest.raises(IdxError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)  # the message names the file


def test_read_idx_wrong_ndim(tmp_path: Path, images: np.ndarray) -> None:
    (tmp_path / "x").write_bytes(idx_bytes(images))
    with pytest.raises(IdxError, match="3 dimensions, expected 1"):
        read_idx(tmp_path / "x", expected_ndim=1)


def test_truncated_gzip_names_file(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(idx_bytes(images))[:-12])
    with pytest.raises(IdxError, match="corrupt or truncated gzip") as info:
        read_idx(path)
    assert "t.gz" in str(info.value)


def _fake_mnist(folder: Path, n: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        pictures = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(pictures))
        digits = rng.integers(0, 10, n, dtype=np.uint8)
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(digits))


def test_non_original_files_fail_checksum_unless_verify_off(tmp_path: Path) -> None:
    _fake_mnist(tmp_path / "mnist")
    with pytest.raises(IdxError, match="the original MNIST file has"):
        load_mnist(tmp_path, split="test")
    data = load_mnist(tmp_path, split="test", verify=False)  # e.g. other IDX datasets
    assert data.images.shape == (10, 28, 28)
    assert data.labels.dtype.is_floating_point is False


def test_mismatched_counts(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    labels = np.zeros(9, dtype=np.uint8)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(IdxError, match="10 images but"):
        load_mnist(tmp_path, split="test", verify=False)


def test_missing_file_is_named(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, split="test", verify=False)


def test_unknown_split(shared_data: Path) -> None:
    with pytest.raises(ValueError, match="valid"):
        load_mnist(shared_data, split="validation")


def test_real_mnist(shared_data: Path) -> None:
    test = load_mnist(shared_data, split="test")
    assert test.images.shape == (10000, 28, 28)
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    counts = np.bincount(test.labels.numpy(), minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    train = load_mnist(shared_data, split="train")
    assert train.images.shape == (60000, 28, 28)
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert abs(train.images.float().mean().item() / 255 - 0.1307) < 1e-4


def test_corrupt_copy_of_original_fails_checksum(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist" / name, folder / name)
    # Flip one pixel in a raw copy: structure intact, content not the original.
    raw = bytearray(gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes()))
    raw[5000] ^= 0xFF
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    (folder / "t10k-images-idx3-ubyte").write_bytes(bytes(raw))
    with pytest.raises(IdxError, match="SHA-256"):
        load_mnist(tmp_path, split="test")


@pytest.mark.parametrize(
    "which, array, type_code, match",
    [
        # int32 pixel 300 would wrap to 44 in uint8
        ("images", np.full((10, 28, 28), 300, dtype=">i4"), 0x0C, "uint8"),
        ("images", np.full((10, 28, 28), 0.5, dtype=">f4"), 0x0D, "uint8"),
        ("labels", np.arange(10, dtype=">i4"), 0x0C, "uint8"),
        ("labels", np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 200], dtype=np.uint8), 0x08, "0-9"),
    ],
    ids=["int32-pixels", "float-pixels", "int32-labels", "label-200"],
)
def test_unverified_files_must_still_be_mnist_like(
    tmp_path: Path, which: str, array: np.ndarray, type_code: int, match: str
) -> None:
    _fake_mnist(tmp_path)
    name = f"t10k-{which}-idx{3 if which == 'images' else 1}-ubyte"
    (tmp_path / name).write_bytes(idx_bytes(array, type_code=type_code))
    with pytest.raises(IdxError, match=match) as info:
        load_mnist(tmp_path, split="test", verify=False)
    assert name in str(info.value) and "\n" not in str(info.value)
