"""The command line end to end on real MNIST: train, eval, show, export, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stnkit import cli
from stnkit.engine import CHECKPOINT_NAME, load_checkpoint, read_jsonl
from stnkit.engine import loop as engine_loop
from stnkit.export import onnx_max_abs_diff
from stnkit.runs import load_run

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# A few hundred real MNIST images, small batches so that a few epochs make many steps.
TRAIN_ARGS = [
    "train", "--dataset", "mnist", "--model", "st-cnn-affine", "--epochs", "3",
    "--limit", "384", "--test-limit", "128", "--batch-size", "32", "--lr", "0.003",
    "--snapshot-images", "8", "--no-progress", "--threads", "2",
]  # fmt: skip


def _needs_data() -> str:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    return str(SHARED_DATA)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny real training run shared by the tests of this module."""
    root = _needs_data()
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert cli.main([*TRAIN_ARGS, "--data-root", root, "--out", str(out)]) == 0
    return out


def test_training_on_real_mnist_lowers_the_loss(run: Path) -> None:
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < 0.8 * records[0]["train_loss"]
    assert records[-1]["test_error"] < 0.5
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "st-cnn-affine" and config["limit"] == 384
    assert load_checkpoint(run / CHECKPOINT_NAME)["epoch"] == 3


def test_run_folder_has_pictures_and_a_report(run: Path) -> None:
    from PIL import Image

    for name in ("curves.png", "transformer.png", "transformer.gif", "report.md", "report.html"):
        assert (run / name).is_file(), name
    with Image.open(run / "transformer.gif") as gif:
        assert gif.n_frames == 4  # the identity at epoch 0, then one per epoch
    report = (run / "report.md").read_text()
    linked = [part.split(")")[0] for part in report.split("](")[1:]]
    assert {"curves.png", "transformer.png", "transformer.gif"} <= set(linked)
    assert all((run / name).is_file() for name in linked)


def test_eval_prints_metrics(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(run / CHECKPOINT_NAME)
    assert cli.main(["eval", ckpt, "--limit", "64", "--data-root", _needs_data()]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["count"] == 64 and 0 <= metrics["error"] <= 1


def test_eval_refuses_a_dataset_of_another_shape(run: Path, capsys) -> None:
    ckpt = str(run / CHECKPOINT_NAME)
    assert cli.main(["eval", ckpt, "--dataset", "rts", "--data-root", _needs_data()]) == 1
    assert "image_size" in capsys.readouterr().err


def test_show_writes_pictures(run: Path, tmp_path: Path) -> None:
    ckpt = str(run / CHECKPOINT_NAME)
    args = ["show", ckpt, "--num", "4", "--out", str(tmp_path), "--data-root", _needs_data()]
    assert cli.main(args) == 0
    assert (tmp_path / "transformer.png").stat().st_size > 1000
    assert (tmp_path / "transformer_frame.png").is_file()


def test_export_matches_onnxruntime(run: Path, tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "model.onnx"
    assert cli.main(["export", str(run / CHECKPOINT_NAME), "--onnx", str(path)]) == 0
    proto = onnx.load(str(path))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 16
    model, _, _ = load_run(str(run / CHECKPOINT_NAME))
    inputs = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    assert onnx_max_abs_diff(model, path, inputs) <= 1e-4
    # The trained transformer is no longer the identity, so the parity covers a real warp.
    params = model.stn.localize(inputs)
    identity = torch.tensor([1.0, 0, 0, 0, 1, 0])
    assert not torch.allclose(params, identity.expand_as(params), atol=1e-4)


def test_resume_after_interrupt_equals_uninterrupted(run: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "cut"
    args = [*TRAIN_ARGS, "--data-root", _needs_data(), "--out", str(out)]
    real = engine_loop.train_one_epoch
    calls = {"n": 0}

    def killed_in_epoch_two(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **kw)

    monkeypatch.setattr(engine_loop, "train_one_epoch", killed_in_epoch_two)
    assert cli.main(args) == cli.EXIT_INTERRUPTED
    monkeypatch.undo()
    assert load_checkpoint(out / CHECKPOINT_NAME)["epoch"] == 1
    assert cli.main([*args, "--resume"]) == 0
    resumed = load_checkpoint(out / CHECKPOINT_NAME)["model"]
    full = load_checkpoint(run / CHECKPOINT_NAME)["model"]
    for name, value in full.items():
        assert torch.equal(value, resumed[name]), name
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]


def test_resume_refuses_a_changed_recipe(run: Path, capsys) -> None:
    args = ["train", "--out", str(run), "--resume", "--lr", "0.5"]
    assert cli.main(args) == 1
    assert "flags differ" in capsys.readouterr().err


def test_divergence_exits_with_a_clear_message(tmp_path: Path, capsys) -> None:
    args = [
        "train", "--dataset", "mnist", "--model", "st-fcn-affine", "--epochs", "2",
        "--limit", "128", "--test-limit", "32", "--batch-size", "32", "--optimizer", "sgd",
        "--lr", "1e30", "--grad-clip", "0", "--no-progress", "--data-root", _needs_data(),
        "--out", str(tmp_path / "div"),
    ]  # fmt: skip
    assert cli.main(args) == cli.EXIT_DIVERGED
    err = capsys.readouterr().err
    assert "diverged" in err and "finite" in err and "--lr" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["fly"],
        ["train", "--epochs", "0"],
        ["train", "--epochs", "two"],
        ["train", "--lr", "-1"],
        ["train", "--optimizer", "lion"],
        ["train", "--bogus-flag"],
        ["export", "x.pt"],  # --onnx is required
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str], capsys) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_help_for_every_command(capsys) -> None:
    for command in ("train", "eval", "show", "export", "models"):
        assert cli.main([command, "--help"]) == 0
        assert "usage: stnkit" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0


def test_models_lists_the_registry(capsys) -> None:
    assert cli.main(["models"]) == 0
    assert "st-cnn-affine" in capsys.readouterr().out.split()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "resnet-9000", "--limit", "8"], "unknown model"),
        (["train", "--dataset", "imagenet"], "unknown dataset"),
        (["train", "--model-kwargs", "{oops"], "not valid JSON"),
        (["train", "--model-kwargs", "[1]"], "JSON object"),
        (["train", "--device", "tpu"], "device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        (["train", "--label-smoothing", "1.5"], "label_smoothing must be in [0, 1), got 1.5"),
        (["train", "--lr", "inf"], "lr must be a finite number > 0, got inf"),
        # The dataset fixes classes, channels and size; --model-kwargs may not contradict it.
        (["train", "--dataset", "mnist", "--model-kwargs", '{"num_classes": 3}'], "has num_classes=10"),
        (["train", "--dataset", "mnist", "--model-kwargs", '{"in_channels": 3}'], "has in_channels=1"),
        (
            ["train", "--model", "fcn", "--model-kwargs", '{"hidden": [-5]}'],
            "hidden must be a sequence of positive",
        ),
    ],
)
def test_bad_values_get_a_clear_error(argv, message, tmp_path: Path, capsys) -> None:
    assert cli.main([*argv, "--out", str(tmp_path / "r"), "--no-progress"]) == cli.EXIT_ERROR
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_this_machine_lacks_is_one_line_before_any_data_is_read(tmp_path: Path, capsys) -> None:
    argv = ["train", "--device", "cuda", "--data-root", str(tmp_path / "no-data"), "--no-progress"]
    assert cli.main([*argv, "--out", str(tmp_path / "r")]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "device 'cuda' asked for, but torch" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_bad_paths(run: Path, tmp_path: Path, capsys) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    ckpt = str(run / CHECKPOINT_NAME)
    cases = [
        (["eval", str(tmp_path / "missing.pt")], "not found"),
        (["eval", str(garbage)], "corrupt"),
        (["show", str(foreign)], "not an stnkit checkpoint"),
        (["export", ckpt, "--onnx", str(tmp_path / "no" / "dir" / "m.onnx")], "does not exist"),
        (["export", ckpt, "--onnx", str(tmp_path / "m.onnx"), "--opset", "13"], "opset"),
        (["export", ckpt, "--onnx", str(tmp_path / "m.onnx"), "--opset", "99"], "opset must be between 16 and"),
        (["train", "--out", str(run)], "already holds a run"),
        (["train", "--out", str(tmp_path / "empty"), "--resume"], "nothing to resume"),
        (["train", "--dataset", "mnist", "--limit", "8", "--no-progress", "--out",
          str(tmp_path / "nd"), "--data-root", str(tmp_path / "no-data")], "no-data"),
    ]  # fmt: skip
    for argv, message in cases:
        assert cli.main(argv) == cli.EXIT_ERROR, argv
        assert message in capsys.readouterr().err, argv


def test_show_refuses_a_baseline(tmp_path: Path, capsys, untrained_checkpoint) -> None:
    path = untrained_checkpoint(tmp_path / "cnn.pt")  # a small MNIST CNN
    assert cli.main(["show", str(path)]) == cli.EXIT_ERROR
    assert "no input spatial transformer" in capsys.readouterr().err
