"""GTSRB readers: the 32x32 ``.npz`` copy in shared/data and the original download layout.

Original layout (as the official zips unpack)::

    GTSRB/Final_Training/Images/000NN/*.ppm   + GT-000NN.csv in each class folder
    GTSRB/Final_Test/Images/*.ppm             + GT-final_test.csv (labelled; from the GT zip,
                                                found in Final_Test/Images, Final_Test, GTSRB/
                                                or the folder above)

CSV rows are ``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``. We read the ROI as a
box with ``(X2, Y2)`` *exclusive* (PIL's crop-box convention): on the first training image
(29x30, ROI 5,6,24,25) that leaves the >= 5 px margin the GTSRB description promises on every
side, while an inclusive reading would leave 4 px on the right.
"""

from __future__ import annotations

import csv
import math
import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from stnkit.data.roots import DataNotFoundError, describe_root, resolve_data_root

__all__ = [
    "GTSRB_CLASS_NAMES",
    "GTSRB_NUM_CLASSES",
    "GtsrbArrays",
    "GtsrbError",
    "holdout_tracks",
    "load_gtsrb",
    "load_gtsrb_npz",
    "load_gtsrb_original",
]

GTSRB_NUM_CLASSES = 43
# Short names of the 43 ClassIds, in order (our wording of the signs in the GTSRB description);
# short so that a confusion matrix of all 43 stays readable.
GTSRB_CLASS_NAMES: tuple[str, ...] = (
    "limit 20",
    "limit 30",
    "limit 50",
    "limit 60",
    "limit 70",
    "limit 80",
    "end of limit 80",
    "limit 100",
    "limit 120",
    "no overtaking",
    "no overtaking by trucks",
    "priority at next junction",
    "priority road",
    "give way",
    "stop",
    "no vehicles",
    "no trucks",
    "no entry",
    "danger",
    "bend left",
    "bend right",
    "double bend",
    "uneven road",
    "slippery road",
    "road narrows on right",
    "road works",
    "traffic lights",
    "pedestrians",
    "children",
    "cyclists",
    "ice or snow",
    "wild animals",
    "end of all limits",
    "turn right ahead",
    "turn left ahead",
    "ahead only",
    "ahead or right",
    "ahead or left",
    "keep right",
    "keep left",
    "roundabout",
    "end of no overtaking",
    "end of no overtaking by trucks",
)
_SPLITS = ("train", "test")
_CSV_FIELDS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")


class GtsrbError(ValueError):
    """A GTSRB file is malformed or inconsistent; the message names the file."""


@dataclass(frozen=True)
class GtsrbArrays:
    """One GTSRB split.

    Attributes:
        images: uint8 tensor (N, 3, H, W), RGB.
        labels: int64 tensor (N,), ClassId 0-42.
        filenames: N names relative to the split's image folder (``00000/00000_00000.ppm``).
        size_roi: int64 tensor (N, 6) = [Width, Height, X1, Y1, X2, Y2] in original pixels.
        track_ids: int64 tensor (N,), the physical-sign track (-1 for the test split).
    """

    images: torch.Tensor
    labels: torch.Tensor
    filenames: tuple[str, ...]
    size_roi: torch.Tensor
    track_ids: torch.Tensor


class _RecentSplits:
    """The ``max_entries`` splits read last, least recently used out first.

    Reading a split is worth doing once per run (the training split on this project's loaded 2-core AMD
    EPYC: 1.6 s from the ``.npz`` copy, 6 s from it resized to 48x48, about 15 s from the archives'
    ``.ppm`` files), but each entry holds a whole split (39,209 x 3 x 48 x 48 bytes = 271 MB for the
    training split at 48x48), so a process that tries several sizes or crops must not keep them all.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, GtsrbArrays] = OrderedDict()
        self._lock = threading.Lock()  # DataLoader threads may ask at the same time

    def get(self, key: Hashable, read: Callable[[], GtsrbArrays]) -> GtsrbArrays:
        """The split cached under ``key``, else ``read()`` (kept, the least recently used dropped)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        arrays = read()  # outside the lock: it may take seconds
        with self._lock:
            self._entries[key] = arrays
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return arrays

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# A run reads the training split (training and validation) and the test split (evaluation and
# pictures), each more than once: two entries per reader serve it, and hold at most 271 + 87 MB at
# 48x48 (120 + 39 MB for the 32x32 copy).
_SPLITS_KEPT = 2


def _as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = (int(s) for s in size)
    return height, width


def _resize(
    image: Image.Image, out_hw: tuple[int, int], box: tuple[float, float, float, float] | None
) -> np.ndarray:
    """(H, W, 3) uint8 of ``image`` (optionally its sub-box) resized to ``out_hw``.

    PIL's bilinear filter widens its support when shrinking (antialiased), and ``box`` takes
    fractional coordinates, so the crop and the resize are one resampling step.
    """
    height, width = out_hw
    resized = image.resize((width, height), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized, dtype=np.uint8)


def _roi_box(size_roi: np.ndarray, actual_wh: tuple[int, int]) -> tuple[float, float, float, float]:
    """ROI (X1, Y1, X2 exclusive, Y2 exclusive) scaled from CSV pixels to the stored image."""
    width, height, x1, y1, x2, y2 = (float(v) for v in size_roi)
    sx, sy = actual_wh[0] / width, actual_wh[1] / height
    return x1 * sx, y1 * sy, x2 * sx, y2 * sy


def _finish(
    images: list[np.ndarray] | np.ndarray,
    labels: np.ndarray,
    filenames: Sequence[str],
    size_roi: np.ndarray,
    track_ids: np.ndarray,
) -> GtsrbArrays:
    stacked = np.stack(list(images)) if isinstance(images, list) else images
    return GtsrbArrays(
        images=torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))),
        labels=torch.from_numpy(labels.astype(np.int64)),
        filenames=tuple(str(f) for f in filenames),
        size_roi=torch.from_numpy(size_roi.astype(np.int64)),
        track_ids=torch.from_numpy(track_ids.astype(np.int64)),
    )


def load_gtsrb_npz(
    path: str | os.PathLike[str],
    *,
    crop_roi: bool = False,
    size: int | Sequence[int] | None = None,
) -> GtsrbArrays:
    """Read ``gtsrb32_{train,test}.npz`` (see shared/data/PROVENANCE.md), optionally ROI-cropped.

    Args:
        path: the ``.npz`` file (images (N, 32, 32, 3) uint8 RGB, labels, filenames,
            orig_size_roi, and track_ids for the training file).
        crop_roi: crop each image to its sign ROI (scaled from original to 32x32 pixels).
        size: output size; ``None`` keeps 32x32 (also when cropping). Sizes above 32 only
            interpolate: the copy has no detail beyond 32x32.

    Returns:
        :class:`GtsrbArrays`, the last two splits read cached per process (shared: do not modify
            in place).

    Raises:
        DataNotFoundError: no such file.
        GtsrbError: missing arrays; images not uint8 (N, H, W, 3); labels not integers in
            0..42; ``orig_size_roi``, ``filenames`` or ``track_ids`` not one row per label.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"GTSRB file {path} not found")
    stat = path.stat()
    key = (
        str(path.resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        crop_roi,
        None if size is None else _as_hw(size),
    )
    return _NPZ_READS.get(key, lambda: _load_npz_uncached(path, crop_roi=crop_roi, size=size))


_NPZ_READS = _RecentSplits(_SPLITS_KEPT)


def _load_npz_uncached(path: Path, *, crop_roi: bool, size: int | Sequence[int] | None) -> GtsrbArrays:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if "allow_pickle" in str(err):  # numpy suggests allow_pickle=True, which would run code
            raise GtsrbError(
                f"{path}: holds pickled objects, which stnkit never loads; not a GTSRB .npz"
            ) from err
        raise GtsrbError(f"{path}: not a readable .npz archive ({err})") from err
    missing = {"images", "labels", "filenames", "orig_size_roi"} - arrays.keys()
    if missing:
        raise GtsrbError(f"{path}: missing arrays {sorted(missing)}")
    images, labels = arrays["images"], arrays["labels"]
    n = len(labels)
    size_roi = arrays["orig_size_roi"]
    track_ids = arrays.get("track_ids", np.full(n, -1, dtype=np.int64))
    _check_npz_arrays(path, images, labels, arrays["filenames"], size_roi, track_ids)
    if crop_roi or size is not None:
        out_hw = _as_hw(size if size is not None else images.shape[1:3])
        stored_wh = (images.shape[2], images.shape[1])
        images = np.stack(
            [
                _resize(Image.fromarray(img), out_hw, _roi_box(roi, stored_wh) if crop_roi else None)
                for img, roi in zip(images, size_roi)
            ]
        )
    return _finish(images, labels, arrays["filenames"], size_roi, track_ids)


def _check_npz_arrays(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    filenames: np.ndarray,
    size_roi: np.ndarray,
    track_ids: np.ndarray,
) -> None:
    """Refuse arrays that do not fit together, rather than cast or truncate them silently."""
    n = len(labels)
    if n == 0:  # nothing would train or evaluate on it; later steps would fail far from the cause
        raise GtsrbError(f"{path}: holds no images (0 labels)")
    if images.dtype != np.uint8:
        raise GtsrbError(f"{path}: images must be uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[0] != n or images.shape[3] != 3:
        raise GtsrbError(f"{path}: images {images.shape} do not match {n} labels of RGB")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        # A float label such as 1.7 would otherwise become class 1.
        raise GtsrbError(f"{path}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= GTSRB_NUM_CLASSES:
        raise GtsrbError(f"{path}: labels outside 0..{GTSRB_NUM_CLASSES - 1}")
    # One row per image: (width, height, x1, y1, x2, y2) of the original picture.
    if size_roi.shape != (n, 6):
        raise GtsrbError(f"{path}: orig_size_roi has shape {size_roi.shape}, expected ({n}, 6)")
    for name, array in (("filenames", filenames), ("track_ids", track_ids)):
        if array.shape != (n,):
            raise GtsrbError(f"{path}: {name} has shape {array.shape}, expected ({n},) for {n} labels")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    if not rows:
        raise GtsrbError(f"{path}: no rows")
    absent = [c for c in _CSV_FIELDS if c not in rows[0]]
    if absent:
        raise GtsrbError(f"{path}: missing columns {absent} (has {list(rows[0])})")
    return rows


def _first_existing(candidates: Sequence[Path]) -> Path | None:
    return next((c for c in candidates if c.exists()), None)


def _layout_bases(folder: Path) -> list[Path]:
    return [folder, folder / "GTSRB", folder / "gtsrb", folder / "gtsrb" / "GTSRB"]


def _find_split(folder: Path, split: str) -> tuple[Path, list[tuple[Path, Path]]]:
    """(image folder, [(csv, folder its filenames are relative to)]) of one split's layout."""
    sub = "Final_Training" if split == "train" else "Final_Test"
    images_dir = _first_existing([b / sub / "Images" for b in _layout_bases(folder)])
    if images_dir is None:
        raise DataNotFoundError(
            f"no GTSRB {sub}/Images folder under {folder} (looked in "
            f"{[str(b / sub / 'Images') for b in _layout_bases(folder)]})"
        )
    if split == "train":
        class_dirs = sorted(d for d in images_dir.iterdir() if d.is_dir() and d.name.isdigit())
        if not class_dirs:
            raise DataNotFoundError(f"{images_dir}: no class folders 000NN")
        csvs = []
        for d in class_dirs:
            csv_path = d / f"GT-{d.name}.csv"
            if not csv_path.is_file():
                raise DataNotFoundError(f"{d}: annotation file {csv_path.name} is missing")
            csvs.append((csv_path, d))
        return images_dir, csvs
    gt = _first_existing(
        [
            images_dir / "GT-final_test.csv",
            images_dir.parent / "GT-final_test.csv",
            images_dir.parent.parent / "GT-final_test.csv",
            images_dir.parent.parent.parent / "GT-final_test.csv",
        ]
    )
    if gt is None:
        raise DataNotFoundError(
            f"GTSRB test labels GT-final_test.csv not found near {images_dir} (the images zip "
            "only has the unlabelled GT-final_test.test.csv; the labels come in "
            "GTSRB_Final_Test_GT.zip, which `stnkit data download gtsrb` fetches)"
        )
    return images_dir, [(gt, images_dir)]


def load_gtsrb_original(
    folder: str | os.PathLike[str],
    *,
    split: str = "train",
    crop_roi: bool = False,
    size: int | Sequence[int] = 32,
) -> GtsrbArrays:
    """Read GTSRB in the layout of the official zips (``.ppm`` images plus ``GT-*.csv``).

    Every image is resized to ``size`` (bilinear, antialiased, aspect not kept, as the
    standard 32x32 preprocessing does), after cropping to the sign ROI if ``crop_roi``.

    Args:
        folder: folder holding ``GTSRB/`` (or ``Final_Training``/``Final_Test`` directly).
        split: ``"train"`` or ``"test"``.
        crop_roi: crop to the annotated sign box first.
        size: output size, int or (H, W).

    Returns:
        :class:`GtsrbArrays` in class-then-CSV order (train) or CSV order (test); the last two
        splits read are cached per process (shared: do not modify in place).

    Raises:
        DataNotFoundError: the layout, a CSV or an image is missing.
        GtsrbError: malformed CSV or unreadable image.
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown GTSRB split {split!r}; valid: {list(_SPLITS)}")
    images_dir, csvs = _find_split(Path(folder), split)
    out_hw = _as_hw(size)
    # Reading 39,209 .ppm files takes ~15 s (docs/training.md) and a training run asks for each split more
    # than once (train and validation, test and the pictures' batch): keep the last reads per process,
    # keyed by the annotation files' sizes and times so that an edited layout is read afresh.
    stats = tuple((str(c.resolve()), c.stat().st_size, c.stat().st_mtime_ns) for c, _ in csvs)
    key = (str(images_dir.resolve()), split, crop_roi, out_hw, stats)
    return _ORIGINAL_READS.get(
        key, lambda: _read_original(images_dir, csvs, split=split, crop_roi=crop_roi, out_hw=out_hw)
    )


_ORIGINAL_READS = _RecentSplits(_SPLITS_KEPT)


def _read_original(
    images_dir: Path,
    csvs: Sequence[tuple[Path, Path]],
    *,
    split: str,
    crop_roi: bool,
    out_hw: tuple[int, int],
) -> GtsrbArrays:
    images: list[np.ndarray] = []
    labels, names, size_rois, tracks = [], [], [], []
    for csv_path, rel_dir in csvs:
        for row in _read_csv(csv_path):
            image_path = rel_dir / row["Filename"]
            try:
                size_roi = np.array([int(row[c]) for c in _CSV_FIELDS[1:7]], dtype=np.int64)
                label = int(row["ClassId"])
            except ValueError as err:
                raise GtsrbError(f"{csv_path}: bad row {row} ({err})") from err
            if not 0 <= label < GTSRB_NUM_CLASSES:
                raise GtsrbError(f"{csv_path}: ClassId {label} outside 0..42")
            if not image_path.is_file():
                raise DataNotFoundError(f"{csv_path} lists {row['Filename']}, which is missing")
            try:
                with Image.open(image_path) as opened:
                    image = opened.convert("RGB")
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
                raise GtsrbError(f"{image_path}: unreadable image ({err})") from err
            box = _roi_box(size_roi, image.size) if crop_roi else None
            images.append(_resize(image, out_hw, box))
            labels.append(label)
            names.append(str(image_path.relative_to(images_dir)))
            size_rois.append(size_roi)
            # Training names are TTTTT_FFFFF.ppm: track, then frame.
            stem = Path(row["Filename"]).stem
            tracks.append(int(stem.split("_")[0]) if split == "train" and "_" in stem else -1)
    return _finish(images, np.array(labels), names, np.stack(size_rois), np.array(tracks, dtype=np.int64))


def load_gtsrb(
    root: str | os.PathLike[str] | None = None,
    *,
    split: str = "train",
    crop_roi: bool = False,
    size: int | Sequence[int] | None = None,
    source: str = "auto",
) -> GtsrbArrays:
    """GTSRB from the data root: the 32x32 ``.npz`` copy or the original layout of the archives.

    Looks for ``<root>/gtsrb/gtsrb32_<split>.npz`` (or ``<root>/gtsrb32_<split>.npz``) and for the
    original layout under ``<root>/gtsrb/`` or ``<root>/``. ``source="auto"`` prefers the ``.npz``
    up to 32x32 and the original layout above it (48x48 from the archives has detail the 32x32
    copy lacks; the copy is only interpolated when the layout is absent).

    Args:
        root: data root; see :func:`stnkit.data.resolve_data_root`.
        split: ``"train"`` (39,209 images) or ``"test"`` (12,630).
        crop_roi: crop to the sign ROI.
        size: output size, int or (H, W); ``None`` means 32x32.
        source: ``"auto"``, ``"npz"`` (the 32x32 copy only) or ``"original"`` (the archives' layout
            only).

    Raises:
        DataNotFoundError: the chosen source is absent under the root (the message says how to get it).
        ValueError: unknown split or source.

    Example:
        >>> test = load_gtsrb(split="test")  # doctest: +SKIP
        >>> tuple(test.images.shape)  # doctest: +SKIP
        (12630, 3, 32, 32)
        >>> tuple(load_gtsrb("/data", split="test", size=48).images.shape)  # doctest: +SKIP
        (12630, 3, 48, 48)
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown GTSRB split {split!r}; valid: {list(_SPLITS)}")
    if source not in _SOURCES:
        raise ValueError(f"unknown GTSRB source {source!r}; valid: {list(_SOURCES)}")
    base = resolve_data_root(root)
    npz = _first_existing([base / "gtsrb" / f"gtsrb32_{split}.npz", base / f"gtsrb32_{split}.npz"])
    original = _original_folder(base, split)
    finders = {"npz": npz, "original": original}
    larger_than_copy = size is not None and max(_as_hw(size)) > NPZ_SIZE
    order = {"npz": ["npz"], "original": ["original"]}.get(
        source, ["original", "npz"] if larger_than_copy else ["npz", "original"]
    )
    for kind in order:
        path = finders[kind]
        if path is None:
            continue
        if kind == "npz":
            return load_gtsrb_npz(path, crop_roi=crop_roi, size=size)
        return load_gtsrb_original(
            path, split=split, crop_roi=crop_roi, size=size if size is not None else NPZ_SIZE
        )
    raise DataNotFoundError(_not_found_message(base, root, split, source))


_SOURCES = ("auto", "npz", "original")
NPZ_SIZE = 32  # the side of the images in the gtsrb32_*.npz copy


def _original_folder(base: Path, split: str) -> Path | None:
    """The folder under ``base`` that holds the archives' layout of ``split``, if any."""
    sub = "Final_Training" if split == "train" else "Final_Test"
    for folder in (base / "gtsrb", base):
        # Found as soon as the image folder exists: a half-present layout (no CSV) must then say
        # what is missing rather than fall through to "not found".
        if any((b / sub / "Images").is_dir() for b in _layout_bases(folder)):
            return folder
    return None


def _not_found_message(base: Path, root: str | os.PathLike[str] | None, split: str, source: str) -> str:
    what = {
        "auto": f"no gtsrb/gtsrb32_{split}.npz and no original layout (GTSRB/Final_Training, GTSRB/Final_Test)",
        "npz": f"no gtsrb/gtsrb32_{split}.npz",
        "original": "no original layout of the official archives (GTSRB/Final_Training, GTSRB/Final_Test)",
    }[source]
    return (
        f"GTSRB {split} not found: {what} under {base}; {describe_root(root)}. "
        "Get it with `stnkit data download gtsrb --to DIR` and pass --data-root DIR or set "
        "$STNKIT_DATA=DIR."
    )


def holdout_tracks(labels: torch.Tensor, track_ids: torch.Tensor, val_size: int) -> torch.Tensor:
    """Which training images form a validation split of whole tracks: the last tracks of each class.

    GTSRB's training images come in tracks of about 30 pictures of one physical sign, so a split
    that cuts a track puts near-duplicates on both sides. Each class gives its last
    ``round(val_size / N * tracks_of_class)`` tracks (by track id), at least one and never all,
    so every class is validated and trained on; the split holds about ``val_size`` images (more
    when ``val_size`` is small: one track per class at least). It depends on nothing but the
    labels and track ids: the same on every machine and in every order of the images.

    Args:
        labels: int64 Tensor[N], the classes.
        track_ids: int64 Tensor[N], the track of each image within its class (>= 0).
        val_size: about how many images to hold out, 1 <= val_size < N.

    Returns:
        bool Tensor[N], True for the held-out (validation) images.

    Raises:
        ValueError: ``val_size`` out of range, missing track ids (-1), or a class with fewer than
            two tracks (it cannot be both trained on and validated).

    Example:
        >>> labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> tracks = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
        >>> holdout_tracks(labels, tracks, 4).tolist()
        [False, False, True, True, False, False, True, True]
    """
    n = int(labels.shape[0])
    if labels.shape != track_ids.shape or labels.dim() != 1:
        raise ValueError(
            f"labels and track_ids must be equal 1-D shapes, got {labels.shape}, {track_ids.shape}"
        )
    if not 1 <= val_size < n:
        raise ValueError(f"val_size must be in 1..{n - 1} for {n} training images, got {val_size}")
    if bool((track_ids < 0).any()):
        raise ValueError(
            "GTSRB track ids are missing (-1): a split by whole tracks needs the training split's tracks"
        )
    fraction = val_size / n
    held = torch.zeros(n, dtype=torch.bool)
    for label in torch.unique(labels).tolist():
        in_class = labels == label
        tracks = torch.unique(track_ids[in_class])  # sorted
        if len(tracks) < 2:
            raise ValueError(
                f"class {label} has {len(tracks)} track: a split by whole tracks needs two or more per class"
            )
        # Half-up rounding (not Python's round-half-even), clamped to [1, tracks - 1].
        count = min(max(1, math.floor(fraction * len(tracks) + 0.5)), len(tracks) - 1)
        held |= in_class & torch.isin(track_ids, tracks[-count:])
    return held
