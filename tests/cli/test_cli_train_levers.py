"""``stnkit train`` recipe levers end to end on a few real MNIST images: --augment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stnkit import cli, data

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TINY = [
    "train", "--dataset", "mnist", "--model", "cnn", "--epochs", "1", "--limit", "64",
    "--test-limit", "32", "--val-size", "100", "--batch-size", "32", "--no-progress", "--threads", "2",
]  # fmt: skip


def _root() -> str:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    return str(SHARED_DATA)


def test_augment_reaches_the_training_loader_only(tmp_path: Path, monkeypatch) -> None:
    calls: list[tuple[str, Any]] = []
    make_loader = data.make_loader

    def spy(name: str, **kwargs: Any) -> data.DistortedLoader:
        calls.append((kwargs["split"], kwargs.get("augment")))
        return make_loader(name, **kwargs)

    monkeypatch.setattr(data, "make_loader", spy)
    out = tmp_path / "run"
    argv = [*TINY, "--augment", "shift=2, rotate=10", "--data-root", _root(), "--out", str(out)]
    assert cli.main(argv) == 0
    expected = data.AugmentSpec(rotate=10, shift=2)
    assert ("train", expected) in calls
    assert all(augment is None for split, augment in calls if split != "train")
    assert {split for split, _ in calls} == {"train", "val", "test"}
    # Recorded in the canonical form, so that --resume and the report see the same recipe.
    assert json.loads((out / "config.json").read_text())["augment"] == "rotate=10,shift=2"


def test_resume_refuses_another_augment(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    root = _root()
    assert cli.main([*TINY, "--augment", "gtsrb", "--data-root", root, "--out", str(out)]) == 0
    recorded = json.loads((out / "config.json").read_text())["augment"]
    assert data.parse_augment(recorded) == data.parse_augment("gtsrb")
    capsys.readouterr()
    resumed = [*TINY, "--augment", "shift=1", "--data-root", root, "--out", str(out), "--resume"]
    assert cli.main(resumed) == 1
    assert "augment" in capsys.readouterr().err


def test_no_augment_by_default(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli.main([*TINY, "--augment", "none", "--data-root", _root(), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["augment"] is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [("rotate=x", "rotate must be a number"), ("tilt=1", "unknown key 'tilt'"), ("shift=-2", ">= 0")],
)
def test_bad_augment_is_a_usage_error(spec: str, message: str, capsys) -> None:
    assert cli.main(["train", "--augment", spec]) == 2
    assert message in capsys.readouterr().err


def test_exported_train_command_carries_the_augment() -> None:
    from stnkit.cli import build_parser
    from stnkit.engine import TrainConfig
    from stnkit.weights import train_command

    config = TrainConfig(
        dataset="gtsrb", model="gtsrb-st-cnn", augment=data.parse_augment("gtsrb").to_string()
    )
    line = train_command(config)
    assert "--augment rotate=15,scale=0.1,shift=2,brightness=0.2,contrast=0.2" in line
    args = build_parser().parse_args(line.split()[1:])
    assert args.augment == config.augment
