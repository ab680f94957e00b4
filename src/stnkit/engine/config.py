"""The training recipe as one typed dataclass, plus presets that replace a few fields.

The dataset and the model are always named by the caller (the engine names no dataset); the other
defaults are the main job's recipe (``stnkit train`` without flags), tuned to reach its best test error
within about 15 minutes of training on a 2-core CPU (see docs/training.md for why each value).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stnkit.engine.device import check_device_name
from stnkit.engine.durable import write_text_durably
from stnkit.geometry.checks import short_repr
from stnkit.numerics import NUMERICS

__all__ = ["MAX_SNAPSHOT_IMAGES", "TrainConfig", "config_from_dict", "paper_config"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "constant")
# Images drawn per epoch: 8 a row in the GIF, one a row in transformer.png (190 px each); more would
# make pictures past what PIL and matplotlib write (65,535 px).
MAX_SNAPSHOT_IMAGES = 64


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved as ``config.json`` in every run folder."""

    # what to train
    dataset: str  # a name the data layer knows; the engine only records it
    model: str  # a registered model name
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra builder arguments
    epochs: int = 20  # ~31 s/epoch for ST-CNN on RTS on 2 quiet cores: ~11 of the 15 minutes
    batch_size: int = 128  # small enough for many updates per epoch, large enough for BLAS
    # optimiser: Adam converges far faster than the paper's SGD at our short budget
    optimizer: str = "adam"
    lr: float = 4e-3  # peak of the schedule; 3-epoch RTS runs: 2e-3 1.53%, 4e-3 1.36%, 8e-3 1.27%
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    loc_lr_mult: float = 1.0  # 0.1 measured worse at our budget (2.8% vs 1.5% after 3 epochs)
    schedule: str = "onecycle"  # warm-up then cosine decay to ~0, stepped per batch
    warmup_fraction: float = 0.15  # share of all steps spent warming up (onecycle/cosine)
    step_every: int = 0  # "step" schedule: divide lr by 10 every this many epochs (0: epochs/3)
    grad_clip: float | None = 5.0  # max global grad norm; None disables clipping
    label_smoothing: float = 0.0
    # decay of an exponential moving average of the weights (e.g. 0.999), which is then what is
    # evaluated, saved as the checkpoint's "model" and exported; None: off (stnkit.engine.ModelEma)
    ema: float | None = None
    # data
    data_root: str | None = None  # None: the data module's resolution order
    limit: int | None = None  # use only this many training images (quick runs, tests)
    test_limit: int | None = None  # evaluate on only this many test images
    val_size: int = 0  # hold out this many training images as a validation split (0: none)
    num_workers: int = 0
    # training-split jitter in stnkit.data.parse_augment's canonical string form, e.g.
    # "rotate=15,scale=0.1,shift=2"; None: no augmentation. The engine only stores it: the data
    # layer's training loader applies it.
    augment: str | None = None
    # reproducibility and speed
    seed: int = 0
    deterministic: bool = True  # torch.use_deterministic_algorithms on CPU
    threads: int | None = None  # torch.set_num_threads; None leaves torch's choice
    # "native": torch's fastest kernels for this CPU; "portable": kernels capped at AVX2 and MKL's
    # reproducible branch (stnkit.numerics), fewer CPU-dependent code paths at some cost in speed
    numerics: str = "native"
    channels_last: bool = False  # measured no faster for these small nets on CPU
    compile: bool = False  # torch.compile the model (first epoch pays the compile time)
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"; multi-process (DDP) runs stay on the CPU
    # output
    out: str = "runs/train"
    progress: bool = True  # tqdm progress bar (rank 0 only)
    eval_every: int = 1  # evaluate on the test split every this many epochs (and at the end)
    snapshot_images: int = 16  # fixed test images whose transformer output is drawn per epoch

    def __post_init__(self) -> None:
        for name in ("out", "data_root"):  # folders may be given as paths; the config stores text (JSON)
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        problem = _first_type_problem(self)  # first: the range checks below compare numbers
        if problem:
            raise ValueError(problem)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("epochs", "batch_size", "eval_every"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not self.loc_lr_mult >= 0:
            raise ValueError(f"loc_lr_mult must be >= 0, got {self.loc_lr_mult}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 (or None), got {self.grad_clip}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema must be in (0, 1) (or None), got {self.ema}")
        check_device_name(self.device)
        if self.numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, got {self.numerics!r}")
        if self.val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {self.val_size}")
        for name in ("limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0 <= self.seed < 2**32:  # numpy's seeds are 32-bit
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")
        if not 1 <= self.snapshot_images <= MAX_SNAPSHOT_IMAGES:
            raise ValueError(
                f"snapshot_images must be in [1, {MAX_SNAPSHOT_IMAGES}], got {self.snapshot_images}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the config as indented JSON, atomically (a crash leaves the old file whole)."""
        write_text_durably(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def _first_type_problem(config: TrainConfig) -> str | None:
    """What is wrong with the first field whose value is not of its declared type, or None.

    A config read back from a checkpoint or a file may hold anything JSON can; an int passes for a
    float, a bool never for a number.
    """
    hints = _field_types()
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        hint = hints[spec.name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if not any(_is_a(value, typing.get_origin(option) or option) for option in options):
            expected = " or ".join(
                "None" if o is type(None) else (typing.get_origin(o) or o).__name__ for o in options
            )
            return f"{spec.name} must be {expected}, got {type(value).__name__} {short_repr(value)}"
    return None


@functools.cache  # the annotations are text (postponed): resolving them was most of the check's cost
def _field_types() -> dict[str, Any]:
    """TrainConfig's declared field types, resolved once."""
    return typing.get_type_hints(TrainConfig)


def _is_a(value: Any, kind: type) -> bool:
    """``isinstance`` as a config means it: an int is a float too, a bool is neither."""
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a config from :meth:`TrainConfig.to_dict`, rejecting unknown keys.

    Raises:
        ValueError: a key is not a TrainConfig field, ``dataset`` or ``model`` is missing, or a value
            is out of range.
    """
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys: {unknown}")
    missing = [name for name in ("dataset", "model") if name not in values]
    if missing:
        raise ValueError(f"config lacks the keys {missing} (no default: name the dataset and model)")
    return TrainConfig(**values)


def paper_config(dataset: str, model: str, **overrides: Any) -> TrainConfig:
    """The paper's optimisation recipe for ``model`` on ``dataset``: SGD at 0.01, divided by 10 every
    third of training.

    The paper trains 150k iterations of batch 256; pass ``epochs`` to choose the length.
    """
    base = TrainConfig(
        dataset=dataset,
        model=model,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        schedule="step",
        batch_size=256,
        loc_lr_mult=1.0,
    )
    return dataclasses.replace(base, **overrides)
