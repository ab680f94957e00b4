"""Shipped pretrained weights: packing a checkpoint, the SHA-256 and metadata checks, no unpickling."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from stnkit.engine import CheckpointError, TrainConfig, save_checkpoint
from stnkit.models import (
    ModelArgumentError,
    PretrainedWeightsError,
    create_model,
    get_pretrained,
    list_pretrained,
    pretrained,
)
from stnkit.models.pretrained import PRETRAINED, WEIGHTS_DIR, PretrainedWeights, entry_source, save_pretrained
from stnkit.weights import pack_checkpoint, train_command

MODEL = "st-fcn-affine"
KWARGS: dict[str, Any] = {"in_channels": 1, "num_classes": 10, "image_size": [28, 28], "hidden": [8]}
CONFIG = TrainConfig(dataset="mnist", model=MODEL, epochs=2, seed=5, lr=0.002, model_kwargs={"hidden": [8]})


def _checkpoint(path: Path, *, config: TrainConfig = CONFIG, **override: Any) -> tuple[Path, torch.nn.Module]:
    """A checkpoint of a small ST-FCN whose weights are random (not the identity's zeros)."""
    model = create_model(MODEL, **KWARGS)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.1)
    state = {
        "model_name": MODEL,
        "model_kwargs": KWARGS,
        "model": model.state_dict(),
        "epoch": 2,
        "config": config.to_dict(),
        "metrics": {"epoch": 2, "test_error": 0.25},
        "elapsed_s": 61.4,
        **override,
    }
    return save_checkpoint(state, path), model.eval()


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, PretrainedWeights]:
    """An empty PRETRAINED whose files live in ``tmp_path/weights`` for the test."""
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "weights")
    entries: dict[str, PretrainedWeights] = {}
    monkeypatch.setattr(pretrained, "PRETRAINED", entries)
    return entries


@pytest.fixture
def shipped(
    registry: dict[str, PretrainedWeights], tmp_path: Path
) -> tuple[PretrainedWeights, torch.nn.Module]:
    """A checkpoint packed into the temporary weights folder and registered; and its model."""
    ckpt, model = _checkpoint(tmp_path / "checkpoint.pt")
    packed = pack_checkpoint(
        ckpt, tmp_path / "weights" / "fcn.safetensors", name=f"{MODEL}.tiny", cpu="Test CPU"
    )
    registry[packed.entry.name] = packed.entry
    return packed.entry, model


def test_pack_records_hash_metadata_and_provenance(shipped, tmp_path: Path) -> None:
    entry, _ = shipped
    path = tmp_path / "weights" / "fcn.safetensors"
    assert entry.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (entry.name, entry.model, entry.dataset, entry.filename) == (
        f"{MODEL}.tiny",
        MODEL,
        "mnist",
        "fcn.safetensors",
    )
    assert entry.test_error == 0.25 and dict(entry.model_kwargs) == KWARGS
    assert entry.provenance["seed"] == "5" and entry.provenance["cpu"] == "Test CPU"
    assert entry.provenance["epochs"] == "2 of 2" and entry.provenance["train_time_s"] == "61"
    assert entry.provenance["command"].startswith("stnkit train --dataset mnist --model st-fcn-affine")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["model"] == MODEL and metadata["dataset"] == "mnist"
    assert metadata["format"] == "stnkit-weights" and '"hidden": [8]' in metadata["model_kwargs"]


def test_pretrained_model_equals_the_checkpoint_model(shipped) -> None:
    entry, model = shipped
    loaded = create_model(entry.name, pretrained=True)
    assert not loaded.training
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # The model name finds its only weights; equal builder arguments are accepted.
    again = create_model(MODEL, pretrained=True, image_size=(28, 28))
    torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)


def test_entry_source_rebuilds_the_entry(shipped) -> None:
    entry, _ = shipped
    namespace: dict[str, Any] = {"PRETRAINED": {}, "PretrainedWeights": PretrainedWeights}
    exec(entry_source(entry), namespace)
    assert namespace["PRETRAINED"][entry.name] == dataclasses.replace(entry, model_kwargs=KWARGS)


def _one_line_error(name: str, match: str, error: type[Exception] = PretrainedWeightsError) -> str:
    with pytest.raises(error, match=match) as info:
        create_model(name, pretrained=True)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("where", ["header", "tensors", "truncated"])
def test_an_altered_file_is_refused_before_reading(shipped, tmp_path: Path, where: str) -> None:
    entry, _ = shipped
    path = tmp_path / "weights" / "fcn.safetensors"
    blob = bytearray(path.read_bytes())
    if where == "truncated":
        blob = blob[:-10]
    else:
        blob[40 if where == "header" else -3] ^= 0x01  # one bit
    path.write_bytes(bytes(blob))
    message = _one_line_error(entry.name, "SHA-256 is [0-9a-f]{64}, expected")
    assert "altered or truncated" in message and str(path) in message


def test_a_missing_file_is_refused(shipped, tmp_path: Path) -> None:
    entry, _ = shipped
    (tmp_path / "weights" / "fcn.safetensors").unlink()
    _one_line_error(entry.name, "file missing; reinstall stnkit")


def test_registry_kwargs_that_differ_from_the_file_are_refused(shipped, registry) -> None:
    entry, _ = shipped
    registry[entry.name] = dataclasses.replace(entry, model_kwargs={**KWARGS, "hidden": [16]})
    _one_line_error(
        entry.name, "the file records model_kwargs=.*'hidden': \\[8\\].*says .*'hidden': \\[16\\]"
    )
    registry[entry.name] = dataclasses.replace(entry, dataset="rts")
    _one_line_error(entry.name, "the file records dataset='mnist'")


def test_caller_kwargs_that_differ_from_the_weights_are_refused(shipped) -> None:
    entry, _ = shipped
    with pytest.raises(ModelArgumentError, match="trained with image_size=\\[28, 28\\], got \\(42, 42\\)"):
        create_model(entry.name, pretrained=True, image_size=(42, 42))
    with pytest.raises(ModelArgumentError, match="trained with the builder's default dropout, got 0.5"):
        create_model(entry.name, pretrained=True, dropout=0.5)


def test_weights_that_do_not_fit_the_model_are_refused(registry, tmp_path: Path) -> None:
    # The metadata says hidden=[8] (matching the entry), the tensors are of a hidden=[16] model.
    other = create_model(MODEL, **{**KWARGS, "hidden": [16]})
    path = tmp_path / "weights" / "odd.safetensors"
    sha = save_pretrained(other.state_dict(), path, model=MODEL, model_kwargs=KWARGS, dataset="mnist")
    registry["st-fcn-affine.odd"] = PretrainedWeights(
        name="st-fcn-affine.odd",
        model=MODEL,
        model_kwargs=KWARGS,
        dataset="mnist",
        filename=path.name,
        sha256=sha,
        test_error=None,
    )
    _one_line_error("st-fcn-affine.odd", "do not fit model 'st-fcn-affine': .*size mismatch")


class _Payload:
    """A pickle that would write a file if unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "code ran"))


def test_a_pickle_is_never_unpickled(registry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "weights" / "evil.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"weights": _Payload(marker)}))
    registry["st-fcn-affine.evil"] = PretrainedWeights(
        name="st-fcn-affine.evil",
        model=MODEL,
        model_kwargs=KWARGS,
        dataset="mnist",
        filename=path.name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),  # even with the right hash
        test_error=None,
    )
    _one_line_error("st-fcn-affine.evil", "not a safetensors file")
    assert not marker.exists()


def test_unknown_and_ambiguous_names(shipped, registry) -> None:
    entry, _ = shipped
    _one_line_error(
        "st-cnn-affine.nope", f"no pretrained weights named 'st-cnn-affine.nope'; shipped: {entry.name}"
    )
    registry[f"{MODEL}.other"] = dataclasses.replace(entry, name=f"{MODEL}.other")
    _one_line_error(MODEL, "several pretrained weights; choose one of")
    assert list_pretrained(MODEL) == [f"{MODEL}.other", f"{MODEL}.tiny"] and list_pretrained("cnn") == []
    registry.clear()
    _one_line_error(MODEL, "shipped: none is shipped yet")


def test_pack_refuses_a_name_of_another_model(tmp_path: Path) -> None:
    ckpt, _ = _checkpoint(tmp_path / "checkpoint.pt")
    for name in ("cnn.tiny", MODEL, f"{MODEL}."):
        with pytest.raises(ValueError, match="MODEL.TAG with MODEL = 'st-fcn-affine'"):
            pack_checkpoint(ckpt, tmp_path / "w.safetensors", name=name)
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize(
    "given, message",
    [
        ({"date": "notadate"}, "date must be YYYY-MM-DD, got 'notadate'"),
        ({"date": "2026-13-01"}, "date must be YYYY-MM-DD, got '2026-13-01'"),
        ({"cpu": "Some CPU\nprovenance: forged"}, "cpu must be a CPU's name on one line"),
        ({"cpu": " "}, "cpu must be a CPU's name on one line"),
    ],
    ids=["not-a-date", "month-13", "two-lines", "blank"],
)
def test_pack_refuses_provenance_that_is_not_what_it_says(
    tmp_path: Path, given: dict[str, str], message: str
) -> None:
    ckpt, _ = _checkpoint(tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=re.escape(message)):
        pack_checkpoint(ckpt, tmp_path / "w.safetensors", **given)
    assert not (tmp_path / "w.safetensors").exists()


def test_pack_refuses_weights_that_no_model_of_their_arguments_takes(tmp_path: Path) -> None:
    ckpt, _ = _checkpoint(tmp_path / "checkpoint.pt", model_kwargs={**KWARGS, "hidden": [7]})
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        pack_checkpoint(ckpt, tmp_path / "w.safetensors")
    assert not (tmp_path / "w.safetensors").exists()


def test_pack_without_a_whole_test_set_records_no_test_error(tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, test_limit=100)
    ckpt, _ = _checkpoint(tmp_path / "checkpoint.pt", config=config, epoch=1)
    packed = pack_checkpoint(ckpt, tmp_path / "w.safetensors")
    assert packed.entry.test_error is None and not packed.finished
    assert packed.entry.name == f"{MODEL}.mnist"  # MODEL.DATASET by default


def test_train_command_gives_back_the_recipe() -> None:
    from stnkit.cli import build_parser
    from stnkit.cli.train import _config_from_args

    config = dataclasses.replace(
        CONFIG, grad_clip=None, deterministic=False, label_smoothing=0.1, val_size=5000, limit=300
    )
    argv = shlex.split(train_command(config))[1:]
    rebuilt, _ = _config_from_args(build_parser().parse_args(argv))
    for name in ("out", "progress"):  # not part of the recipe
        rebuilt = dataclasses.replace(rebuilt, **{name: getattr(config, name)})
    assert rebuilt == config


def test_shipped_files_and_registry_entries_match() -> None:
    """Every file under stnkit/models/weights/ has an entry, every entry a file with its hash."""
    files = {path.name for path in WEIGHTS_DIR.glob("*.safetensors")}
    assert files == {entry.filename for entry in PRETRAINED.values()}
    for name, entry in PRETRAINED.items():
        assert name == entry.name and name.startswith(f"{entry.model}.")
        assert get_pretrained(name) is entry
        create_model(name, pretrained=True)  # hash, metadata and every tensor checked


def test_a_file_of_another_weights_version_is_refused(registry, tmp_path: Path, monkeypatch) -> None:
    model = create_model(MODEL, **KWARGS)
    path = tmp_path / "weights" / "future.safetensors"
    monkeypatch.setattr(pretrained, "WEIGHTS_VERSION", "2")  # written by a later stnkit
    sha = save_pretrained(model.state_dict(), path, model=MODEL, model_kwargs=KWARGS, dataset="mnist")
    monkeypatch.undo()
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(pretrained, "PRETRAINED", registry)
    registry["st-fcn-affine.future"] = PretrainedWeights(
        name="st-fcn-affine.future",
        model=MODEL,
        model_kwargs=KWARGS,
        dataset="mnist",
        filename=path.name,
        sha256=sha,
        test_error=None,
    )
    _one_line_error("st-fcn-affine.future", "weights file version '2', this stnkit reads '1'")


# A shipped file's recorded test error was measured on the machine it trained on; another CPU model
# may flip a prediction or two (docs/training.md), so the check allows 0.1 points (10 of 10,000).
RECORDED_ERROR_TOLERANCE = 0.001


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_weights_give_their_recorded_test_error_on_the_canonical_test_set(
    name: str, shared_data: Path
) -> None:
    from stnkit.data import make_loader
    from stnkit.engine import evaluate

    entry = PRETRAINED[name]
    assert entry.test_error is not None
    if entry.dataset.startswith("gtsrb") and not (shared_data / "gtsrb").is_dir():
        pytest.skip(f"no GTSRB data at {shared_data / 'gtsrb'}")
    loader = make_loader(entry.dataset, split="test", batch_size=500, root=shared_data)
    measured = evaluate(create_model(name, pretrained=True), loader)["error"]
    assert abs(measured - entry.test_error) <= RECORDED_ERROR_TOLERANCE, (measured, entry.test_error)
