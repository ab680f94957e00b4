"""Checkpoints: atomic writes, weights_only loading, clear errors for bad files."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

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


class RunsCodeWhenUnpickled:
    """Unpickling this creates ``marker``: the shape of a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _raises_one_line(path: Path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    return message


def test_missing_file(tmp_path: Path) -> None:
    _raises_one_line(tmp_path / "nope.pt", "not found")


def test_folder(tmp_path: Path) -> None:
    _raises_one_line(tmp_path, "is a folder")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "ck.pt").write_bytes(b"")
    _raises_one_line(tmp_path / "ck.pt", "empty file")


def test_text_file_says_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("epoch 3: loss 0.1\n")  # torch.load's own error on this is "KeyError: 101"
    message = _raises_one_line(path, r"not an stnkit checkpoint \(not a torch zip archive")
    # After the path: pytest's temporary folders are numbered (pytest-101/...), torch's key is not ours.
    said = message.split(str(path), 1)[1]
    assert "b'epoch 3: loss 0." in said and "101" not in said


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    path = save_checkpoint(_state(), tmp_path / "ck.pt")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    _raises_one_line(path, "is truncated or damaged")


def test_damaged_member(tmp_path: Path) -> None:
    # Whole archive, but the tensor data inside is shorter than recorded: torch refuses it.
    path = save_checkpoint(_state(), tmp_path / "ck.pt")
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    data_member = next(name for name in members if name.endswith("/data/0"))
    members[data_member] = members[data_member][:4]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    _raises_one_line(path, "cannot be read as a torch checkpoint")


def test_flipped_bits_inside_a_tensor_are_found(tmp_path: Path) -> None:
    # The archive stays whole and torch would load the flipped weights; the members' CRC-32 do not.
    path = save_checkpoint(_state(), tmp_path / "ck.pt")
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    data = bytearray(path.read_bytes())
    # The local header's name and extra-field lengths (bytes 26-29) say where the member's data starts.
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    assert data[start : start + 4] == torch.tensor([1.0]).numpy().tobytes()  # the first weight
    data[start + 3] ^= 0x01
    path.write_bytes(bytes(data))
    _raises_one_line(path, "is damaged: its member '.*/data/0' fails its CRC-32 check")


def test_zip_that_is_not_torch(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.txt", "hello")
    _raises_one_line(path, "cannot be read as a torch checkpoint")


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    _raises_one_line(path, "not a torch zip archive")


def test_foreign_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    _raises_one_line(path, "not an stnkit checkpoint")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "payload": Payload()}, path)
    message = _raises_one_line(path, "weights_only")
    assert "Payload" in message  # the class torch refused, from its multi-line message


def test_loading_never_runs_code(tmp_path: Path) -> None:
    path, marker = tmp_path / "evil.pt", tmp_path / "code-ran"
    torch.save({**_state(), "format": FORMAT, "version": VERSION, "x": RunsCodeWhenUnpickled(marker)}, path)
    _raises_one_line(path, "weights_only")
    assert not marker.exists()
    # The file does run code under an unsafe load, so the check above can fail.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_plain_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    path.write_bytes(pickle.dumps({"format": FORMAT}))
    _raises_one_line(path, "not a torch zip archive")


def test_wrong_version_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    torch.save({"format": FORMAT, "version": 999}, path)
    _raises_one_line(path, "version")
    torch.save({"format": FORMAT, "version": VERSION, "model": {}}, path)
    _raises_one_line(path, "lacks")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_name", 3),
        ("model_name", ""),
        ("model_kwargs", [("image_size", 8)]),
        ("model_kwargs", {1: 2}),
        ("model", {"w": [1.0, 2.0]}),
        ("model", torch.zeros(3)),
        ("epoch", "2"),
        ("epoch", -1),
        ("epoch", True),
        ("epoch", 2.0),
        ("config", None),
        ("optimizer", [1]),
        ("scheduler", "x"),
        ("metrics", 0.5),
        ("elapsed_s", float("nan")),
        ("elapsed_s", -1.0),
        ("cpu_s", float("inf")),
        ("cpu_s", "12"),
        ("world_size", 0),
        ("world_size", "2"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, field: str, value: object) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint({**_state(), "optimizer": {}, "scheduler": {}, field: value}, path)
    _raises_one_line(path, f"field '{field}' must be")


def test_good_optional_fields_pass(tmp_path: Path) -> None:
    optional = {"optimizer": {"state": {}}, "scheduler": {}, "metrics": {}, "elapsed_s": 3, "world_size": 2}
    state = load_checkpoint(save_checkpoint({**_state(), **optional}, tmp_path / "ck.pt"))
    assert state["world_size"] == 2 and state["elapsed_s"] == 3


class _GpuLike(torch.Tensor):
    """Stands in for a GPU tensor: ``.cpu()`` gives a plain tensor, and a file holding this class
    itself does not load with ``weights_only=True``."""

    def cpu(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.as_subclass(torch.Tensor).clone()


def test_every_tensor_is_saved_on_the_cpu_however_deep(tmp_path: Path) -> None:
    def gpu_like(*values: float) -> torch.Tensor:
        return torch.tensor(values).as_subclass(_GpuLike)

    state = {
        "model": {"w": gpu_like(1.0, 2.0)},
        "optimizer": {"state": {0: {"exp_avg": gpu_like(3.0)}}, "param_groups": [{"params": [0]}]},
        "pair": (gpu_like(4.0), [gpu_like(5.0)]),
    }
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    loaded = torch.load(path, weights_only=True)  # a _GpuLike left anywhere would be refused
    assert type(loaded["model"]["w"]) is torch.Tensor and loaded["model"]["w"].tolist() == [1.0, 2.0]
    assert loaded["optimizer"]["state"][0]["exp_avg"].tolist() == [3.0]
    assert loaded["pair"][0].tolist() == [4.0] and loaded["pair"][1][0].tolist() == [5.0]
