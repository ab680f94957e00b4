"""``stnkit robustness`` and :mod:`stnkit.robustness`: posed digits, errors per pose, outputs, bad input."""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stnkit import cli, data
from stnkit.engine import CHECKPOINT_NAME, evaluate
from stnkit.models import create_model, get_pretrained, pretrained
from stnkit.robustness import (
    DEFAULT_SWEEPS,
    Pose,
    SweepFileError,
    format_table,
    mnist_canvas,
    place_digits,
    pose_errors,
    read_sweep,
    sweep_poses,
    write_sweep,
)
from stnkit.runs import load_run
from stnkit.viz import plot_robustness

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LIMIT = 48  # test digits per sweep in the command-line tests
TINY_TRAIN = [
    "train", "--epochs", "1", "--limit", "128", "--test-limit", "32", "--batch-size", "32",
    "--snapshot-images", "4", "--no-progress", "--threads", "2",
]  # fmt: skip


def _digits(root: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    digits, labels = data.load_source("mnist", "test", root)
    return digits[:count], labels[:count]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny real runs: a CNN on plain MNIST (28x28) and an ST-CNN on RTS (42x42)."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    folder = tmp_path_factory.mktemp("robustness-runs")
    paths = {}
    for dataset, model in (("mnist", "cnn"), ("rts", "st-cnn-affine")):
        out = folder / f"{dataset}-{model}"
        args = [*TINY_TRAIN, "--dataset", dataset, "--model", model, "--data-root", str(SHARED_DATA)]
        assert cli.main([*args, "--out", str(out)]) == 0
        paths[dataset] = out / CHECKPOINT_NAME
    return paths


# --- the posed digits -----------------------------------------------------------------------------


def test_the_neutral_pose_gives_back_the_digits_exactly(shared_data: Path) -> None:
    digits, _ = _digits(shared_data, 64)
    plain = digits[:, None].float() / 255  # what the plain-MNIST loader yields
    assert torch.equal(place_digits(digits, Pose(), canvas=28), plain)
    assert torch.equal(place_digits(digits, Pose(), canvas=42), F.pad(plain, (7, 7, 7, 7)))


@pytest.mark.parametrize("canvas", [28, 42])
def test_quarter_and_half_turns_equal_rot90_bit_for_bit(shared_data: Path, canvas: int) -> None:
    digits, _ = _digits(shared_data, 64)
    plain = F.pad(digits[:, None].float() / 255, 4 * ((canvas - 28) // 2,))
    # Positive angles turn clockwise on screen: rot90 with k = -1 (from the column axis to the row axis).
    for angle, turns in ((90.0, -1), (180.0, 2), (270.0, 1), (-90.0, 1)):
        posed = place_digits(digits, Pose(angle_degrees=angle), canvas=canvas)
        assert torch.equal(posed, torch.rot90(plain, turns, dims=(-2, -1))), angle


def test_whole_pixel_shifts_move_whole_pixels(shared_data: Path) -> None:
    digits, _ = _digits(shared_data, 32)
    plain = digits[:, None].float() / 255
    right3_down2 = F.pad(plain, (3, 0, 2, 0))[..., :28, :28]  # zeros come in from the left and top
    assert torch.equal(place_digits(digits, Pose(shift_px=(3.0, 2.0)), canvas=28), right3_down2)
    left5 = F.pad(plain, (7 - 5, 7 + 5, 7, 7))
    assert torch.equal(place_digits(digits, Pose(shift_px=(-5.0, 0.0)), canvas=42), left5)


def test_posed_digits_are_the_rts_distortion_with_those_parameters(shared_data: Path) -> None:
    from stnkit.data.distortions import apply_rts

    digits, _ = _digits(shared_data, 16)
    pose = Pose(angle_degrees=33.0, scale=0.8, shift_px=(2.5, -1.25))
    params = {
        "angle": torch.full((16,), math.radians(33.0), dtype=torch.float64),
        "scale": torch.full((16,), 0.8, dtype=torch.float64),
        "shift": torch.tensor([[2.5, -1.25]] * 16, dtype=torch.float64),
    }
    assert torch.equal(place_digits(digits, pose, canvas=42), apply_rts(digits, params, canvas=42))


def test_a_half_size_digit_fits_in_the_central_half() -> None:
    digits = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    posed = place_digits(digits, Pose(scale=0.5), canvas=28)[0, 0]
    assert posed[7:21, 7:21].eq(1).all() and posed.sum() == 14 * 14


# --- poses and their checks -----------------------------------------------------------------------


def test_sweeps_hold_one_axis_and_keep_the_others_neutral() -> None:
    assert [p.angle_degrees for p in sweep_poses("angle", DEFAULT_SWEEPS["angle"])] == list(range(0, 181, 15))
    assert sweep_poses("scale", [0.5])[0] == Pose(scale=0.5)
    assert sweep_poses("shift", [4])[0] == Pose(shift_px=(4.0, 0.0))
    for axis, values in DEFAULT_SWEEPS.items():
        assert Pose() in sweep_poses(axis, values), axis  # every sweep passes through the neutral pose


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Pose(scale=0.0), "scale must be a finite number > 0, got 0.0"),
        (lambda: Pose(scale=-1.0), "scale must be a finite number > 0, got -1.0"),
        (lambda: Pose(angle_degrees=math.nan), "angle must be a finite number of degrees, got nan"),
        (lambda: Pose(shift_px=(math.inf, 0.0)), "shift must be two finite numbers"),
        (lambda: sweep_poses("tilt", [1]), "unknown sweep 'tilt'"),
        (lambda: sweep_poses("angle", []), "the angle sweep needs at least one value"),
        (lambda: mnist_canvas(in_channels=3, num_classes=43, image_size=(32, 32)), "1 channel, 10 classes"),
        (lambda: mnist_canvas(in_channels=1, num_classes=10, image_size=(20, 20)), "at least 28 px"),
    ],
)
def test_bad_poses_and_models_are_one_line_value_errors(make, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        make()
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_canvas_is_the_side_of_the_square_image() -> None:
    assert mnist_canvas(in_channels=1, num_classes=10, image_size=(28, 28)) == 28
    assert mnist_canvas(in_channels=1, num_classes=10, image_size=[42, 42]) == 42


# --- errors per pose ------------------------------------------------------------------------------


def _slow_errors(model, digits, labels, poses, canvas) -> list[float]:
    """One digit, one pose at a time: the obviously-correct count."""
    wrong = [0] * len(poses)
    with torch.no_grad():
        for j, pose in enumerate(poses):
            for digit, label in zip(digits, labels, strict=True):
                image = place_digits(digit[None], pose, canvas=canvas)
                wrong[j] += int(model(image).argmax(1).item() != label.item())
    return [w / len(labels) for w in wrong]


def test_pose_errors_match_a_one_digit_at_a_time_count(shared_data: Path) -> None:
    digits, labels = _digits(shared_data, 12)
    models = [
        create_model("cnn", image_size=(42, 42)).eval(),
        create_model("fcn", image_size=(42, 42)).eval(),
    ]
    poses = [Pose(), Pose(angle_degrees=40.0, scale=0.9), Pose(shift_px=(3.0, -2.0))]
    errors = pose_errors(models, digits, labels, poses, canvas=42, batch_size=7)
    assert errors.shape == (2, 3) and errors.dtype == torch.float64
    for i, model in enumerate(models):
        assert errors[i].tolist() == _slow_errors(model, digits, labels, poses, 42)


def test_pose_errors_restore_training_mode_and_check_their_input(shared_data: Path) -> None:
    digits, labels = _digits(shared_data, 4)
    model = create_model("cnn", image_size=(28, 28)).train()
    pose_errors([model], digits, labels, [Pose()], canvas=28)
    assert model.training
    with pytest.raises(ValueError, match=r"labels must be \(4,\), one per digit, got \(3,\)"):
        pose_errors([model], digits, labels[:3], [Pose()], canvas=28)
    with pytest.raises(ValueError, match=r"digits must be \(N, 28, 28\), got \(4, 1, 28, 28\)"):
        pose_errors([model], digits[:, None], labels, [Pose()], canvas=28)


def test_at_the_neutral_pose_the_error_is_the_plain_evaluation(
    checkpoints: dict[str, Path], shared_data: Path
) -> None:
    digits, labels = _digits(shared_data, 200)
    mnist_model = load_run(str(checkpoints["mnist"]))[0]
    loader = data.make_loader("mnist", split="test", batch_size=64, root=shared_data, limit=200)
    plain = evaluate(mnist_model, loader)["error"]
    assert pose_errors([mnist_model], digits, labels, [Pose()], canvas=28).item() == pytest.approx(
        plain, abs=1e-12
    )
    rts_model = load_run(str(checkpoints["rts"]))[0]
    padded = [(F.pad(digits[:, None].float() / 255, (7, 7, 7, 7)), labels)]
    plain = evaluate(rts_model, padded)["error"]
    assert pose_errors([rts_model], digits, labels, [Pose()], canvas=42).item() == pytest.approx(
        plain, abs=1e-12
    )


# --- the table and the plot -----------------------------------------------------------------------


def test_format_table_has_a_row_per_value_and_a_column_per_model() -> None:
    text = format_table("angle", [0.0, 90.0], {"cnn on mnist": [0.01, 0.5], "st on rts": [0.02, 0.125]})
    assert text.splitlines() == [
        "| angle (degrees) | cnn on mnist | st on rts |",
        "|---:|---:|---:|",
        "| 0 | 1.00 | 2.00 |",
        "| 90 | 50.00 | 12.50 |",
    ]


def test_plot_robustness_writes_a_png_and_refuses_ragged_series(tmp_path: Path) -> None:
    from PIL import Image

    sweeps = {"angle": [0.0, 90.0], "scale": [1.0]}
    path = plot_robustness(sweeps, {"a": {"angle": [0.1, 0.5], "scale": [0.1]}}, tmp_path / "r.png")
    with Image.open(path) as image:
        assert image.size[0] > image.size[1] > 100
    with pytest.raises(ValueError, match="'a': 1 errors for the 2 values of 'angle'"):
        plot_robustness(sweeps, {"a": {"angle": [0.1], "scale": [0.1]}}, tmp_path / "bad.png")


def test_write_sweep_then_read_sweep_gives_the_runs_back(tmp_path: Path) -> None:
    sweeps = {"angle": [0.0, 90.0], "shift": [0.0]}
    runs = [
        {"label": "cnn on mnist", "seed": 0, "errors": {"angle": [0.01, 0.5], "shift": [0.01]}},
        {"label": "st on rts", "pretrained": "x", "errors": {"angle": [0.02, 0.125], "shift": [0.02]}},
    ]
    write_sweep(tmp_path, sweeps, runs, count=48)
    sweep = read_sweep(tmp_path / "robustness.json")
    assert sweep["runs"] == runs and sweep["digits"]["count"] == 48
    assert {axis: v["values"] for axis, v in sweep["sweeps"].items()} == sweeps
    table = (tmp_path / "robustness.md").read_text()
    assert "first 48 MNIST test digits" in table and "| 90 | 50.00 | 12.50 |" in table
    assert (tmp_path / "robustness.png").stat().st_size > 0
    with pytest.raises(
        ValueError, match=r"sweeps must be among \['angle', 'scale', 'shift'\], got \['tilt'\]"
    ):
        write_sweep(tmp_path, {"tilt": [0.0]}, [{"label": "a", "errors": {"tilt": [0.0]}}], count=48)
    with pytest.raises(ValueError, match="labels must differ"):
        write_sweep(tmp_path, sweeps, [runs[0], runs[0]], count=48)
    with pytest.raises(ValueError, match="'cnn on mnist': no error for each of the 1 values of 'shift'"):
        write_sweep(tmp_path, sweeps, [{**runs[0], "errors": {"angle": [0.1, 0.2]}}], count=48)


def test_read_sweep_refuses_what_is_not_a_sweep_in_one_line(tmp_path: Path) -> None:
    good = {
        "version": 2,
        "digits": {"dataset": "mnist", "split": "test", "count": 4},
        "sweeps": {"angle": {"unit": "degrees", "values": [0.0, 45.0]}},
        "runs": [{"label": "a", "errors": {"angle": [0.0, 0.5]}}],
    }
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps(good))
    assert read_sweep(path) == good
    bad = [
        ("{", "not a readable robustness.json"),
        (json.dumps({**good, "version": 3}), "version 1 or 2"),
        (json.dumps({**good, "sweeps": {"angle": [0.0]}}), "not a dict of sweeps"),
        (json.dumps({**good, "digits": {"dataset": "mnist", "split": "train", "count": 4}}), "it posed"),
        (json.dumps({**good, "runs": [{"label": "a", "errors": {"angle": [0.0]}}]}), "an error per value"),
        (json.dumps({**good, "runs": [{"errors": {"angle": [0.0, 0.5]}}]}), "labelled models"),
        (json.dumps({**good, "runs": [{"label": "a", "errors": {"angle": [0.0, "x"]}}]}), "labelled models"),
        (json.dumps({**good, "runs": [*good["runs"], *good["runs"]]}), r"share a label \(\['a', 'a'\]\)"),
    ]
    for text, message in bad:
        path.write_text(text)
        with pytest.raises(SweepFileError, match=message) as err:
            read_sweep(path)
        assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    with pytest.raises(SweepFileError, match="not a readable"):
        read_sweep(tmp_path / "missing.json")


# --- the command ----------------------------------------------------------------------------------


def test_robustness_writes_json_table_and_plot(
    checkpoints: dict[str, Path], shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "robust"
    args = [
        "robustness", str(checkpoints["mnist"]), str(checkpoints["rts"]), "--out", str(out),
        "--limit", str(LIMIT), "--angles", "0", "90", "180", "--scales", "0.7", "1", "--shifts", "0", "4",
        "--data-root", str(shared_data),
    ]  # fmt: skip
    assert cli.main(args) == 0
    result = json.loads((out / "robustness.json").read_text())
    assert result["digits"] == {"dataset": "mnist", "split": "test", "count": LIMIT}
    assert result["sweeps"]["angle"] == {"unit": "degrees", "values": [0.0, 90.0, 180.0]}
    assert [run["label"] for run in result["runs"]] == ["cnn on mnist", "st-cnn-affine on rts"]
    assert [run["canvas"] for run in result["runs"]] == [28, 42]
    digits, labels = _digits(shared_data, LIMIT)
    for run, path in zip(result["runs"], (checkpoints["mnist"], checkpoints["rts"]), strict=True):
        assert {axis: len(errors) for axis, errors in run["errors"].items()} == {
            "angle": 3,
            "scale": 2,
            "shift": 2,
        }
        # The neutral pose of every sweep is the same images: the same error, the plain one.
        neutral = (run["errors"]["angle"][0], run["errors"]["scale"][1], run["errors"]["shift"][0])
        model = load_run(str(path))[0]
        plain = pose_errors([model], digits, labels, [Pose()], canvas=run["canvas"]).item()
        assert neutral == (plain, plain, plain)
        assert run["epoch"] == 1 and run["seed"] == 0 and run["checkpoint"] == str(path)
        # Where the numbers come from, per model: a later sweep that keeps the model keeps this too.
        assert run["provenance"]["command"] == shlex.join(["stnkit", *args])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert run["provenance"]["checkpoints"] == [
            {"path": str(path), "absolute_path": str(path.resolve()), "sha256": digest}
        ]
    table = (out / "robustness.md").read_text()
    assert "| angle (degrees) | cnn on mnist | st-cnn-affine on rts |" in table
    assert f"| 90 | {100 * result['runs'][0]['errors']['angle'][1]:.2f} |" in table
    assert (out / "robustness.png").stat().st_size > 1000


def test_an_earlier_sweeps_models_are_kept_with_the_errors_it_measured(
    checkpoints: dict[str, Path], shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "robust"
    sweep = ["--limit", str(LIMIT), "--angles", "0", "90", "--scales", "1", "--shifts", "0", "4"]
    base = [*sweep, "--data-root", str(shared_data), "--out", str(out)]
    assert cli.main(["robustness", str(checkpoints["rts"]), *base]) == 0
    first = json.loads((out / "robustness.json").read_text())
    # Replace the file with a sweep of another model that keeps the first one's.
    kept_from = str(out / "robustness.json")
    assert cli.main(["robustness", str(checkpoints["mnist"]), *base, "--keep-from", kept_from]) == 0
    second = json.loads((out / "robustness.json").read_text())
    assert [run["label"] for run in second["runs"]] == ["st-cnn-affine on rts", "cnn on mnist"]
    assert second["runs"][0] == {**first["runs"][0], "kept_from": kept_from}
    table = (out / "robustness.md").read_text()
    assert "| angle (degrees) | st-cnn-affine on rts | cnn on mnist |" in table
    capsys.readouterr()
    # Another sweep, other digits, a model already there, or an unreadable file: one line each.
    bad = [
        (["--angles", "0", "45"], "it swept"),
        (["--limit", str(LIMIT + 1)], "it posed"),
    ]
    (tmp_path / "first.json").write_text(json.dumps(first))  # the rts model only: no clash
    for change, message in bad:
        argv = [
            "robustness",
            str(checkpoints["mnist"]),
            *base,
            *change,
            "--keep-from",
            str(tmp_path / "first.json"),
        ]
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert cli.main(["robustness", str(checkpoints["mnist"]), *base, "--keep-from", kept_from]) == 1
    assert "it already has ['cnn on mnist']" in capsys.readouterr().err
    # A file of the right version whose runs are not labelled models with an error per value.
    malformed = {**second, "runs": [{"label": "x", "errors": {"angle": [0.1]}}]}
    (tmp_path / "malformed.json").write_text(json.dumps(malformed))
    argv = ["robustness", str(checkpoints["rts"]), *base, "--keep-from", str(tmp_path / "malformed.json")]
    assert cli.main(argv) == 1
    assert "its 'runs' are not labelled models" in capsys.readouterr().err
    # A run the earlier sweep had kept keeps its first origin.
    third = tmp_path / "third"
    argv = ["robustness", str(checkpoints["rts"]), *sweep, "--data-root", str(shared_data)]
    assert cli.main([*argv, "--out", str(third), "--keep-from", kept_from]) == 1  # rts is there already
    capsys.readouterr()
    only_mnist = {**second, "runs": second["runs"][1:]}
    (tmp_path / "only-mnist.json").write_text(json.dumps(only_mnist))
    assert cli.main([*argv, "--out", str(third), "--keep-from", str(tmp_path / "only-mnist.json")]) == 0
    carried = json.loads((third / "robustness.json").read_text())["runs"][0]
    assert carried["label"] == "cnn on mnist" and carried["kept_from"] == str(tmp_path / "only-mnist.json")
    (tmp_path / "broken.json").write_text("{")
    assert (
        cli.main(
            ["robustness", str(checkpoints["mnist"]), *base, "--keep-from", str(tmp_path / "broken.json")]
        )
        == 1
    )
    assert "not a readable robustness.json" in capsys.readouterr().err
    assert json.loads((out / "robustness.json").read_text()) == second  # refused runs wrote nothing


def test_the_same_run_twice_gets_seed_then_position_in_its_label(
    checkpoints: dict[str, Path], shared_data: Path, tmp_path: Path
) -> None:
    ckpt = str(checkpoints["mnist"])
    args = [
        "robustness",
        ckpt,
        ckpt,
        "--out",
        str(tmp_path),
        "--limit",
        "8",
        "--angles",
        "0",
        "--scales",
        "1",
    ]
    assert cli.main([*args, "--shifts", "0", "--data-root", str(shared_data)]) == 0
    labels = [run["label"] for run in json.loads((tmp_path / "robustness.json").read_text())["runs"]]
    assert labels == ["cnn on mnist (seed 0) #1", "cnn on mnist (seed 0) #2"]


def test_shipped_weights_are_swept_beside_checkpoints_and_say_what_they_are(
    checkpoints: dict[str, Path], shared_data: Path, tmp_path: Path
) -> None:
    entry = get_pretrained("st-cnn-affine.rts")
    out = tmp_path / "robust"
    args = [
        "robustness", str(checkpoints["mnist"]), "--pretrained", entry.name, "--out", str(out),
        "--limit", str(LIMIT), "--angles", "0", "90", "--scales", "1", "--shifts", "0",
        "--data-root", str(shared_data),
    ]  # fmt: skip
    assert cli.main(args) == 0
    checkpoint_run, shipped = json.loads((out / "robustness.json").read_text())["runs"]
    assert checkpoint_run["label"] == "cnn on mnist"
    assert checkpoint_run["checkpoint"] == str(checkpoints["mnist"])
    assert entry.test_error is not None
    label = f"shipped st-cnn-affine.rts (on rts, test error {100 * entry.test_error:.2f}%)"
    assert shipped["provenance"]["pretrained"] == {"name": entry.name, "sha256": entry.sha256}
    assert "checkpoints" not in shipped["provenance"]
    assert {key: value for key, value in shipped.items() if key not in ("errors", "provenance")} == {
        "label": label,
        "pretrained": "st-cnn-affine.rts",
        "model": "st-cnn-affine",
        "dataset": "rts",
        "recorded_test_error": entry.test_error,
        "canvas": 42,
    }
    # The errors are those of the shipped weights themselves, loaded as `create_model` loads them.
    digits, labels = _digits(shared_data, LIMIT)
    model = create_model(entry.name, pretrained=True)
    poses = [Pose(), Pose(angle_degrees=90.0)]
    direct = pose_errors([model], digits, labels, poses, canvas=42)[0].tolist()
    assert shipped["errors"] == {"angle": direct, "scale": direct[:1], "shift": direct[:1]}
    assert f"| angle (degrees) | cnn on mnist | {label} |" in (out / "robustness.md").read_text()


def test_shipped_weights_alone_and_twice_get_their_position(shared_data: Path, tmp_path: Path) -> None:
    args = ["robustness", "--pretrained", "st-cnn-affine.rts", "--pretrained", "st-cnn-affine"]
    args += ["--out", str(tmp_path), "--limit", "8", "--angles", "0", "--scales", "1", "--shifts", "0"]
    assert cli.main([*args, "--data-root", str(shared_data)]) == 0
    runs = json.loads((tmp_path / "robustness.json").read_text())["runs"]
    assert [run["label"].rsplit(" ", 1)[1] for run in runs] == ["#1", "#2"]  # no seed: shipped weights
    assert [run["pretrained"] for run in runs] == ["st-cnn-affine.rts"] * 2
    assert "checkpoint" not in runs[0] and "seed" not in runs[0]


def test_a_source_is_required_and_bad_shipped_weights_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert cli.main(["robustness", "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        "stnkit robustness: error: give at least one checkpoint (CKPT) or --pretrained NAME, got neither\n"
    )
    assert cli.main(["robustness", "--pretrained", "no-such.weights", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stnkit robustness: error: no pretrained weights named 'no-such.weights'")
    assert "st-cnn-affine.rts" in err and err.count("\n") == 1
    # Weights of a traffic-sign model are refused from their registry entry, before any file is read.
    foreign = pretrained.PretrainedWeights(
        name="cnn.gtsrb", model="cnn", model_kwargs={"in_channels": 3, "num_classes": 43, "image_size": [32, 32]},
        dataset="gtsrb", filename="absent.safetensors", sha256="0" * 64, test_error=None,
    )  # fmt: skip
    monkeypatch.setitem(pretrained.PRETRAINED, foreign.name, foreign)
    assert cli.main(["robustness", "--pretrained", "cnn.gtsrb", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "stnkit robustness: error: pretrained weights 'cnn.gtsrb': robustness sweeps single"
    )
    assert "got 3 channel(s), 43 classes" in err and err.count("\n") == 1
    assert not out.exists()


def test_default_sweeps_are_the_library_grid() -> None:
    args = cli.build_parser().parse_args(["robustness", "x.pt", "--out", "o"])
    assert (args.angle, args.scale, args.shift) == tuple(list(v) for v in DEFAULT_SWEEPS.values())
    assert args.angle[0] == 0 and args.angle[-1] == 180


# An untrained GTSRB classifier: 3 channels, 43 classes, 32x32 (what robustness refuses).
GTSRB_KWARGS = {"in_channels": 3, "num_classes": 43, "image_size": [32, 32]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scales", "1", "0"], "a pose's scale must be a finite number > 0, got 0.0"),
        (["--angles", "nan"], "a pose's angle must be a finite number of degrees, got nan"),
        (["--shifts", "inf"], "a pose's shift must be two finite numbers of pixels (x, y), got (inf, 0.0)"),
    ],
)
def test_bad_values_are_one_line_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
    untrained_checkpoint: Callable[..., Path],
) -> None:
    # Values are checked before any checkpoint is read.
    ckpt = untrained_checkpoint(tmp_path / "gtsrb.pt", dataset="gtsrb", build_kwargs=GTSRB_KWARGS)
    assert cli.main(["robustness", str(ckpt), "--out", str(tmp_path / "o"), *extra]) == 1
    err = capsys.readouterr().err
    assert err == f"stnkit robustness: error: {message}\n"
    assert not (tmp_path / "o").exists()


def test_bad_checkpoints_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], untrained_checkpoint: Callable[..., Path]
) -> None:
    foreign = untrained_checkpoint(tmp_path / "gtsrb.pt", dataset="gtsrb", build_kwargs=GTSRB_KWARGS)
    assert cli.main(["robustness", str(foreign), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"stnkit robustness: error: {foreign}: robustness sweeps single MNIST digits")
    assert "got 3 channel(s), 43 classes, image size [32, 32]" in err and err.count("\n") == 1
    missing = tmp_path / "missing.pt"
    assert cli.main(["robustness", str(missing), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and err.count("\n") == 1
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    assert cli.main(["robustness", str(garbage), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"stnkit robustness: error: {garbage}") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    # Not a number at all is argparse's usage error.
    assert cli.main(["robustness", str(foreign), "--out", str(tmp_path / "o"), "--angles", "abc"]) == 2
