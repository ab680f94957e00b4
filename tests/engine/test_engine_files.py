"""What the engine writes (checkpoint, metrics, config) is replaced atomically with open()'s mode."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from stnkit.engine import TrainConfig, load_checkpoint, read_jsonl, save_checkpoint
from stnkit.engine.metrics import truncate_jsonl


def _checkpoint_state(epoch: int) -> dict:
    return {
        "model_name": "demo",
        "model_kwargs": {"image_size": [8, 8]},
        "model": {"w": torch.full((3,), float(epoch))},
        "epoch": epoch,
        "config": {"lr": 0.1},
    }


def _write_checkpoint(path: Path, version: int) -> None:
    save_checkpoint(_checkpoint_state(version), path)


def _read_checkpoint(path: Path) -> int:
    return int(load_checkpoint(path)["epoch"])


def _write_config(path: Path, version: int) -> None:
    TrainConfig(dataset="mnist", model="cnn", epochs=version).save(path)


def _read_config(path: Path) -> int:
    return int(json.loads(path.read_text())["epochs"])


def _write_metrics(path: Path, version: int) -> None:
    # The first version is a log of 9 epochs; later "versions" truncate it to fewer epochs,
    # as a resume from the checkpoint of epoch 9 - version does.
    if not path.exists():
        path.write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(1, 10)))
    truncate_jsonl(path, max_epoch=9 - version)


def _read_metrics(path: Path) -> int:
    return 9 - len(read_jsonl(path))


WRITERS: dict[str, tuple[Callable[[Path, int], None], Callable[[Path], int]]] = {
    "checkpoint": (_write_checkpoint, _read_checkpoint),
    "config": (_write_config, _read_config),
    "metrics": (_write_metrics, _read_metrics),
}


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for one test, restoring the previous one afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize(
    ("mask", "mode"),
    [
        pytest.param(0o022, 0o644, id="umask022"),
        pytest.param(0o077, 0o600, id="umask077"),
        pytest.param(0o002, 0o664, id="umask002"),
    ],
)
def test_mode_follows_umask(tmp_path: Path, umask, writer: str, mask: int, mode: int) -> None:
    write, _ = WRITERS[writer]
    umask(mask)
    path = tmp_path / "file"
    write(path, 1)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    write(path, 2)  # a replaced file gets the mode afresh
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_crash_before_rename_keeps_old_file(tmp_path: Path, monkeypatch, writer: str) -> None:
    write, read = WRITERS[writer]
    path = tmp_path / "file"
    write(path, 1)
    before = path.read_bytes()

    def crash(*args: object) -> None:  # the process dies after writing, before renaming
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write(path, 2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert read(path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # no temporary file left
    write(path, 2)
    assert read(path) == 2


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_data_reaches_disk_before_rename(tmp_path: Path, monkeypatch, writer: str) -> None:
    write, _ = WRITERS[writer]
    path = tmp_path / "file"
    write(path, 1)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write(path, 2)
    assert events == ["fsync-file", "rename", "fsync-dir"]
