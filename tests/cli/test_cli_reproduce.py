"""``stnkit reproduce``: the order of the cells, a tiny real cell end to end, resuming, the report's files.

The grids, result files and report as a library: tests/reproduce.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stnkit import cli
from stnkit.cli import reproduce
from stnkit.data import first_test_images
from stnkit.engine import CHECKPOINT_NAME, read_jsonl
from stnkit.reproduce import (
    DEFAULT_RECIPE,
    GLANCE_END,
    GLANCE_START,
    GRIDS,
    PICTURE_IMAGES,
    Cell,
    Recipe,
    cell_parameters,
    cell_result,
    cells_of,
    is_selection,
)
from stnkit.runs import load_run


def _write_a_result(folder: Path, cell: Cell, seed: int = 0) -> None:
    """A result file of ``cell`` at ``seed`` as `stnkit reproduce` writes it: the report refuses a
    folder without any (every row would read "not run yet")."""
    records = [
        {
            "epoch": 1,
            "train_error": 0.1,
            "val_error": 0.1,
            "test_error": 0.1,
            "elapsed_s": 1.0,
            "images_per_s": 1.0,
        }
    ]
    path = folder / cell.grid / f"{cell.run_name(seed)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cell_result(cell, seed, records, ["train", *cell.train_args(seed)])))


TINY = Recipe(
    "tiny",
    ("--epochs", "2", "--limit", "96", "--test-limit", "64", "--val-size", "64", "--batch-size", "32"),
    "two epochs on 96 images",
)


def _parameters(grid: str, name: str) -> str:
    return f"{cell_parameters(cells_of(grid, name)[0]):,}"


# The parameters column of some rows, as the report formats it.
PARAMS = {
    "rts-st-cnn-affine": _parameters("table1", "rts-st-cnn-affine"),
}


def test_dry_run_lists_headline_cells_with_all_seeds_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "reproduce",
        "table1",
        "--cells",
        "rts-*",
        "--seeds",
        "0",
        "1",
        "--dry-run",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(argv) == 0
    runs = [line.split(": ")[1] for line in capsys.readouterr().out.splitlines()]
    assert runs[:4] == ["rts-cnn-s0", "rts-st-cnn-affine-s0", "rts-cnn-s1", "rts-st-cnn-affine-s1"]
    assert len(runs) == 28  # 14 cells (eight of the paper, six levers), two seeds
    # A tagged variant of a headline model is a lever: it runs with the rest, after every headline seed.
    assert runs.index("rts-cnn-paper-kernels-s0") > 4 and runs.index("rts-st-cnn-affine-paper-kernels-s0") > 4
    assert runs[-1] == "rts-st-fcn-tps-e100-s1"
    # On a GPU the runs and result files are named apart and the command asks for the device.
    assert cli.main([*argv, "--device", "cuda"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(": ")[1] == "rts-cnn-s0-cuda" and lines[0].endswith("--device cuda")
    assert len(lines) == 28
    assert cli.main([*argv, "--device", "gpu"]) == 2  # a usage error, in one line
    assert "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'" in capsys.readouterr().err


def test_selection_cells_run_at_seed_0_only_unless_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["reproduce", "gtsrb", "--seeds", "0", "1", "--dry-run", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    runs = [line.split(": ")[1] for line in lines if line.split(": ")[1].startswith("gtsrb")]
    selection = [cell for cell in cells_of("gtsrb") if is_selection(cell)]
    final = [cell for cell in cells_of("gtsrb") if not is_selection(cell)]
    assert len(selection) >= 2 and len(final) >= 2
    assert sorted(runs) == sorted(
        [f"{cell.name}-s0" for cell in selection]
        + [f"{cell.name}-s{seed}" for cell in final for seed in (0, 1)]
    )
    assert f"{len(selection)} selection runs left out" in lines[0]
    # Named with --cells, a selection cell runs at the seeds given (say, to measure its spread).
    assert cli.main([*argv[:2], "--cells", "gtsrb-st-cnn-select", *argv[2:]]) == 0
    runs = [line.split(": ")[1] for line in capsys.readouterr().out.splitlines()]
    assert runs == ["gtsrb-st-cnn-select-s0", "gtsrb-st-cnn-select-s1"]


def test_bad_arguments_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reproduce", "table1", "--cells", "nothing-*", "--dry-run"]) == 1
    assert "no cell of 'table1' matches --cells 'nothing-*'" in capsys.readouterr().err
    assert cli.main(["reproduce"]) == 1
    assert cli.main(["reproduce", "table9"]) == 2


def test_a_tiny_cell_end_to_end_then_skipped_then_reported(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = Cell("table1", "rts", "st-cnn-affine", 0.5, recipe=TINY)
    monkeypatch.setitem(GRIDS, "table1", [cell])
    out, runs = tmp_path / "results", tmp_path / "runs"
    common = ["--seeds", "3", "--out", str(out), "--runs", str(runs), "--data-root", str(shared_data)]
    assert cli.main(["reproduce", "table1", *common]) == 0
    result = json.loads((out / "table1" / "rts-st-cnn-affine-s3.json").read_text())
    records = read_jsonl(runs / "table1" / "rts-st-cnn-affine-s3" / "metrics.jsonl")
    assert result["final_test_error"] == records[-1]["test_error"]
    assert result["final_val_error"] == records[-1]["val_error"]
    assert result["curves"]["epoch"] == [1, 2] and len(result["curves"]["val_error"]) == 2
    assert result["seed"] == 3 and result["paper_error_percent"] == 0.5
    assert result["command"].startswith("stnkit train --dataset rts --model st-cnn-affine --seed 3")
    assert result["machine"]["cores"] and result["machine"]["torch"]
    assert result["parameters"] == cell_parameters(cell)  # the model it trained, from its checkpoint
    # A second call skips the finished cell; the report quotes its number.
    capsys.readouterr()
    assert cli.main(["reproduce", "table1", *common]) == 0
    assert capsys.readouterr().out == ""
    report = tmp_path / "paper-results.md"
    assert cli.main(["reproduce", *common, "--report", str(report)]) == 0
    text = report.read_text()
    ours = 100 * result["final_test_error"]
    assert (
        f"| rts | st-cnn-affine | {PARAMS['rts-st-cnn-affine']} | 0.5 | {ours:.2f} (1 run; 0 of the cell's 3 seeds) | {ours - 0.5:+.2f} | 3 |"
        in text
    )
    # The finished run's transformer, pictured and linked.
    assert "- st-cnn-affine: st-cnn-affine on rts, seed 3, epoch 2\n" in text
    assert "![rts-st-cnn-affine](img/paper/rts-st-cnn-affine.png)" in text
    assert (tmp_path / "img" / "paper" / "rts-st-cnn-affine.png").stat().st_size > 1000


def test_a_killed_cell_resumes_from_its_last_epoch(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = Cell("tc", "mnist", "cnn", None, recipe=TINY)
    monkeypatch.setitem(GRIDS, "tc", [cell])
    out, runs = tmp_path / "results", tmp_path / "runs"
    command = reproduce._train_command(
        cell, 0, runs / "tc" / "mnist-cnn-s0", cli.build_parser().parse_args(
            ["reproduce", "tc", "--data-root", str(shared_data)]
        ),
    )  # fmt: skip

    def killed(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # as if the process were stopped right after epoch 1's checkpoint

    with monkeypatch.context() as patch:
        patch.setattr("stnkit.viz.plot_curves", killed)
        assert cli.main(command[3:]) == cli.EXIT_INTERRUPTED
    first = read_jsonl(runs / "tc" / "mnist-cnn-s0" / "metrics.jsonl")
    assert [r["epoch"] for r in first] == [1]
    common = ["--seeds", "0", "--out", str(out), "--runs", str(runs), "--data-root", str(shared_data)]
    assert cli.main(["reproduce", "tc", *common]) == 0
    assert capsys.readouterr().out.rstrip().endswith("--resume")  # the full recipe, continued
    records = read_jsonl(runs / "tc" / "mnist-cnn-s0" / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2] and records[0] == first[0]  # epoch 1 not redone
    result = json.loads((out / "tc" / "mnist-cnn-s0.json").read_text())
    assert result["epochs"] == 2 and result["command"] == "stnkit " + " ".join(command[3:])


# --- the report's pictures ------------------------------------------------------------------------


def test_report_pictures_each_transformer_with_a_run_folder_and_says_where_none_is(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stnkit.viz import plot_transformer, transformer_views

    cells = [Cell("table1", "rts", m, None) for m in ("cnn", "st-cnn-affine", "st-fcn-affine")]
    monkeypatch.setitem(GRIDS, "table1", cells)
    monkeypatch.setitem(GRIDS, "tc", [])
    monkeypatch.setitem(GRIDS, "addition", [])
    runs, results = tmp_path / "runs", tmp_path / "results"
    run = runs / "table1" / "rts-st-cnn-affine-s1"
    train = ["train", "--dataset", "rts", "--model", "st-cnn-affine", "--epochs", "1", "--limit", "64"]
    train += ["--test-limit", "32", "--batch-size", "32", "--no-progress", "--data-root", str(shared_data)]
    assert cli.main([*train, "--out", str(run)]) == 0
    (runs / "table1" / "rts-st-cnn-affine-s0").mkdir()  # a run folder without a checkpoint: not a run
    _write_a_result(results, cells[0])
    report = tmp_path / "docs" / "paper-results.md"
    command = ["reproduce", "--out", str(results), "--runs", str(runs), "--data-root", str(shared_data)]
    assert cli.main([*command, "--report", str(report)]) == 0
    text = report.read_text()
    section = text[text.index("## What the transformers learned") :]
    assert "### table1: rts" in section and "- cnn" not in section  # no transformer, no picture
    expected = "- st-cnn-affine: st-cnn-affine on rts, seed 1, epoch 1 (unfinished run: no result file yet)"
    assert expected in section
    assert "  ![rts-st-cnn-affine](img/paper/rts-st-cnn-affine.png)" in section
    assert (
        "- st-fcn-affine: not drawn: no `table1/rts-st-fcn-affine-s*/checkpoint.pt` in the runs folder yet."
        in section
    )
    picture = tmp_path / "docs" / "img" / "paper" / "rts-st-cnn-affine.png"
    # The picture is plot_transformer of the canonical test set's first images through the checkpoint.
    model = load_run(str(run / CHECKPOINT_NAME))[0]
    images = first_test_images("rts", PICTURE_IMAGES, root=str(shared_data))
    direct = plot_transformer(
        images,
        transformer_views(model, images),
        tmp_path / "direct.png",
        title="st-cnn-affine on rts, seed 1, epoch 1",
    )
    assert picture.read_bytes() == direct.read_bytes()
    # Rendering again gives the same bytes: the report and its pictures are deterministic.
    first = picture.read_bytes(), text
    assert cli.main([*command, "--report", str(report)]) == 0
    assert (picture.read_bytes(), report.read_text()) == first


def test_a_picture_of_parallel_transformers_says_which_channel_each_head_follows(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stnkit.reproduce.report import FOLLOWING_IMAGES, _following_caption

    monkeypatch.setitem(GRIDS, "table1", [])
    monkeypatch.setitem(GRIDS, "tc", [])
    monkeypatch.setitem(GRIDS, "addition", [Cell("addition", "mnist-add", "2xst-fcn-affine", 5.8)])
    runs, results = tmp_path / "runs", tmp_path / "results"
    run = runs / "addition" / "mnist-add-2xst-fcn-affine-s0"
    train = [
        "train",
        "--dataset",
        "mnist-add",
        "--model",
        "2xst-fcn-affine",
        "--epochs",
        "1",
        "--limit",
        "64",
    ]
    train += ["--test-limit", "32", "--batch-size", "32", "--no-progress", "--data-root", str(shared_data)]
    assert cli.main([*train, "--out", str(run)]) == 0
    _write_a_result(results, cells_of("mnist", "mnist-cnn")[0])  # another grid's: this run stays unfinished
    report = tmp_path / "docs" / "paper-results.md"
    command = ["reproduce", "--out", str(results), "--runs", str(runs), "--data-root", str(shared_data)]
    assert cli.main([*command, "--report", str(report)]) == 0
    stn = load_run(str(run / CHECKPOINT_NAME))[0].stn
    following = stn.channel_following(first_test_images("mnist-add", FOLLOWING_IMAGES, root=str(shared_data)))
    assert following.shape == (2, 2) and following.isfinite().all()  # trained heads move with the input
    caption = _following_caption(following)
    assert caption.startswith(". Where each head looks against where each channel's digit is")
    assert f"seed 0, epoch 1 (unfinished run: no result file yet){caption}\n" in report.read_text()


def test_report_refuses_a_file_it_cannot_read_and_ignores_other_experiments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "run.json").write_text('{"test_error": 0.01}')  # another experiment's file
    _write_a_result(tmp_path, cells_of("tc", "tc-cnn")[0])
    report = tmp_path / "report.md"
    assert (
        cli.main(["reproduce", "--out", str(tmp_path), "--report", str(report), "--runs", str(tmp_path)]) == 0
    )
    (tmp_path / "table1").mkdir()
    (tmp_path / "table1" / "rts-cnn-s0.json").write_text('{"version": 0}')
    assert (
        cli.main(["reproduce", "--out", str(tmp_path), "--report", str(report), "--runs", str(tmp_path)]) == 1
    )
    assert "rts-cnn-s0.json: not a result file of this version" in capsys.readouterr().err
    # A mistyped --out (missing, or a file) is refused rather than rendered as an empty grid, and
    # the report already there stays as it was.
    before = report.read_text()
    for out in (tmp_path / "missing", tmp_path / "keras" / "run.json"):
        assert cli.main(["reproduce", "--out", str(out), "--report", str(report)]) == 1
        assert f"--out {out}: not a folder of result files" in capsys.readouterr().err
    assert report.read_text() == before


def test_mnist_grid_is_the_robustness_models_on_plain_mnist_with_the_default_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = cells_of("mnist")
    assert [cell.name for cell in cells] == ["mnist-cnn", "mnist-st-cnn-affine"]
    assert {(cell.dataset, cell.paper_error, cell.recipe.name) for cell in cells} == {
        ("mnist", None, DEFAULT_RECIPE.name)
    }
    argv = ["reproduce", "mnist", "--seeds", "0", "1", "--dry-run", "--out", str(tmp_path)]
    assert cli.main([*argv, "--runs", str(tmp_path / "runs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    runs = [line.split(": ")[1] for line in lines]
    assert runs == ["mnist-cnn-s0", "mnist-st-cnn-affine-s0", "mnist-cnn-s1", "mnist-st-cnn-affine-s1"]
    command = lines[1].split(": ", 2)[2]
    assert command.startswith("train --dataset mnist --model st-cnn-affine --seed 0 ")
    # What it trains, then where and how fast (stnkit.reproduce.Cell.train_args).
    assert "--seed 0 --epochs 20 --val-size 10000 --threads 2 --out " in command
    assert command.endswith(" --no-progress")
    assert not (tmp_path / "mnist").exists()  # a dry run writes no result


def test_report_shows_the_robustness_sweep_under_out_and_copies_its_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, docs = tmp_path / "results", tmp_path / "docs"
    sweep = out / "robustness"
    sweep.mkdir(parents=True)
    runs = [
        {"label": "cnn on mnist", "checkpoint": "runs/c/checkpoint.pt", "seed": 0, "epoch": 20,
         "errors": {"angle": [0.02]}}
    ]  # fmt: skip
    summary = {
        "version": 2,
        "digits": {"dataset": "mnist", "split": "test", "count": 50},
        "sweeps": {"angle": {"unit": "degrees", "values": [0.0]}},
        "runs": runs,
    }
    (sweep / "robustness.json").write_text(json.dumps(summary))
    (sweep / "robustness.md").write_text("| angle (degrees) | cnn on mnist |\n|---:|---:|\n| 0 | 2.00 |\n")
    (sweep / "robustness.png").write_bytes(b"\x89PNG not really")
    _write_a_result(out, cells_of("tc", "tc-cnn")[0])
    argv = ["reproduce", "--out", str(out), "--runs", str(tmp_path / "none"), "--report"]
    assert cli.main([*argv, str(docs / "paper-results.md")]) == 0
    page = (docs / "paper-results.md").read_text()
    assert "## Robustness to pose" in page and "| 0 | 2.00 |" in page
    assert "](img/paper/robustness.png)" in page
    assert (docs / "img" / "paper" / "robustness.png").read_bytes() == b"\x89PNG not really"
    # A sweep file that cannot be read is one line naming the folder, and no page is written.
    (sweep / "robustness.json").write_text("{not json")
    assert cli.main([*argv, str(tmp_path / "other.md")]) == 1
    err = capsys.readouterr().err
    assert "not a usable stnkit robustness result" in err and str(sweep) in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "other.md").exists()
    # So is one that reads but is not a sweep (here: no error per swept value).
    (sweep / "robustness.json").write_text(json.dumps({**summary, "runs": [{**runs[0], "errors": {}}]}))
    assert cli.main([*argv, str(tmp_path / "other.md")]) == 1
    err = capsys.readouterr().err
    assert "its 'runs' are not labelled models" in err and len(err.strip().splitlines()) == 1


def test_report_rewrites_a_readmes_glance_and_refuses_one_without_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_a_result(tmp_path, cells_of("tc", "tc-cnn")[0])
    readme, report = tmp_path / "README.md", tmp_path / "report.md"
    readme.write_text(f"# A project\n\n{GLANCE_START}\nstale\n{GLANCE_END}\n\nMore words.\n")
    argv = ["reproduce", "--out", str(tmp_path), "--runs", str(tmp_path), "--report", str(report)]
    assert cli.main([*argv, "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert (
        "stale" not in text and "| model | TC |" in text and text.endswith(f"{GLANCE_END}\n\nMore words.\n")
    )
    # Without the markers: one line, and neither file is touched.
    readme.write_text("# A project without a glance\n")
    report.unlink()
    assert cli.main([*argv, "--readme", str(readme)]) == 1
    assert (
        "--readme" in (err := capsys.readouterr().err) and GLANCE_START in err and len(err.splitlines()) == 1
    )
    assert readme.read_text() == "# A project without a glance\n" and not report.exists()
    # A README that is not there: one line naming it.
    assert cli.main([*argv, "--readme", str(tmp_path / "missing.md")]) == 1
    assert (err := capsys.readouterr().err).startswith("stnkit reproduce: error: --readme ")
    assert "missing.md: cannot read it" in err and len(err.splitlines()) == 1
    # --readme is for --report only.
    assert cli.main(["reproduce", "table1", "--readme", str(readme), "--dry-run"]) == 1
    assert "--readme goes with --report" in capsys.readouterr().err
