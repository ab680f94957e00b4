"""Checkpoints that are written atomically and loaded without executing code.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values, so
``torch.load(..., weights_only=True)`` reads it. It is first written to a temporary file in the same
folder, flushed to disk and then renamed over the old one, so a crash at any moment leaves either
the old or the new checkpoint, never a torn one; it gets the mode ``torch.save`` would give it
(``0o666 & ~umask``).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from stnkit.engine.durable import write_durably

__all__ = ["FORMAT", "VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "stnkit-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "model_name", "model_kwargs", "model", "epoch", "config")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, unsafe or not an stnkit checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    ``format`` and ``version`` are added. The previous file at ``path`` stays intact if anything
    fails before the final rename. The file's mode is ``0o666 & ~umask``, as from ``torch.save``.

    Args:
        state: tensors and plain Python values only (what ``weights_only`` loading accepts).
        path: destination file.

    Returns:
        The path written.
    """
    payload = {"format": FORMAT, "version": VERSION, **state}
    return write_durably(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, never executing code.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, holds pickled code, or is not an
            stnkit checkpoint of a version this code reads.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} cannot be loaded with weights_only=True: it is corrupt, or it holds pickled "
            f"code or custom classes (stnkit checkpoints hold neither; a foreign or tampered "
            f"file): {err}"
        ) from err
    except Exception as err:  # torch raises many types for torn zips and garbage
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an stnkit checkpoint (no format={FORMAT!r} marker); "
            "pass a checkpoint.pt written by `stnkit train`"
        )
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')!r}; this stnkit reads {VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} lacks the entries {missing}")
    return state
