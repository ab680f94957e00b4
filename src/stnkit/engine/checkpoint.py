"""Checkpoints that are written atomically and loaded without executing code.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values, so
``torch.load(..., weights_only=True)`` reads it. It is first written to a temporary file in the same
folder, flushed to disk and then renamed over the old one, so a crash at any moment leaves either
the old or the new checkpoint, never a torn one; it gets the mode ``torch.save`` would give it
(``0o666 & ~umask``).
"""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from stnkit.engine.durable import write_durably
from stnkit.geometry.checks import short_repr

__all__ = ["FORMAT", "VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "stnkit-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "model_name", "model_kwargs", "model", "epoch", "config")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, unsafe or not an stnkit checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    ``format`` and ``version`` are added. Tensors are saved on the CPU, so a checkpoint written by a
    run on a GPU loads anywhere, with plain ``torch.load`` too. The previous file at ``path`` stays
    intact if anything fails before the final rename. The file's mode is ``0o666 & ~umask``, as
    from ``torch.save``.

    Args:
        state: tensors and plain Python values only (what ``weights_only`` loading accepts).
        path: destination file.

    Returns:
        The path written.
    """
    payload = {"format": FORMAT, "version": VERSION, **_on_cpu(state)}
    return write_durably(path, lambda handle: torch.save(payload, handle))


def _on_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (in dicts, lists and tuples) on the CPU; CPU tensors as they are."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_on_cpu(item) for item in value]
    if type(value) is tuple:  # plain tuples only: a named tuple's constructor takes fields
        return tuple(_on_cpu(item) for item in value)
    return value


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, never executing code.

    The file is read with ``torch.load(..., weights_only=True)``, and the fields a caller uses are
    checked: ``model_name`` a non-empty str, ``model_kwargs`` and ``config`` dicts with str keys,
    ``model`` a dict of tensors, ``epoch`` an int >= 0; ``optimizer``, ``scheduler`` and
    ``metrics`` dicts, ``elapsed_s`` and ``cpu_s`` numbers >= 0, ``world_size`` an int >= 1, ``train_model`` a
    dict of tensors and ``ema`` a dict where present.

    Under a weight average (``TrainConfig.ema``), ``model`` holds the averaged weights (the ones
    to evaluate and ship) and ``train_model`` the trained ones (to resume from).

    Raises:
        CheckpointError: the file is missing, empty, truncated or corrupt, is not a torch zip
            archive, holds pickled code, is not an stnkit checkpoint of a version this code reads,
            or has a field of the wrong type (the message names it). Always one line.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file (pass its checkpoint.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    _check_zip_archive(path)
    state = _load_weights_only(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an stnkit checkpoint (a torch file without the format={FORMAT!r} "
            "marker); pass a checkpoint.pt written by `stnkit train`"
        )
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')!r}; this stnkit reads {VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} lacks the entries {missing}")
    _check_fields(state, path)
    return state


ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (since torch 1.6)


def _check_zip_archive(path: Path) -> None:
    """Refuse, with a message saying what the file is, anything but a whole zip archive."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        raise CheckpointError(f"{path} is an empty file, not an stnkit checkpoint")
    if not head.startswith(ZIP_MAGIC):
        raise CheckpointError(
            f"{path} is not an stnkit checkpoint (not a torch zip archive: another kind of file, "
            f"or a corrupt one; it starts with {head!r}); pass a checkpoint.pt written by "
            "`stnkit train`"
        )
    if not zipfile.is_zipfile(path):  # the central directory sits at the end of the file
        raise CheckpointError(
            f"{path} is truncated or damaged: it starts like a torch zip archive but its end "
            f"(the zip's central directory) is missing or broken ({path.stat().st_size} bytes); "
            "an interrupted copy?"
        )
    # torch's reader does not check the members' CRC-32s, so flipped bits inside a tensor would load
    # as other weights; reading every member once checks them (a few MB for these models).
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as err:  # zipfile raises many kinds (BadZipFile, NotImplementedError, ...)
        raise CheckpointError(f"{path} is damaged: {type(err).__name__}: {_first_line(err)}") from err
    if damaged is not None:
        raise CheckpointError(
            f"{path} is damaged: its member {damaged!r} fails its CRC-32 check (or it was written "
            "with torch's CRC-32 turned off, torch.serialization.set_crc32_options(False))"
        )


def _load_weights_only(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} cannot be loaded with weights_only=True ({_unpickler_reason(err)}): it holds "
            "pickled code or custom classes, which stnkit checkpoints never do (a foreign or "
            "tampered file)"
        ) from err
    except Exception as err:  # torch raises many types for damaged archives
        raise CheckpointError(
            f"{path} is a zip archive but cannot be read as a torch checkpoint (corrupt, or "
            f"not written by torch.save): {_first_line(err)}"
        ) from err


def _unpickler_reason(err: Exception) -> str:
    # torch's message spans many lines; the reason follows "WeightsUnpickler error:".
    text = str(err)
    _, marker, rest = text.partition("WeightsUnpickler error:")
    reason = _first_line(rest if marker else text)
    return reason.split(". Please use")[0].rstrip(".")


def _first_line(err: object) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _check_fields(state: dict[str, Any], path: Path) -> None:
    """Raise CheckpointError naming the first field whose type or value is not what callers use."""
    checks: list[tuple[str, bool, str]] = [
        ("model_name", _is_nonempty_str(state["model_name"]), "a non-empty str"),
        ("model_kwargs", _is_str_keyed_dict(state["model_kwargs"]), "a dict with str keys"),
        ("model", _is_tensor_dict(state["model"]), "a dict of str -> tensor (a state_dict)"),
        ("epoch", _is_int(state["epoch"]) and state["epoch"] >= 0, "an int >= 0"),
        ("config", _is_str_keyed_dict(state["config"]), "a dict with str keys"),
    ]
    optional: dict[str, tuple[Any, str]] = {
        "optimizer": (_is_str_keyed_dict, "a dict with str keys (an optimizer state_dict)"),
        "scheduler": (_is_str_keyed_dict, "a dict with str keys (a scheduler state_dict)"),
        "metrics": (_is_str_keyed_dict, "a dict with str keys"),
        "elapsed_s": (_is_seconds, "a finite number >= 0"),
        "cpu_s": (_is_seconds, "a finite number >= 0"),
        "world_size": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
        "train_model": (_is_tensor_dict, "a dict of str -> tensor (the trained weights under EMA)"),
        "ema": (_is_str_keyed_dict, "a dict with str keys (decay, updates)"),
    }
    for name, (is_valid, expected) in optional.items():
        if name in state:
            checks.append((name, bool(is_valid(state[name])), expected))
    for name, valid, expected in checks:
        if not valid:
            raise CheckpointError(f"{path}: field {name!r} must be {expected}, got {_describe(state[name])}")
    # Weights that are not finite would fail later, deep in a forward pass, without naming the file
    # (and a resume would read as a divergence of the new run).
    for name in ("model", "train_model"):
        for key, tensor in state.get(name, {}).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise CheckpointError(f"{path}: weight {key!r} of {name!r} has {bad} non-finite value(s)")
    # The recipe's names that eval, show, export and resume look up.
    for key in ("dataset", "model"):
        if key in state["config"] and not _is_nonempty_str(state["config"][key]):
            value = _describe(state["config"][key])
            raise CheckpointError(
                f"{path}: field 'config' must name its {key} (a non-empty str), got {value}"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_str_keyed_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


def _is_tensor_dict(value: Any) -> bool:
    return _is_str_keyed_dict(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _is_seconds(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value) and value >= 0


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {short_repr(value)}"
