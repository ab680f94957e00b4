"""MNIST from the standard IDX files, gzipped or not, checked before use.

The IDX format (LeCun's page): two zero bytes, a type code, the number of dimensions ``n``, then
``n`` big-endian uint32 sizes, then the data in C order. We check every part of that and, for the
four known original files, their SHA-256, so a truncated or corrupt file raises
:class:`IdxError` naming the file instead of giving a silently short dataset.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stnkit.data.roots import DataNotFoundError, describe_root, resolve_data_root
from stnkit.files import sha256_file

__all__ = [
    "MNIST_FILES",
    "IdxError",
    "MnistArrays",
    "load_mnist",
    "read_idx",
    "sha256_file",
]

# IDX type code -> numpy dtype (big-endian where it matters).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class _KnownFile:
    gz_sha256: str  # of the original .gz (shared/data/SHA256SUMS)
    raw_sha256: str  # of the uncompressed IDX bytes
    shape: tuple[int, ...]


# The four original files. The .gz sums are the published ones (shared/data/SHA256SUMS); the raw
# sums were computed from those files, whose uncompressed MD5s match the published MD5s.
MNIST_FILES: dict[str, _KnownFile] = {
    "train-images-idx3-ubyte": _KnownFile(
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        (60000, 28, 28),
    ),
    "train-labels-idx1-ubyte": _KnownFile(
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        (60000,),
    ),
    "t10k-images-idx3-ubyte": _KnownFile(
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        (10000, 28, 28),
    ),
    "t10k-labels-idx1-ubyte": _KnownFile(
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        (10000,),
    ),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


class IdxError(ValueError):
    """An IDX file is malformed, truncated, corrupt or not the expected original."""


def _read_bytes(path: Path) -> bytes:
    """The IDX bytes of ``path``, decompressing ``.gz`` (detected by its magic, not its name)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:  # BadGzipFile is an OSError
        raise IdxError(f"{path}: corrupt or truncated gzip stream ({err})") from err


def read_idx(path: str | os.PathLike[str], *, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array, checking its structure.

    Args:
        path: the ``.gz`` or raw IDX file.
        expected_ndim: if given, the number of dimensions the header must declare.

    Returns:
        Array of the header's shape and native-endian dtype.

    Raises:
        IdxError: bad magic number, unknown type code, wrong number of dimensions, or a data
            section shorter or longer than the header says (truncated or padded file).

    Example:
        >>> labels = read_idx("../shared/data/mnist/t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
        >>> labels.shape  # doctest: +SKIP
        (10000,)
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxError(f"{path}: only {len(data)} bytes, too short for an IDX header")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise IdxError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTNN with type "
            f"TT in {sorted(f'{c:02x}' for c in _IDX_DTYPES)} and NN >= 1 dimensions)"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise IdxError(f"{path}: header declares {ndim} dimensions, expected {expected_ndim}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxError(f"{path}: truncated header ({len(data)} of {header_len} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header_len
    if got < expected:
        raise IdxError(
            f"{path}: truncated: header says shape {shape} ({expected} data bytes) but the file holds {got}"
        )
    if got > expected:
        raise IdxError(f"{path}: {got - expected} unexpected trailing bytes after the {shape} data")
    array = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=header_len)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _check_original(path: Path, stem: str, array: np.ndarray) -> None:
    known = MNIST_FILES[stem]
    if array.shape != known.shape:
        raise IdxError(f"{path}: shape {array.shape}, the original MNIST file has {known.shape}")
    digest = sha256_file(path)
    if digest not in (known.gz_sha256, known.raw_sha256):
        raise IdxError(
            f"{path}: SHA-256 {digest} matches neither the original .gz ({known.gz_sha256}) "
            f"nor the original raw file ({known.raw_sha256}); the file is corrupt or not the "
            "original MNIST (from Python, load_mnist(..., verify=False) reads other IDX data, e.g. Fashion-MNIST)"
        )


def _check_mnist_like(image_path: Path, images: np.ndarray, label_path: Path, labels: np.ndarray) -> None:
    """Refuse what would be cast silently (int32 pixel 300 -> 44) or is not a digit label.

    Holds with ``verify=False`` too, so other IDX datasets are read only when they fit.
    """
    for path, array in ((image_path, images), (label_path, labels)):
        if array.dtype != np.uint8:
            raise IdxError(f"{path}: IDX data type is {array.dtype}, MNIST files are uint8")
    if labels.size and labels.max() > 9:
        raise IdxError(f"{label_path}: label {int(labels.max())} outside 0-9")
    if images.shape[0] != labels.shape[0]:
        raise IdxError(
            f"{image_path} has {images.shape[0]} images but {label_path} has {labels.shape[0]} labels"
        )


@dataclass(frozen=True)
class MnistArrays:
    """One MNIST split.

    Attributes:
        images: uint8 tensor (N, 28, 28), 0 = background.
        labels: int64 tensor (N,), digits 0-9.
    """

    images: torch.Tensor
    labels: torch.Tensor


_CACHE: dict[tuple[str, str, bool], MnistArrays] = {}


def mnist_folder(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the MNIST files: ``<root>/mnist`` if present, else ``<root>``."""
    base = resolve_data_root(root)
    return base / "mnist" if (base / "mnist").is_dir() else base


def load_mnist(
    root: str | os.PathLike[str] | None = None, *, split: str = "train", verify: bool = True
) -> MnistArrays:
    """Load an MNIST split from ``<root>/mnist/`` (or ``<root>/``), gzipped or raw IDX files.

    Results are cached per process (the arrays are shared: do not modify them in place).

    Args:
        root: data root; see :func:`stnkit.data.resolve_data_root`.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        verify: check shapes and SHA-256 against the original files.

    Returns:
        :class:`MnistArrays` with images uint8 (N, 28, 28) and labels int64 (N,).

    Raises:
        ValueError: unknown split.
        DataNotFoundError: the files are missing; the message names the root and the fix.
        IdxError: a file is malformed, truncated or not the original; with ``verify=False`` too:
            data that is not uint8, a label outside 0-9, or images and labels of different counts.

    Example:
        >>> test = load_mnist(split="test")  # doctest: +SKIP
        >>> test.images.shape, test.labels[:5].tolist()  # doctest: +SKIP
        (torch.Size([10000, 28, 28]), [7, 2, 1, 0, 4])
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"unknown MNIST split {split!r}; valid: {sorted(_SPLIT_PREFIX)}")
    folder = mnist_folder(root)
    prefix = _SPLIT_PREFIX[split]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    paths = [_find_idx(folder, stem) for stem in stems]
    missing = [stem for stem, p in zip(stems, paths) if p is None]
    if missing:
        raise DataNotFoundError(
            f"MNIST {split} files {missing} (.gz or raw) not found in {folder}; "
            f"{describe_root(root)}. Get them with `stnkit data download mnist --to DIR` and "
            "pass --data-root DIR or set $STNKIT_DATA=DIR."
        )
    image_path, label_path = (p for p in paths if p is not None)
    key = (str(image_path.resolve()), str(label_path.resolve()), verify)
    if key in _CACHE:
        return _CACHE[key]
    images = read_idx(image_path, expected_ndim=3)
    labels = read_idx(label_path, expected_ndim=1)
    if verify:
        _check_original(image_path, stems[0], images)
        _check_original(label_path, stems[1], labels)
    _check_mnist_like(image_path, images, label_path, labels)
    result = MnistArrays(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
    )
    _CACHE[key] = result
    return result
