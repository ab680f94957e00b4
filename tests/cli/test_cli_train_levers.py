"""``stnkit train`` recipe levers end to end on a few real MNIST images: --augment, --ema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stnkit import cli, data
from stnkit.engine import CHECKPOINT_NAME, evaluate, load_checkpoint
from stnkit.models import create_model

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
    for other in ("none", "shift=1"):  # an explicit "none" is another recipe, not "not given"
        resumed = [*TINY, "--augment", other, "--data-root", root, "--out", str(out), "--resume"]
        assert cli.main(resumed) == cli.EXIT_ERROR
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


def test_eval_of_an_ema_run_uses_the_averaged_weights(tmp_path: Path, capsys) -> None:
    out, root = tmp_path / "run", _root()
    argv = [*TINY, "--epochs", "2", "--ema", "0.9", "--data-root", root, "--out", str(out)]
    assert cli.main(argv) == 0
    state = load_checkpoint(out / CHECKPOINT_NAME)
    assert json.loads((out / "config.json").read_text())["ema"] == 0.9
    assert state["ema"]["updates"] == 2 * 2  # 64 images in batches of 32, two epochs
    capsys.readouterr()
    assert cli.main(["eval", str(out / CHECKPOINT_NAME), "--limit", "64", "--data-root", root]) == 0
    printed = json.loads(capsys.readouterr().out)
    loader = data.make_loader("mnist", split="test", batch_size=64, root=root, limit=64)
    losses = {}
    for key in ("model", "train_model"):
        model = create_model(state["model_name"], **state["model_kwargs"])
        model.load_state_dict(state[key])
        losses[key] = evaluate(model, loader)["loss"]
    assert printed["loss"] == pytest.approx(losses["model"], rel=1e-6)
    assert losses["train_model"] != pytest.approx(losses["model"], rel=1e-6)
    # Resuming keeps the average; another decay is refused.
    capsys.readouterr()
    again = [*TINY, "--epochs", "2", "--ema", "0.99", "--data-root", root, "--out", str(out), "--resume"]
    assert cli.main(again) == 1
    assert "ema" in capsys.readouterr().err


@pytest.mark.parametrize("decay", ["0", "1", "1.5", "x"])
def test_bad_ema_is_a_usage_error(decay: str, capsys) -> None:
    assert cli.main(["train", "--ema", decay]) == 2
    assert "--ema" in capsys.readouterr().err
