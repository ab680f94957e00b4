"""Checkpoints: atomic writes, weights_only loading, clear errors for bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from stnkit.engine import CheckpointError, load_checkpoint, save_checkpoint
from stnkit.engine.checkpoint import FORMAT, VERSION


def _state(value: float = 1.0) -> dict:
    return {
        "model_name": "demo",
        "model_kwargs": {"in_channels": 1, "image_size": [8, 8]},
        "model": {"w": torch.full((3,), value)},
        "epoch": 2,
        "config": {"lr": 0.1},
    }


class Payload:
    """A custom class: weights_only loading must refuse to build it."""


def test_roundtrip_is_weights_only(tmp_path: Path) -> None:
    path = save_checkpoint(_state(), tmp_path / "ck.pt")
    # The file loads with torch's safe loader directly.
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == VERSION
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.ones(3))
    assert state["epoch"] == 2


def test_failed_save_leaves_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "ck.pt")
    before = path.read_bytes()

    def broken_save(obj: object, handle) -> None:  # writes half a file, then dies
        handle.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(2.0), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left


def test_interrupt_during_save_leaves_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "ck.pt")

    def interrupted(obj: object, handle) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(2.0), path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path: Path) -> None:
    path = save_checkpoint(_state(), tmp_path / "ck.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_foreign_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not an stnkit checkpoint"):
        load_checkpoint(path)


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)


def test_plain_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    path.write_bytes(pickle.dumps({"format": FORMAT}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_wrong_version_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    torch.save({"format": FORMAT, "version": 999}, path)
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(path)
    torch.save({"format": FORMAT, "version": VERSION, "model": {}}, path)
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(path)
