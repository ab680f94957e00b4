"""Shipped pretrained weights: safetensors files whose SHA-256 is checked before they are read.

A pretrained name is ``MODEL.TAG`` (timm's convention), e.g. ``st-cnn-affine.rts``: the registered
model and what it was trained on. Each entry of :data:`PRETRAINED` names a file under
``stnkit/models/weights/`` (package data), its SHA-256, the builder arguments, the dataset, the
recorded test error and how it was made (command, seed, CPU, date). Loading

1. reads the file's bytes and compares their SHA-256 with the entry (a missing, truncated or
   altered file stops here, before anything is parsed);
2. parses those same bytes as safetensors (tensors and a JSON header, never pickle: no code runs);
3. checks that the metadata stored in the file (model, builder arguments, dataset) is the entry's;
4. builds the model from the entry and loads the tensors strictly (every key, every shape).

Files are made from a training run's checkpoint with :func:`save_pretrained` (``stnkit export CKPT
--safetensors OUT`` prints the hash and the entry to paste below). Entries exist only for files that
are shipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from stnkit.files import atomic_write
from stnkit.models.registry import ModelArgumentError, create_model, model_entrypoint

__all__ = [
    "PRETRAINED",
    "WEIGHTS_FORMAT",
    "PretrainedWeights",
    "PretrainedWeightsError",
    "create_pretrained",
    "entry_source",
    "get_pretrained",
    "list_pretrained",
    "load_pretrained_state",
    "save_pretrained",
]

WEIGHTS_FORMAT = "stnkit-weights"
WEIGHTS_VERSION = "1"
# Where shipped files live; read at call time, so tests can point it elsewhere.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class PretrainedWeightsError(ValueError):
    """Pretrained weights are unknown, missing, altered or do not fit their model (one line)."""


@dataclass(frozen=True)
class PretrainedWeights:
    """One shipped weights file and what it is.

    Attributes:
        name: ``MODEL.TAG``, e.g. ``st-cnn-affine.rts``.
        model: the registered model name (the part of ``name`` before the dot).
        model_kwargs: the builder arguments the weights were trained with (JSON values).
        dataset: the dataset name it was trained on (``stnkit.data.list_datasets()``).
        filename: the file under ``stnkit/models/weights/``.
        sha256: hex SHA-256 of the file.
        test_error: test error recorded at the end of training on the whole canonical test set.
        provenance: how it was made: ``command``, ``seed``, ``cpu``, ``date`` (and more if known).
    """

    name: str
    model: str
    model_kwargs: Mapping[str, Any]
    dataset: str
    filename: str
    sha256: str
    test_error: float | None
    provenance: Mapping[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The file's location in the installed package."""
        return WEIGHTS_DIR / self.filename


# Entries only for files that exist in stnkit/models/weights/; `stnkit export CKPT --safetensors`
# writes a file and prints its entry.
PRETRAINED: dict[str, PretrainedWeights] = {}

# ST-CNN (affine) on RTS-MNIST: the main job's recipe (TrainConfig defaults) with MNIST's last 10,000
# training images held out for validation; the `stnkit reproduce table1` cell rts-st-cnn-affine, seed 0
# (results/table1/rts-st-cnn-affine-s0.json). Test error of the final epoch on the canonical test set.
PRETRAINED["st-cnn-affine.rts"] = PretrainedWeights(
    name="st-cnn-affine.rts",
    model="st-cnn-affine",
    model_kwargs={"image_size": [42, 42], "in_channels": 1, "num_classes": 10},
    dataset="rts",
    filename="st-cnn-affine.rts.safetensors",
    sha256="dfd5127c27a04d909765ae082e86c7a5ff670e0ddba79ee674369bc857e2d859",
    test_error=0.0068,
    provenance={
        "command": "stnkit train --dataset rts --model st-cnn-affine --seed 0 --val-size 10000",
        "seed": "0",
        "cpu": "AMD EPYC (2 cores, shared)",
        "date": "2026-12-03",
        "epochs": "20 of 20",
        "train_time_s": "850",
        "processes": "1",
    },
)


# ST-CNN (one affine transformer on the input, per-image contrast normalisation) on GTSRB 32x32 whole
# images: the `stnkit reproduce gtsrb` cell gtsrb-st-cnn, seed 0, trained on all 39,209 training images
# with the recipe gtsrb-aug30 (fixed before any GTSRB run; its selection run gave 0.20% validation
# error on 4,020 images held out as whole tracks). Test error of the final epoch on the official
# 12,630-image test set (results/gtsrb/gtsrb-st-cnn-s0.json): 99.33% accuracy.
PRETRAINED["gtsrb-st-cnn.gtsrb"] = PretrainedWeights(
    name="gtsrb-st-cnn.gtsrb",
    model="gtsrb-st-cnn",
    model_kwargs={"image_size": [32, 32], "in_channels": 3, "num_classes": 43, "standardize": True},
    dataset="gtsrb",
    filename="gtsrb-st-cnn.gtsrb.safetensors",
    sha256="3af9bb52f9dbe8805dea8644a1cfb1c6f4c1a6573cd3b90df6c4662175e44346",
    test_error=0.0066508313539191954,
    provenance={
        "command": (
            "stnkit train --dataset gtsrb --model gtsrb-st-cnn --model-kwargs '{\"standardize\": true}' "
            "--epochs 30 --label-smoothing 0.1 --ema 0.999 "
            "--augment rotate=15,scale=0.1,shift=2,brightness=0.2,contrast=0.2"
        ),
        "seed": "0",
        "cpu": "AMD EPYC (2 cores, shared)",
        "date": "2026-12-03",
        "epochs": "30 of 30",
        "train_time_s": "2182",
        "processes": "1",
    },
)


# ST-CNN with a projective (8-parameter homography) transformer on RTS-MNIST: the `stnkit reproduce
# table1` cell rts-st-cnn-projective, seed 1 (results/table1/rts-st-cnn-projective-s1.json), the default
# recipe with MNIST's last 10,000 training images held out. Final epoch's test error on the canonical set.
PRETRAINED["st-cnn-projective.rts"] = PretrainedWeights(
    name="st-cnn-projective.rts",
    model="st-cnn-projective",
    model_kwargs={"image_size": [42, 42], "in_channels": 1, "num_classes": 10},
    dataset="rts",
    filename="st-cnn-projective.rts.safetensors",
    sha256="583a83a43e8c05cc433476566eb1625e8f876e85830ce9ce0f07a37163f52efe",
    test_error=0.0078,
    provenance={
        "command": "stnkit train --dataset rts --model st-cnn-projective --val-size 10000 --seed 1",
        "seed": "1",
        "cpu": "AMD EPYC (2 cores, shared)",
        "date": "2026-12-06",
        "epochs": "20 of 20",
        "train_time_s": "792",
        "processes": "1",
    },
)

# ST-CNN with a thin-plate-spline transformer (a 4x4 grid of control points) on RTS-MNIST: the cell
# rts-st-cnn-tps, seed 1 (results/table1/rts-st-cnn-tps-s1.json), the same recipe.
PRETRAINED["st-cnn-tps.rts"] = PretrainedWeights(
    name="st-cnn-tps.rts",
    model="st-cnn-tps",
    model_kwargs={"image_size": [42, 42], "in_channels": 1, "num_classes": 10},
    dataset="rts",
    filename="st-cnn-tps.rts.safetensors",
    sha256="a816822adf0f4861dd43944798c71c72a8a7b4b2e853288d3a13f144bae33dc5",
    test_error=0.0078,
    provenance={
        "command": "stnkit train --dataset rts --model st-cnn-tps --val-size 10000 --seed 1",
        "seed": "1",
        "cpu": "AMD EPYC (2 cores)",
        "date": "2026-12-06",
        "epochs": "20 of 20",
        "train_time_s": "524",
        "processes": "1",
    },
)


def list_pretrained(model: str | None = None) -> list[str]:
    """Names of the shipped weights, sorted; ``model`` keeps those of that model.

    Example:
        >>> list_pretrained("no-such-model")
        []
    """
    return sorted(name for name, entry in PRETRAINED.items() if model is None or entry.model == model)


def get_pretrained(name: str) -> PretrainedWeights:
    """The entry of ``name``: a pretrained name, or a model name with exactly one shipped file.

    Raises:
        PretrainedWeightsError: no such weights, or several for a model name (the message lists them).
    """
    if name in PRETRAINED:
        return PRETRAINED[name]
    of_model = list_pretrained(name)
    if len(of_model) == 1:
        return PRETRAINED[of_model[0]]
    if of_model:
        raise PretrainedWeightsError(
            f"model {name!r} has several pretrained weights; choose one of {of_model}"
        )
    shipped = ", ".join(list_pretrained()) or "none is shipped yet"
    raise PretrainedWeightsError(f"no pretrained weights named {name!r}; shipped: {shipped}")


def _json_value(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists), so comparisons ignore the container."""
    return json.loads(json.dumps(value, sort_keys=True))


def _read_header_metadata(blob: bytes, where: str) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors byte string: an 8-byte little-endian length, then JSON."""
    if len(blob) < 8:
        raise PretrainedWeightsError(f"{where}: not a safetensors file ({len(blob)} bytes)")
    (length,) = struct.unpack("<Q", blob[:8])
    try:
        header = json.loads(blob[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PretrainedWeightsError(f"{where}: not a safetensors file (header: {err})") from err
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _check_metadata(entry: PretrainedWeights, metadata: Mapping[str, str], where: str) -> None:
    """Refuse a file whose recorded model, builder arguments or dataset are not the entry's."""
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise PretrainedWeightsError(
            f"{where}: not an stnkit weights file (format={metadata.get('format')!r})"
        )
    if metadata.get("version") != WEIGHTS_VERSION:
        raise PretrainedWeightsError(
            f"{where}: weights file version {metadata.get('version')!r}, this stnkit reads {WEIGHTS_VERSION!r}"
        )
    try:
        stored_kwargs = json.loads(metadata.get("model_kwargs", "null"))
    except json.JSONDecodeError as err:
        raise PretrainedWeightsError(f"{where}: model_kwargs metadata is not JSON ({err})") from err
    expected = {
        "model": (metadata.get("model"), entry.model),
        "model_kwargs": (stored_kwargs, _json_value(dict(entry.model_kwargs))),
        "dataset": (metadata.get("dataset"), entry.dataset),
    }
    for key, (stored, wanted) in expected.items():
        if stored != wanted:
            raise PretrainedWeightsError(
                f"{where}: the file records {key}={stored!r}, the registry entry {entry.name!r} says {wanted!r}"
            )


def load_pretrained_state(entry: PretrainedWeights) -> dict[str, torch.Tensor]:
    """The tensors of ``entry``'s file, after checking its SHA-256 and metadata (never unpickles).

    Raises:
        PretrainedWeightsError: the file is missing, its SHA-256 differs (altered or truncated), it
            is not safetensors, or its metadata names another model, arguments or dataset.
    """
    path = entry.path
    where = f"pretrained weights {entry.name!r} ({path})"
    if not path.is_file():
        raise PretrainedWeightsError(
            f"{where}: file missing; reinstall stnkit (the weights are package data) or check the registry entry"
        )
    blob = path.read_bytes()  # hash and parse the same bytes: nothing can change in between
    digest = hashlib.sha256(blob).hexdigest()
    if digest != entry.sha256:
        raise PretrainedWeightsError(
            f"{where}: SHA-256 is {digest}, expected {entry.sha256}: the file is altered or truncated; "
            "reinstall stnkit"
        )
    _check_metadata(entry, _read_header_metadata(blob, where), where)
    try:
        return load_safetensors(blob)
    except SafetensorError as err:
        raise PretrainedWeightsError(f"{where}: unreadable safetensors ({err})") from err


def create_pretrained(name: str, **kwargs: Any) -> nn.Module:
    """Build the model of pretrained weights ``name`` and load them, in eval mode.

    Args:
        name: a name from :func:`list_pretrained`, or a model name with exactly one of them.
        **kwargs: builder arguments; allowed only if equal to those the weights were trained with.

    Raises:
        PretrainedWeightsError: unknown name, or a file that is missing, altered or does not fit.
        ModelArgumentError: an argument differs from the weights' own.

    Example:
        >>> model = create_pretrained("st-cnn-affine.rts")  # doctest: +SKIP
    """
    entry = get_pretrained(name)
    for key, value in kwargs.items():
        if key not in entry.model_kwargs:
            raise ModelArgumentError(
                f"pretrained weights {entry.name!r} were trained with the builder's default {key}, got {value!r}"
            )
        if _json_value(value) != _json_value(entry.model_kwargs[key]):
            raise ModelArgumentError(
                f"pretrained weights {entry.name!r} were trained with {key}={entry.model_kwargs[key]!r}, "
                f"got {value!r}"
            )
    model_entrypoint(entry.model)  # an unknown model name is the registry's one-line KeyError
    model = create_model(entry.model, **dict(entry.model_kwargs))
    state = load_pretrained_state(entry)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise PretrainedWeightsError(
            f"pretrained weights {entry.name!r} do not fit model {entry.model!r}: {detail}"
        ) from err
    return model.eval()


def save_pretrained(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    model: str,
    model_kwargs: Mapping[str, Any],
    dataset: str,
    extra_metadata: Mapping[str, str] | None = None,
) -> str:
    """Write a model's weights as a safetensors file for shipping; returns its SHA-256.

    The model name, builder arguments (JSON) and dataset go into the file's metadata, so that
    :func:`load_pretrained_state` can refuse a file paired with the wrong registry entry.

    Args:
        state_dict: the model's ``state_dict()`` (tensors only).
        path: the ``.safetensors`` file to write (atomically).
        model: the registered model name.
        model_kwargs: the builder arguments (JSON values).
        dataset: the dataset it was trained on.
        extra_metadata: more ``str -> str`` to record (test error, provenance).

    Raises:
        ModelArgumentError: ``model`` is not registered, or ``state_dict`` holds a non-tensor.
    """
    model_entrypoint(model)
    bad = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise ModelArgumentError(f"a state dict holds tensors only; {bad[:3]} are not")
    # safetensors refuses tensors that share memory: give each its own contiguous copy on the CPU.
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state_dict.items()}
    metadata = {
        **dict(extra_metadata or {}),
        "format": WEIGHTS_FORMAT,
        "version": WEIGHTS_VERSION,
        "model": model,
        "model_kwargs": json.dumps(_json_value(dict(model_kwargs)), sort_keys=True),
        "dataset": dataset,
    }
    blob = save_safetensors(tensors, metadata=metadata)

    def write(handle: BinaryIO) -> None:
        handle.write(blob)

    atomic_write(path, write)
    return hashlib.sha256(blob).hexdigest()


def entry_source(entry: PretrainedWeights) -> str:
    """Python source that adds ``entry`` to :data:`PRETRAINED` (what ``stnkit export`` prints)."""
    fields = {
        "name": entry.name,
        "model": entry.model,
        "model_kwargs": _json_value(dict(entry.model_kwargs)),
        "dataset": entry.dataset,
        "filename": entry.filename,
        "sha256": entry.sha256,
        "test_error": entry.test_error,
        "provenance": dict(entry.provenance),
    }
    body = "".join(f"    {key}={value!r},\n" for key, value in fields.items())
    return f"PRETRAINED[{entry.name!r}] = PretrainedWeights(\n{body})"
