"""Dataset registry and loaders: whole batches, distorted on the fly, reproducible under a seed.

Design:

* A map-style :class:`BatchDataset` whose item ``i`` is the whole batch ``i`` of the current
  epoch, used with ``DataLoader(batch_size=None, num_workers=k)``: each worker makes complete
  batches with one batched warp, so workers never fight over per-image Python overhead.
* Randomness is drawn per *image*, not per batch: at the start of an epoch the parameters of
  every source image are drawn at once, in image order, from a ``torch.Generator`` seeded by
  ``(seed, dataset, split, epoch)``. So the distortion of image ``j`` depends only on
  ``(seed, epoch, j)``: the same with 0 or 8 workers, any batch size, any number of ranks and
  any ``limit``. The test split uses a fixed pseudo-epoch, so it is the same set on every run.
* Training order is a fresh permutation per epoch; ranks take interleaved shards of it
  (truncated to equal length, so DDP ranks run the same number of steps). Test shards are
  ``indices[rank::world_size]`` without padding: every test image is seen exactly once.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from stnkit.data.augment import AugmentSpec, apply_augment, sample_augment_params
from stnkit.data.distortions import DISTORTIONS, Distortion, Params
from stnkit.data.gtsrb import GTSRB_CLASS_NAMES, GTSRB_NUM_CLASSES, GtsrbArrays, holdout_tracks, load_gtsrb
from stnkit.data.mnist import load_mnist
from stnkit.data.pixels import to_unit_float

__all__ = [
    "TEST_SEED",
    "BatchDataset",
    "DatasetInfo",
    "DistortedLoader",
    "canonical_digest",
    "class_names",
    "dataset_info",
    "first_test_images",
    "list_datasets",
    "load_source",
    "make_loader",
]

SPLITS = ("train", "val", "test")

# The seed of the canonical test sets. Training runs evaluate on these whatever their own seed, so
# test errors of different runs and machines are comparable.
TEST_SEED = 0


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    Attributes:
        name: registry name.
        num_classes: number of labels.
        in_channels: image channels.
        image_size: (H, W) of the images the loader yields.
        description: one line for humans.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    description: str = ""

    def model_kwargs(self) -> dict[str, Any]:
        """The builder arguments that fit a model to these images (``create_model(name, **them)``).

        Example:
            >>> dataset_info("rts").model_kwargs()
            {'in_channels': 1, 'num_classes': 10, 'image_size': [42, 42]}
        """
        return {
            "in_channels": int(self.in_channels),
            "num_classes": int(self.num_classes),
            "image_size": [int(s) for s in self.image_size],
        }


_INFOS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", 10, 1, (28, 28), "MNIST, undistorted"),
        DatasetInfo("r", 10, 1, (28, 28), "rotated MNIST (+-90 deg)"),
        DatasetInfo("rts", 10, 1, (42, 42), "rotated, scaled, translated MNIST in 42x42"),
        DatasetInfo("p", 10, 1, (28, 28), "projectively distorted MNIST"),
        DatasetInfo("e", 10, 1, (28, 28), "elastically (TPS) distorted MNIST"),
        DatasetInfo("tc", 10, 1, (60, 60), "translated and cluttered MNIST in 60x60"),
        DatasetInfo("mnist-add", 19, 2, (42, 42), "two RTS digits in two channels, label = sum"),
        DatasetInfo("gtsrb", GTSRB_NUM_CLASSES, 3, (32, 32), "GTSRB traffic signs, 32x32 RGB"),
        DatasetInfo(
            "gtsrb48",
            GTSRB_NUM_CLASSES,
            3,
            (48, 48),
            "GTSRB traffic signs, 48x48 RGB from the official archives",
        ),
    )
}

# How each GTSRB dataset reads the data root (stnkit.data.load_gtsrb): 32x32 from the .npz copy (or
# the archives), 48x48 from the archives only, since the 32x32 copy has no detail to give at 48.
_GTSRB_SOURCES: dict[str, tuple[int, str]] = {"gtsrb": (32, "auto"), "gtsrb48": (48, "original")}


def list_datasets() -> list[str]:
    """Names accepted by :func:`make_loader`, in a fixed order.

    Example:
        >>> list_datasets()
        ['mnist', 'r', 'rts', 'p', 'e', 'tc', 'mnist-add', 'gtsrb', 'gtsrb48']
    """
    return list(_INFOS)


def _check_name(name: str) -> str:
    key = name.lower()
    if key not in _INFOS:
        raise ValueError(f"unknown dataset {name!r}; valid: {list_datasets()}")
    return key


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid ones.

    Example:
        >>> dataset_info("rts").image_size
        (42, 42)
    """
    return _INFOS[_check_name(name)]


def class_names(name: str) -> tuple[str, ...]:
    """Human names of a dataset's labels, one per class in label order.

    Digits and sums are their own names; GTSRB's are short sign names
    (:data:`stnkit.data.gtsrb.GTSRB_CLASS_NAMES`).

    Raises:
        ValueError: unknown name; the message lists the valid ones.

    Example:
        >>> class_names("gtsrb")[14]
        'stop'
    """
    info = dataset_info(name)
    if info.name in _GTSRB_SOURCES:
        return GTSRB_CLASS_NAMES
    return tuple(str(k) for k in range(info.num_classes))


def load_source(name: str, split: str, root: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """The undistorted source of a dataset: uint8 images and int64 labels.

    Returns:
        images uint8 Tensor[N, 28, 28] (MNIST-based) or Tensor[N, 3, S, S] (GTSRB, S = 32 or 48),
        and labels int64 Tensor[N] (digit labels for ``mnist-add``; the loader sums the pairs).
    """
    key = _check_name(name)
    if split not in ("train", "test"):
        raise ValueError(f"unknown source split {split!r}; valid: ['train', 'test']")
    if key in _GTSRB_SOURCES:
        gtsrb = _load_gtsrb_source(key, split, root)
        return gtsrb.images, gtsrb.labels
    mnist = load_mnist(root, split=split)
    return mnist.images, mnist.labels


def _load_gtsrb_source(key: str, split: str, root: str | os.PathLike[str] | None) -> GtsrbArrays:
    size, source = _GTSRB_SOURCES[key]
    return load_gtsrb(root, split=split, size=size, source=source)


def _split_source(
    name: str, split: str, root: str | os.PathLike[str] | None, val_size: int
) -> tuple[Tensor, Tensor]:
    """The source images and labels of ``split``, carving ``"val"`` off the end of the training source."""
    if val_size < 0:
        raise ValueError(f"val_size must be >= 0, got {val_size}")
    if split == "test":
        return load_source(name, "test", root)
    if split == "val" and val_size == 0:
        raise ValueError("split 'val' needs val_size > 0 (the number of training images to hold out)")
    if name in _GTSRB_SOURCES:
        return _split_gtsrb(name, split, root, val_size)
    images, labels = load_source(name, "train", root)
    if val_size >= images.shape[0]:
        raise ValueError(f"val_size must be below the {images.shape[0]} training images, got {val_size}")
    keep = images.shape[0] - val_size
    if split == "val":
        return images[keep:], labels[keep:]
    return images[:keep], labels[:keep]


def _split_gtsrb(
    name: str, split: str, root: str | os.PathLike[str] | None, val_size: int
) -> tuple[Tensor, Tensor]:
    """GTSRB's training source, or its validation part of whole tracks (about ``val_size`` images).

    GTSRB's training images come in tracks of 30 pictures of one sign: a split that cuts tracks
    leaks near-duplicates into validation, so the last tracks of each class are held out
    (:func:`stnkit.data.gtsrb.holdout_tracks`).
    """
    train = _load_gtsrb_source(name, "train", root)
    if not val_size:
        return train.images, train.labels
    if val_size >= train.labels.shape[0]:
        raise ValueError(
            f"val_size must be below the {train.labels.shape[0]} training images, got {val_size}"
        )
    held = holdout_tracks(train.labels, train.track_ids, val_size)
    chosen = held if split == "val" else ~held
    return train.images[chosen], train.labels[chosen]


def _derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, the same on every machine and Python run (no ``hash``)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(_derive_seed(*parts))


_TEST_EPOCH = -1  # the pseudo-epoch that fixes the test (and validation) split


class BatchDataset(Dataset[tuple[Tensor, Tensor]]):
    """Map-style dataset whose item ``i`` is batch ``i`` of the current epoch on this rank.

    Use with ``DataLoader(batch_size=None)``; :func:`make_loader` does that for you.

    Args:
        name: a name from :func:`list_datasets`.
        images: uint8 source images, Tensor[N, 28, 28] or Tensor[N, C, H, W].
        labels: int64 Tensor[N].
        split: ``"train"`` (fresh distortions and order each epoch), ``"val"`` or ``"test"`` (fixed).
        batch_size: images per batch.
        seed: base seed of all randomness.
        limit: use only the first ``limit`` source images (clutter and partners still come
            from the whole split, so image ``j`` looks the same with or without ``limit``).
        rank: this process's rank.
        world_size: number of ranks sharing the data.
        shuffle: permute the images each epoch.
        drop_last: drop this rank's last, smaller batch.
        augment: a training jitter applied after the distortion (training split only); its
            parameters are drawn per source image and epoch, like the distortions'.
    """

    def __init__(
        self,
        *,
        name: str,
        images: Tensor,
        labels: Tensor,
        split: str,
        batch_size: int,
        seed: int = 0,
        limit: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: AugmentSpec | None = None,
    ) -> None:
        self.name = _check_name(name)
        if augment is not None and not augment.is_identity and split != "train":
            raise ValueError(f"augment applies to the training split only, got split {split!r}")
        self.augment = augment if augment is not None and not augment.is_identity else None
        self.images, self.labels = images, labels  # the whole split: clutter, partners
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.num_images = images.shape[0] if limit is None else min(limit, images.shape[0])
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch = 0
        # epoch -> params of all images / this rank's order; shared by the copies that
        # DistortedLoader makes per epoch.
        self._params: dict[int, Params] = {}
        self._augment_params: dict[int, Params] = {}
        self._indices: dict[int, Tensor] = {}

    @property
    def distortion(self) -> Distortion | None:
        """The variant's :class:`Distortion` (None for plain MNIST and GTSRB).

        Looked up by name rather than stored, so the dataset pickles (spawned workers).
        """
        return DISTORTIONS.get(self.name)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and distortions the next iteration uses."""
        self.epoch = int(epoch)

    @property
    def _effective_epoch(self) -> int:
        return self.epoch if self.split == "train" else _TEST_EPOCH

    def indices(self) -> Tensor:
        """Tensor[M]: this rank's source indices for the current epoch, in batch order."""
        if self.epoch not in self._indices:
            n = self.num_images
            if self.shuffle:
                generator = _generator(self.seed, self.name, self.split, "order", self.epoch)
                order = torch.randperm(n, generator=generator)
            else:
                order = torch.arange(n)
            self._indices.clear()  # one epoch at a time
            self._indices[self.epoch] = order[: self._span()][self.rank :: self.world_size]
        return self._indices[self.epoch]

    def _span(self) -> int:
        """How many of the (permuted) images the ranks share out."""
        n = self.num_images
        if self.split == "train" and self.world_size > 1:
            # Equal shards so that DDP ranks take the same number of steps.
            return (n // self.world_size) * self.world_size
        return n

    @property
    def num_samples(self) -> int:
        """Images this rank yields per epoch (before ``drop_last``)."""
        return len(range(self.rank, self._span(), self.world_size))

    def __len__(self) -> int:
        count = self.num_samples
        if self.drop_last:
            return count // self.batch_size
        return -(-count // self.batch_size)

    def params(self) -> Params:
        """Distortion parameters of every source image for the current epoch (cached)."""
        if self.distortion is None:
            return {}
        distortion = self.distortion
        return self._epoch_params(self._params, "params", lambda g, n: distortion.sample(n, g, n))

    def augment_params(self) -> Params:
        """Jitter parameters of every source image for the current epoch (cached; empty without augment)."""
        if self.augment is None:
            return {}
        spec = self.augment
        return self._epoch_params(
            self._augment_params, "augment", lambda g, n: sample_augment_params(spec, n, g)
        )

    def _epoch_params(
        self, cache: dict[int, Params], purpose: str, draw: Callable[[torch.Generator, int], Params]
    ) -> Params:
        """``draw(generator, n)`` for the current epoch, from a generator of (seed, dataset, split,
        ``purpose``, epoch), for all n images of the split in image order, so that image j's draw
        depends on (seed, epoch, j) only, not on ``limit``, ranks or batches. Cached in ``cache``."""
        epoch = self._effective_epoch
        if epoch not in cache:
            generator = _generator(self.seed, self.name, self.split, purpose, epoch)
            params = draw(generator, self.images.shape[0])
            for old in [e for e in cache if e < epoch - 1]:
                del cache[old]  # keep memory bounded: the previous epoch at most
            cache[epoch] = params
        return cache[epoch]

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The images and labels of the given source indices (any order, any count).

        Returns:
            images float32 Tensor[B, C, H, W] in [0, 1], labels int64 Tensor[B].
        """
        digits = self.images[index]
        labels = self.labels[index]
        if self.distortion is None:
            images = digits if digits.dim() == 4 else digits[:, None]  # uint8
        else:
            params = {key: value[index] for key, value in self.params().items()}
            images = self.distortion.apply(digits, params, self.images)
            if self.name == "mnist-add":
                labels = labels + self.labels[params["partner"]]
        if self.augment is not None:
            jitter = {key: value[index] for key, value in self.augment_params().items()}
            return apply_augment(images, jitter, self.augment), labels
        if images.dtype == torch.uint8:
            images = to_unit_float(images)
        return images, labels

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range for {len(self)} batches")
        index = self.indices()[i * self.batch_size : (i + 1) * self.batch_size]
        return self.batch(index)


class DistortedLoader:
    """Iterable over ``(images, labels)`` batches of one split; see :func:`make_loader`.

    Each ``iter()`` starts a new ``DataLoader`` on the current epoch and, for the training
    split, then advances the epoch by one: data is fresh every epoch even if :meth:`set_epoch`
    is never called, and ``set_epoch(e)`` before an iteration reproduces epoch ``e`` exactly.
    """

    def __init__(self, dataset: BatchDataset, *, num_workers: int, pin_memory: bool) -> None:
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.info = dataset_info(dataset.name)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration yields."""
        return self.dataset.epoch

    @property
    def batch_size(self) -> int:
        return self.dataset.batch_size

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch (before ``drop_last``)."""
        return self.dataset.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order and distortions for the next iteration."""
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self.dataset)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # A shallow copy pins this iteration's epoch (tensors and the params cache are shared),
        # so advancing the epoch for the next iteration cannot change batches in flight.
        frozen = copy.copy(self.dataset)
        if self.dataset.split == "train":
            self.dataset.set_epoch(self.dataset.epoch + 1)
        loader = DataLoader(
            frozen,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
        return iter(loader)


def make_loader(
    name: str,
    *,
    split: str,
    batch_size: int,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    num_workers: int = 0,
    limit: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool | None = None,
    drop_last: bool | None = None,
    pin_memory: bool = False,
    val_size: int = 0,
    augment: AugmentSpec | None = None,
) -> DistortedLoader:
    """A loader of ``(images, labels)`` batches for a dataset of :func:`list_datasets`.

    Args:
        name: ``mnist``, ``r``, ``rts``, ``p``, ``e``, ``tc``, ``mnist-add``, ``gtsrb`` (32x32) or
            ``gtsrb48`` (48x48, read from the official archives' layout).
        split: ``"train"`` (distorted afresh each epoch), ``"val"`` or ``"test"`` (fixed by ``seed``).
        batch_size: images per batch.
        root: data root; see :func:`stnkit.data.resolve_data_root`.
        seed: base seed; with the epoch it fixes order and distortions.
        num_workers: ``DataLoader`` worker processes (results do not depend on it).
        limit: use only the first ``limit`` source images (tiny runs and tests).
        rank: this process's rank (DDP).
        world_size: number of ranks.
        shuffle: permute each epoch; default True for train, False for test.
        drop_last: drop the last smaller batch; default False.
        pin_memory: pass to ``DataLoader``.
        val_size: hold out the last ``val_size`` images of the training source as a validation
            split: ``"train"`` then uses only the others, ``"val"`` those (distorted once, fixed,
            clutter and partners from the held-out images only). ``"val"`` needs ``val_size > 0``.
            GTSRB holds out whole tracks instead, about ``val_size`` images: the last tracks of
            each class, at least one per class (:func:`stnkit.data.gtsrb.holdout_tracks`).
        augment: a random jitter of the training images (:class:`stnkit.data.AugmentSpec`), drawn
            per image from ``(seed, epoch, image)``; ``None`` or an all-zero spec: none. Only for
            ``"train"``: evaluation splits are never jittered.

    Returns:
        :class:`DistortedLoader`: iterate for images float32 (B, C, H, W) in [0, 1] and labels
        int64 (B,); ``len()`` is batches per epoch; ``set_epoch(e)``.

    Raises:
        ValueError: unknown name or split, bad sizes or ranks.
        DataNotFoundError: the source files are missing (message names the data root).

    Example:
        >>> loader = make_loader("rts", split="test", batch_size=8, limit=16)  # doctest: +SKIP
        >>> images, labels = next(iter(loader))  # doctest: +SKIP
        >>> images.shape, labels.dtype  # doctest: +SKIP
        (torch.Size([8, 1, 42, 42]), torch.int64)
    """
    key = _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if augment is not None and not isinstance(augment, AugmentSpec):
        raise TypeError(f"augment must be an AugmentSpec or None, got {type(augment).__name__}")
    if augment is not None and not augment.is_identity and split != "train":
        raise ValueError(f"augment applies to the training split only, got split {split!r}")
    images, labels = _split_source(key, split, root, val_size)
    dataset = BatchDataset(
        name=key,
        images=images,
        labels=labels,
        split=split,
        batch_size=batch_size,
        seed=seed,
        limit=limit,
        rank=rank,
        world_size=world_size,
        shuffle=split == "train" if shuffle is None else shuffle,
        drop_last=False if drop_last is None else drop_last,
        augment=augment,
    )
    return DistortedLoader(dataset, num_workers=num_workers, pin_memory=pin_memory)


def canonical_digest(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    batch_size: int = 1000,
) -> str:
    """SHA-256 of a dataset's canonical test set: its 8-bit pixels, then its int64 labels.

    The canonical test sets come out bit-identical on every machine (see
    :mod:`stnkit.data.distortions`), so this digest is the same everywhere: compare it with the
    published values (docs/data.md) to check a machine.

    Args:
        name: a name from :func:`list_datasets`.
        root: data root; see :func:`stnkit.data.resolve_data_root`.
        limit: digest only the first ``limit`` test images.
        batch_size: images made at a time (the digest does not depend on it).
    """
    loader = make_loader(name, split="test", batch_size=batch_size, root=root, limit=limit, seed=TEST_SEED)
    pixels, labels = hashlib.sha256(), hashlib.sha256()
    for images, batch_labels in loader:
        # Every image is a multiple of 1/255 in float32, so this recovers its uint8 values exactly.
        pixels.update((images * 255.0).round_().to(torch.uint8).numpy().tobytes())
        labels.update(batch_labels.numpy().tobytes())
    return hashlib.sha256(pixels.digest() + labels.digest()).hexdigest()


def first_test_images(name: str, count: int, *, root: str | os.PathLike[str] | None = None) -> Tensor:
    """The first ``count`` images of a dataset's canonical test set: a fixed batch for pictures.

    The same images on every machine (the canonical test sets are bit-identical), so pictures of
    different models, runs or epochs show the same inputs.

    Args:
        name: a name from :func:`list_datasets`.
        count: how many images, >= 1 (fewer if the test set is smaller).
        root: data root; see :func:`stnkit.data.resolve_data_root`.

    Returns:
        float32 Tensor[count, C, H, W] in [0, 1].

    Example:
        >>> first_test_images("rts", 8).shape  # doctest: +SKIP
        torch.Size([8, 1, 42, 42])
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    loader = make_loader(name, split="test", batch_size=count, root=root, seed=TEST_SEED, limit=count)
    images, _ = next(iter(loader))
    return images[:count]
