"""Shipped weights end to end (export --safetensors, eval/show --pretrained) and GTSRB at 48x48."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from stnkit import cli
from stnkit.engine import CHECKPOINT_NAME, read_jsonl
from stnkit.models import pretrained
from stnkit.models.pretrained import PretrainedWeights

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# A tiny real run: an ST-CNN on a few hundred MNIST digits, one epoch.
TRAIN_ARGS = [
    "train", "--dataset", "mnist", "--model", "st-cnn-affine", "--epochs", "1", "--limit", "256",
    "--test-limit", "64", "--batch-size", "32", "--snapshot-images", "4", "--no-progress", "--threads", "2",
]  # fmt: skip
NAME = "st-cnn-affine.tiny"


def _data_root() -> str:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    return str(SHARED_DATA)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert cli.main([*TRAIN_ARGS, "--data-root", _data_root(), "--out", str(out)]) == 0
    return out


@pytest.fixture
def exported(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[PretrainedWeights, str]:
    """The run exported into a temporary weights folder and registered from the printed entry."""
    weights = tmp_path / "weights"
    out = weights / "tiny.safetensors"
    argv = [
        "export",
        str(run / CHECKPOINT_NAME),
        "--safetensors",
        str(out),
        "--name",
        NAME,
        "--cpu",
        "Test CPU",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    registry: dict[str, PretrainedWeights] = {}
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(pretrained, "PRETRAINED", registry)
    # What a maintainer pastes: the printed entry, as printed.
    source = printed[printed.index("PRETRAINED[") :]
    exec(source, {"PRETRAINED": registry, "PretrainedWeights": PretrainedWeights})
    return registry[NAME], printed


def _eval_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_export_prints_the_hash_and_a_pasteable_entry(exported, tmp_path: Path) -> None:
    import hashlib

    entry, printed = exported
    digest = hashlib.sha256((tmp_path / "weights" / "tiny.safetensors").read_bytes()).hexdigest()
    assert f"sha256 {digest}" in printed and entry.sha256 == digest
    assert entry.provenance["cpu"] == "Test CPU" and entry.provenance["epochs"] == "1 of 1"
    assert "--limit 256" in entry.provenance["command"]
    assert entry.test_error is None and "--test-limit" in printed  # evaluated on 64 test images only


def test_eval_pretrained_equals_eval_of_the_checkpoint(exported, run: Path, capsys) -> None:
    root = _data_root()
    from_weights = _eval_json(["eval", "--pretrained", NAME, "--limit", "96", "--data-root", root], capsys)
    from_checkpoint = _eval_json(
        ["eval", str(run / CHECKPOINT_NAME), "--limit", "96", "--data-root", root], capsys
    )
    assert from_weights.pop("pretrained") == NAME and from_weights.pop("recorded_test_error") is None
    assert from_weights == from_checkpoint
    assert from_weights["count"] == 96


def test_show_pretrained_draws_the_transformer(exported, tmp_path: Path) -> None:
    out = tmp_path / "pictures"
    argv = ["show", "--pretrained", NAME, "--num", "4", "--out", str(out), "--data-root", _data_root()]
    assert cli.main(argv) == 0
    assert (out / "transformer.png").is_file() and (out / "transformer_frame.png").is_file()


def _one_line_failure(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(argv) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_altered_or_missing_weights_fail_in_one_line(exported, tmp_path: Path, capsys) -> None:
    path = tmp_path / "weights" / "tiny.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    err = _one_line_failure(["eval", "--pretrained", NAME, "--data-root", "no-data"], capsys)
    assert "SHA-256" in err and "altered" in err
    path.unlink()
    err = _one_line_failure(["eval", "--pretrained", NAME, "--data-root", "no-data"], capsys)
    assert "file missing" in err
    err = _one_line_failure(["show", "--pretrained", NAME, "--out", str(tmp_path / "p")], capsys)
    assert "file missing" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--pretrained", "st-cnn-affine.nope"], "no pretrained weights named 'st-cnn-affine.nope'"),
        (["eval"], "give a checkpoint or --pretrained NAME"),
        (["eval", "x.pt", "--pretrained", NAME], "give a checkpoint or --pretrained NAME"),
        (["show", "--pretrained", NAME], "--pretrained needs --out"),
        (["export", "x.pt", "--onnx", "m.onnx", "--safetensors", "m.safetensors"], None),
    ],
)
def test_bad_pretrained_arguments(argv: list[str], message: str | None, capsys) -> None:
    if message is None:  # argparse: --onnx and --safetensors exclude each other
        assert cli.main(argv) == cli.EXIT_USAGE
        assert "not allowed with argument" in capsys.readouterr().err
        return
    assert message in _one_line_failure([*argv, "--data-root", "no-data"], capsys)


def test_export_refuses_a_name_of_another_model(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "w.safetensors"
    argv = ["export", str(run / CHECKPOINT_NAME), "--safetensors", str(out), "--name", "cnn.tiny"]
    assert "MODEL.TAG with MODEL = 'st-cnn-affine'" in _one_line_failure(argv, capsys)
    assert not out.exists()


# --- GTSRB at 48x48 from the official archives' layout -------------------------------------------


def _tiny_gtsrb_writer() -> Any:
    """tests/data/conftest.py's writer of a tiny original-layout GTSRB (not a fixture here)."""
    path = Path(__file__).resolve().parents[1] / "data" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_gtsrb_layout", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.write_tiny_gtsrb


def test_train_and_eval_gtsrb48_on_a_tiny_layout(tmp_path: Path, capsys) -> None:
    _tiny_gtsrb_writer()(tmp_path / "data", classes=3, per_class=4)  # image k of a class = track k
    out = tmp_path / "run"
    argv = [
        "train", "--dataset", "gtsrb48", "--model", "gtsrb-st-cnn", "--epochs", "1", "--batch-size", "4",
        "--val-size", "3", "--snapshot-images", "2", "--no-progress", "--threads", "2",
        "--data-root", str(tmp_path / "data"), "--out", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    capsys.readouterr()
    (record,) = read_jsonl(out / "metrics.jsonl")
    assert "val_error" in record and "test_error" in record
    from stnkit.engine import load_checkpoint

    assert load_checkpoint(out / CHECKPOINT_NAME)["model_kwargs"]["image_size"] == [48, 48]
    metrics = _eval_json(["eval", str(out / CHECKPOINT_NAME)], capsys)
    assert metrics["dataset"] == "gtsrb48" and metrics["count"] == 12
