"""Writing files atomically with the permissions a plain ``open()`` would give.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask (it is meant for secrets);
renaming it into place would leave pictures and reports readable by their owner only. Here the
temporary file is given ``0o666 & ~umask`` before the rename, as ``open(path, "w")`` would.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text", "current_umask", "default_file_mode", "sha256_file"]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux >= 4.7)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # Elsewhere: set and restore (a brief race with other threads creating files).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write a file through ``write(handle)`` into a temporary file, then rename it over ``path``.

    A reader never sees a half-written file, and a failure leaves the old file (if any) intact.
    The file gets the mode a plain ``open()`` would give (see the module docstring).

    Args:
        path: destination; its folder is created if needed.
        write: called once with a binary file handle open for writing; what it returns is ignored.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the file cannot be written; the message names ``path`` (not the temporary file)
            and why: a folder in its place, a file where its folder should be, no permission, ...
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _cannot_write(path, err) from err
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _cannot_write(path, err) from err
        raise
    return path


def _cannot_write(path: Path, err: OSError) -> OSError:
    """``err`` (same type) with a message about ``path``, not the temporary file it may name."""
    reason = err.strerror or str(err)
    if path.is_dir():
        reason = "it is a folder, not a file"
    else:
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            reason = f"{blocking} is a file, not a folder"
    return type(err)(f"cannot write {path}: {reason}")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Replace ``path`` by ``text`` (UTF-8) with :func:`atomic_write`."""
    data = text.encode("utf-8")

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return atomic_write(path, write)


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
