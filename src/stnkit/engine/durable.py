"""Durable atomic writes for what the engine keeps: checkpoints, metrics, the run's config.

Built on :func:`stnkit.files.atomic_write` (temporary file in the same folder, renamed over the
destination, mode ``0o666 & ~umask`` as ``open()`` or ``torch.save`` would give); here the file is
also flushed to disk before the rename and the folder after it, so a crash or a power cut at any
moment leaves either the old file or the new one, never a torn or empty one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from stnkit.files import atomic_write

__all__ = ["write_durably", "write_text_durably"]


def write_durably(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(handle)`` atomically and durably.

    Args:
        path: destination; its folder is created if needed.
        write: called once with a binary handle on the temporary file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """

    def write_and_sync(handle: BinaryIO) -> None:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())  # the data is on disk before the rename makes it visible

    written = atomic_write(path, write_and_sync)
    _fsync_dir(written.parent)
    return written


def write_text_durably(path: str | Path, text: str) -> Path:
    """Replace ``path`` by ``text`` (UTF-8) atomically and durably."""
    data = text.encode("utf-8")

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write_durably(path, write)


def _fsync_dir(folder: Path) -> None:
    # Persist the rename itself; not every platform lets a folder be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
