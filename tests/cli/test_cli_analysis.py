"""``stnkit eval --per-class/--confusion`` and ``stnkit compare`` on two tiny real MNIST runs."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path

import pytest
import torch
from PIL import Image

from stnkit import cli, data
from stnkit.engine import CHECKPOINT_NAME
from stnkit.models import get_pretrained
from stnkit.runs import load_run

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TEST_LIMIT = 96
TINY_TRAIN = [
    "train", "--dataset", "mnist", "--epochs", "1", "--limit", "128", "--test-limit", "32",
    "--batch-size", "32", "--snapshot-images", "4", "--no-progress", "--threads", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CNN and an ST-CNN, one tiny epoch each on real MNIST."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    folder = tmp_path_factory.mktemp("analysis-runs")
    paths = {}
    for model in ("cnn", "st-cnn-affine"):
        out = folder / model
        assert (
            cli.main([*TINY_TRAIN, "--model", model, "--data-root", str(SHARED_DATA), "--out", str(out)]) == 0
        )
        paths[model] = out / CHECKPOINT_NAME
    return paths


def _brute_force(checkpoint: Path) -> tuple[list[int], list[int]]:
    """Labels and predictions of the first TEST_LIMIT test images, one image at a time."""
    model, _, _ = load_run(str(checkpoint))
    loader = data.make_loader(
        "mnist", split="test", batch_size=TEST_LIMIT, root=SHARED_DATA, limit=TEST_LIMIT
    )
    images, labels = next(iter(loader))
    with torch.no_grad():
        predictions = [int(model(image[None]).argmax()) for image in images]
    return labels.tolist(), predictions


def _is_png(path: Path) -> bool:
    with Image.open(path) as image:
        image.verify()
        return image.format == "PNG"


def test_eval_writes_per_class_errors_and_a_confusion_picture(runs, tmp_path: Path, capsys) -> None:
    per_class, confusion = tmp_path / "new" / "per_class.json", tmp_path / "confusion.png"
    argv = ["eval", str(runs["cnn"]), "--limit", str(TEST_LIMIT), "--data-root", str(SHARED_DATA)]
    assert cli.main([*argv, "--per-class", str(per_class), "--confusion", str(confusion)]) == 0
    printed = json.loads(capsys.readouterr().out)
    labels, predictions = _brute_force(runs["cnn"])
    errors = sum(t != p for t, p in zip(labels, predictions, strict=True))
    expected_classes = []
    for k in range(10):
        members = [p for t, p in zip(labels, predictions, strict=True) if t == k]
        wrong = sum(p != k for p in members)
        expected_classes.append(
            {
                "label": k,
                "name": str(k),
                "count": len(members),
                "errors": wrong,
                "error": wrong / len(members) if members else None,
                "mistaken_for": [
                    {"label": j, "name": str(j), "count": members.count(j)}
                    for j in sorted(set(members) - {k}, key=lambda j: (-members.count(j), j))
                ],
            }
        )
    written = json.loads(per_class.read_text())
    assert written == {
        "dataset": "mnist",
        "split": "test",
        "count": TEST_LIMIT,
        "errors": errors,
        "error": errors / TEST_LIMIT,
        "classes": expected_classes,
    }
    assert printed["count"] == TEST_LIMIT and printed["error"] == errors / TEST_LIMIT
    assert _is_png(confusion)
    # The metrics of the analysing pass are those of a plain eval.
    assert cli.main(argv) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["error"] == printed["error"] and plain["loss"] == pytest.approx(printed["loss"], rel=1e-5)


def test_compare_writes_the_groups_and_a_picture(runs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", str(runs["cnn"]), str(runs["st-cnn-affine"]), "--out", str(out), "--num", "3"]
    assert cli.main([*argv, "--limit", str(TEST_LIMIT), "--data-root", str(SHARED_DATA)]) == 0
    assert "A right, B wrong" in capsys.readouterr().out
    labels, pred_a = _brute_force(runs["cnn"])
    _, pred_b = _brute_force(runs["st-cnn-affine"])
    triples = list(zip(labels, pred_a, pred_b, strict=True))
    groups = {
        "a_right_b_wrong": [i for i, (t, a, b) in enumerate(triples) if a == t and b != t],
        "b_right_a_wrong": [i for i, (t, a, b) in enumerate(triples) if b == t and a != t],
        "both_wrong": [i for i, (t, a, b) in enumerate(triples) if a != t and b != t],
    }
    result = json.loads((out / "comparison.json").read_text())
    assert result["count"] == TEST_LIMIT and result["dataset"] == "mnist"
    for name, indices in groups.items():
        assert result[name] == {"count": len(indices), "indices": indices}, name
    assert result["a"]["errors"] == sum(a != t for t, a, _ in triples)
    assert result["b"]["errors"] == sum(b != t for t, _, b in triples)
    for name in ("a_right_b_wrong", "b_right_a_wrong"):
        shown = result["shown"][name]
        assert len(shown) == min(3, len(groups[name])) and set(shown) <= set(groups[name])
    assert _is_png(out / "comparison.png")
    source = result["provenance"]
    assert source["command"] == shlex.join(
        ["stnkit", *argv, "--limit", str(TEST_LIMIT), "--data-root", str(SHARED_DATA)]
    )
    digests = [hashlib.sha256(runs[name].read_bytes()).hexdigest() for name in ("cnn", "st-cnn-affine")]
    assert [c["sha256"] for c in source["checkpoints"]] == digests


def test_compare_errors_are_one_line(runs, tmp_path: Path, capsys, untrained_checkpoint) -> None:
    # An untrained CNN recorded as trained on RTS (42x42).
    rts_kwargs = {"image_size": [42, 42], "hidden": [8]}
    rts = str(untrained_checkpoint(tmp_path / "rts.pt", dataset="rts", build_kwargs=rts_kwargs))
    cnn = str(runs["cnn"])
    out = ["--out", str(tmp_path / "o"), "--data-root", str(SHARED_DATA)]
    cases = [
        (["compare", cnn, rts, *out], "trained on 'mnist' and"),
        (["compare", cnn, rts, "--dataset", "rts", *out], "image_size"),
        (["compare", cnn, str(tmp_path / "missing.pt"), *out], "checkpoint not found"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == cli.EXIT_ERROR, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.fixture(scope="module")
def run_with_validation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CNN, one tiny epoch on real MNIST with the last 64 training images held out."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    out = tmp_path_factory.mktemp("val-run") / "cnn"
    argv = [
        *TINY_TRAIN,
        "--model",
        "cnn",
        "--val-size",
        "64",
        "--data-root",
        str(SHARED_DATA),
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    return out / CHECKPOINT_NAME


def test_eval_on_the_validation_split_with_test_time_views(run_with_validation, capsys) -> None:
    argv = ["eval", str(run_with_validation), "--split", "val", "--data-root", str(SHARED_DATA)]
    assert cli.main([*argv, "--tta", "rotate=10,shift=1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["split"] == "val" and printed["count"] == 64
    assert printed["tta"] == [
        "identity",
        "rotate=-10",
        "rotate=+10",
        "shift=(-1,0)",
        "shift=(+1,0)",
        "shift=(0,-1)",
        "shift=(0,+1)",
    ]
    # By hand: the held-out images are the last 64 of MNIST's training set; average each view's softmax.
    images, labels = data.load_source("mnist", "train", root=SHARED_DATA)
    images, labels = images[-64:, None], labels[-64:]  # (64, 1, 28, 28) uint8
    model, _, _ = load_run(str(run_with_validation))
    with torch.no_grad():
        views = data.tta_views("rotate=10,shift=1")
        probabilities = torch.stack([model(view(images)).softmax(dim=1) for view in views]).mean(dim=0)
    errors = int((probabilities.argmax(dim=1) != labels).sum())
    assert printed["error"] == pytest.approx(errors / 64)
    assert printed["loss"] == pytest.approx(
        float(-probabilities.log().gather(1, labels[:, None]).mean()), rel=1e-4
    )
    # Without views, the validation error is the one training logged for its last epoch.
    assert cli.main(argv) == 0
    plain = json.loads(capsys.readouterr().out)
    logged = [
        json.loads(line) for line in (run_with_validation.parent / "metrics.jsonl").read_text().splitlines()
    ]
    assert plain["error"] == pytest.approx(logged[-1]["val_error"])


def test_eval_refuses_a_validation_split_that_the_run_never_held_out(runs, capsys) -> None:
    assert cli.main(["eval", str(runs["cnn"]), "--split", "val", "--data-root", str(SHARED_DATA)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"stnkit eval: error: --split val needs a run trained with --val-size; {runs['cnn']} held out no images"
    )


def test_eval_refuses_a_bad_tta_spec_and_names_the_problem(runs, capsys) -> None:
    assert cli.main(["eval", str(runs["cnn"]), "--tta", "brightness=0.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(
        "argument --tta: test-time views take rotate, scale and shift only, got brightness=0.2"
    )


def test_eval_of_several_checkpoints_is_their_ensemble(runs, capsys) -> None:
    argv = ["eval", str(runs["cnn"]), str(runs["st-cnn-affine"]), "--limit", str(TEST_LIMIT)]
    assert cli.main([*argv, "--data-root", str(SHARED_DATA)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["checkpoints"] == [str(runs["cnn"]), str(runs["st-cnn-affine"])]
    assert printed["count"] == TEST_LIMIT
    # By hand: the two models' softmax, averaged, on the same first test images.
    loader = data.make_loader(
        "mnist", split="test", batch_size=TEST_LIMIT, root=SHARED_DATA, limit=TEST_LIMIT
    )
    images, labels = next(iter(loader))
    with torch.no_grad():
        models = [load_run(str(runs[name]))[0] for name in ("cnn", "st-cnn-affine")]
        probabilities = torch.stack([model(images).softmax(dim=1) for model in models]).mean(dim=0)
    assert printed["error"] == pytest.approx(float((probabilities.argmax(dim=1) != labels).float().mean()))
    assert printed["loss"] == pytest.approx(
        float(-probabilities.log().gather(1, labels[:, None]).mean()), rel=1e-4
    )


def test_an_ensemble_needs_one_dataset_and_one_validation_split(
    runs, run_with_validation, untrained_checkpoint, tmp_path: Path, capsys
) -> None:
    rts = untrained_checkpoint(tmp_path / "rts.pt", dataset="rts")
    assert cli.main(["eval", str(runs["cnn"]), str(rts), "--data-root", str(SHARED_DATA)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"stnkit eval: error: an ensemble needs one dataset: {runs['cnn']} was trained on 'mnist', {rts} on 'rts'"
    )
    argv = [
        "eval",
        str(run_with_validation),
        str(runs["cnn"]),
        "--split",
        "val",
        "--data-root",
        str(SHARED_DATA),
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"stnkit eval: error: --split val needs the same held-out images: {run_with_validation} held out 64 images, "
        f"{runs['cnn']} 0"
    )


def test_eval_on_a_distorted_validation_split_matches_what_training_logged(tmp_path: Path, capsys) -> None:
    # RTS draws its distortions from a seed: the validation split must use the one training used
    # (TEST_SEED), not the run's own seed (3 here), or the images differ.
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    out = tmp_path / "rts"
    argv = ["train", "--dataset", "rts", "--model", "cnn", "--seed", "3", "--val-size", "64"]
    assert cli.main([*argv, *TINY_TRAIN[3:], "--data-root", str(SHARED_DATA), "--out", str(out)]) == 0
    capsys.readouterr()
    assert (
        cli.main(["eval", str(out / CHECKPOINT_NAME), "--split", "val", "--data-root", str(SHARED_DATA)]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert printed["count"] == 64
    assert printed["error"] == pytest.approx(logged["val_error"])
    assert printed["loss"] == pytest.approx(logged["val_loss"], rel=1e-6)


def test_an_ensemble_of_one_run_twice_is_that_run(run_with_validation, capsys) -> None:
    argv = ["eval", str(run_with_validation), "--split", "val", "--data-root", str(SHARED_DATA)]
    assert cli.main(argv) == 0
    single = json.loads(capsys.readouterr().out)
    assert cli.main([*argv[:2], str(run_with_validation), *argv[2:]]) == 0
    twice = json.loads(capsys.readouterr().out)
    assert twice["checkpoints"] == [str(run_with_validation)] * 2
    assert twice["error"] == single["error"] and twice["loss"] == pytest.approx(single["loss"], rel=1e-5)


def test_shipped_weights_have_no_validation_split(capsys) -> None:
    assert cli.main(["eval", "--pretrained", "st-cnn-affine.rts", "--split", "val"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "stnkit eval: error: --split val needs a checkpoint of a run trained with --val-size; "
        "shipped weights held none out"
    )


def test_eval_out_records_the_numbers_and_where_they_came_from(runs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "records" / "eval.json"
    argv = ["eval", str(runs["cnn"]), str(runs["st-cnn-affine"]), "--limit", str(TEST_LIMIT)]
    argv += ["--data-root", str(SHARED_DATA), "--out", str(out)]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    record = json.loads(out.read_text())
    provenance = record.pop("provenance")
    assert record == printed  # the file holds what was printed, and where it came from beside it
    assert provenance["command"] == shlex.join(["stnkit", *argv]) and provenance["cwd"] == os.getcwd()
    assert [c["path"] for c in provenance["checkpoints"]] == [str(runs["cnn"]), str(runs["st-cnn-affine"])]
    for checkpoint in provenance["checkpoints"]:
        assert checkpoint["sha256"] == hashlib.sha256(Path(checkpoint["path"]).read_bytes()).hexdigest()
    assert provenance["machine"]["torch"] == torch.__version__
    assert provenance["numerics"] in ("native", "portable")
    assert provenance["started_utc"].endswith("Z")


def test_eval_out_names_the_shipped_weights_and_refuses_a_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "shipped.json"
    argv = ["eval", "--pretrained", "st-cnn-affine.rts", "--limit", "8", "--out", str(out)]
    assert cli.main(argv) == 0
    provenance = json.loads(out.read_text())["provenance"]
    shipped = get_pretrained("st-cnn-affine.rts")
    assert provenance["pretrained"] == {"name": shipped.name, "sha256": shipped.sha256}
    assert "checkpoints" not in provenance
    capsys.readouterr()
    assert cli.main([*argv[:-1], str(tmp_path)]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"stnkit eval: error: --out {tmp_path} is a folder; give a file name"
    )
