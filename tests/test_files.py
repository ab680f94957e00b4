"""stnkit.files.atomic_write: all or nothing, with the mode a plain open() would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stnkit.files import atomic_write, atomic_write_text, current_umask, default_file_mode


def test_current_umask_reads_without_changing_it() -> None:
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert current_umask() == 0o027
        assert default_file_mode() == 0o640
    finally:
        os.umask(old)


def test_atomic_write_mode_matches_open(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "sub" / "a.bin", lambda f: f.write(b"abc"))
    finally:
        os.umask(old)
    assert path.read_bytes() == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def fail_half_way(handle) -> None:
        handle.write(b"new, half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, fail_half_way)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_write_text_writes_utf8_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "report.md"
    assert atomic_write_text(path, "first\n") == path
    atomic_write_text(path, "± 0.14 %\n")
    assert path.read_bytes() == "± 0.14 %\n".encode()
    assert [p.name for p in path.parent.iterdir()] == ["report.md"]  # no temporary file left
