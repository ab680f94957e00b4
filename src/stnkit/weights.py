"""A training run's checkpoint packed as shipped pretrained weights (``stnkit export --safetensors``).

The checkpoint's model weights go into a safetensors file (see :mod:`stnkit.models.pretrained`);
its recipe, seed, test error and time become the registry entry's provenance. The entry is printed
for a person to review and paste into ``PRETRAINED``: the CPU and the date default to this machine
and the checkpoint file's time, which are right only when packing where the run trained.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stnkit.engine import TrainConfig
from stnkit.machine import cpu_model
from stnkit.models.pretrained import PretrainedWeights, save_pretrained
from stnkit.runs import load_run

__all__ = ["PackedWeights", "pack_checkpoint", "train_command"]

# Config fields that do not change the trained weights, left out of the recorded command.
_NOT_RECIPE = {"out", "progress", "data_root", "num_workers", "threads", "snapshot_images", "eval_every"}


@dataclass(frozen=True)
class PackedWeights:
    """What :func:`pack_checkpoint` wrote: the file and its registry entry.

    Attributes:
        path: the safetensors file.
        entry: the :class:`PretrainedWeights` to add to ``PRETRAINED`` (its ``filename`` is the
            file's name, to be placed under ``stnkit/models/weights/``).
        finished: whether the checkpoint is the run's last epoch.
    """

    path: Path
    entry: PretrainedWeights
    finished: bool


def train_command(config: TrainConfig) -> str:
    """The ``stnkit train`` line that reproduces ``config``'s weights (flags that differ from defaults).

    Example:
        >>> train_command(TrainConfig(dataset="gtsrb", model="gtsrb-st-cnn", epochs=30, seed=2))
        'stnkit train --dataset gtsrb --model gtsrb-st-cnn --epochs 30 --seed 2'
    """
    default = TrainConfig(dataset=config.dataset, model=config.model)
    flags = ["--dataset", config.dataset, "--model", config.model]  # always named: no default
    for item in dataclasses.fields(TrainConfig):
        value = getattr(config, item.name)
        if item.name in _NOT_RECIPE or value == getattr(default, item.name):
            continue
        flag = "--" + item.name.replace("_", "-")
        if item.name == "model_kwargs":
            flags += [flag, shlex.quote(json.dumps(value, sort_keys=True))]
        elif item.name == "deterministic":
            flags.append("--nondeterministic")
        elif isinstance(value, bool):
            flags.append(flag)  # compile, channels_last: store_true flags
        else:
            flags += [flag, str(0 if value is None else value)]  # grad_clip None is --grad-clip 0
    return " ".join(["stnkit train", *flags])


def pack_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    cpu: str | None = None,
    date: str | None = None,
) -> PackedWeights:
    """Write a checkpoint's model weights as a safetensors file and make its registry entry.

    Args:
        checkpoint: a ``checkpoint.pt`` written by ``stnkit train``.
        out: the ``.safetensors`` file to write.
        name: the pretrained name, ``MODEL.TAG`` (default ``MODEL.DATASET``).
        cpu: the CPU it trained on (default: this machine's, :func:`stnkit.machine.cpu_model`).
        date: when it trained (default: the checkpoint file's modification date, UTC).

    Returns:
        :class:`PackedWeights`; the entry's ``test_error`` is the checkpoint's last test error on
        the whole test set, or None if the run evaluated a subset (``--test-limit``) or none.

    Raises:
        CheckpointError: the checkpoint cannot be read, its config is not a TrainConfig, or its
            model cannot be built from its arguments or take its weights (:func:`stnkit.runs.load_run`).
        ValueError: ``name`` is not ``MODEL.TAG`` of the checkpoint's model, ``date`` is not a
            ``YYYY-MM-DD`` date, or ``cpu`` is empty or spans lines.
    """
    if date is not None:
        try:
            date = datetime.strptime(date, "%Y-%m-%d").date().isoformat()
        except ValueError as err:
            raise ValueError(f"date must be YYYY-MM-DD, got {date!r}") from err
    if cpu is not None and (not cpu.strip() or "\n" in cpu or "\r" in cpu):
        raise ValueError(f"cpu must be a CPU's name on one line, got {cpu!r}")
    checkpoint = Path(checkpoint)
    # Built and loaded, not only read: weights that no model of their arguments takes are not shipped.
    _, state, config = load_run(checkpoint)
    model = state["model_name"]
    name = name or f"{model}.{config.dataset}"
    tag = name.removeprefix(f"{model}.")
    if tag == name or not tag:
        raise ValueError(f"a pretrained name is MODEL.TAG with MODEL = {model!r}, got {name!r}")
    metrics: dict[str, Any] = state.get("metrics") or {}
    test_error = metrics.get("test_error") if config.test_limit is None else None
    mtime = checkpoint.stat().st_mtime
    provenance = {
        "command": train_command(config),
        "seed": str(config.seed),
        "cpu": cpu or cpu_model(),
        "date": date or datetime.fromtimestamp(mtime, tz=timezone.utc).date().isoformat(),
        "epochs": f"{state['epoch']} of {config.epochs}",
        "train_time_s": f"{float(state.get('elapsed_s', 0.0)):.0f}",
        "processes": str(state.get("world_size", 1)),
    }
    metadata = {
        "name": name,
        "test_error": json.dumps(test_error),
        "provenance": json.dumps(provenance, sort_keys=True),
    }
    sha256 = save_pretrained(
        state["model"],
        out,
        model=model,
        model_kwargs=state["model_kwargs"],
        dataset=config.dataset,
        extra_metadata=metadata,
    )
    entry = PretrainedWeights(
        name=name,
        model=model,
        model_kwargs=state["model_kwargs"],
        dataset=config.dataset,
        filename=Path(out).name,
        sha256=sha256,
        test_error=None if test_error is None else float(test_error),
        provenance=provenance,
    )
    return PackedWeights(path=Path(out), entry=entry, finished=state["epoch"] >= config.epochs)
