"""``stnkit reproduce``: the grid, its order, a tiny real cell end to end, resuming, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stnkit import cli
from stnkit.cli import reproduce
from stnkit.cli.common import first_images, load_run
from stnkit.engine import CHECKPOINT_NAME, read_jsonl

TINY = reproduce.Recipe(
    "tiny",
    ("--epochs", "2", "--limit", "96", "--test-limit", "64", "--val-size", "64", "--batch-size", "32"),
    "two epochs on 96 images",
)


def test_table1_has_every_paper_cell_headline_first() -> None:
    cells = reproduce.cells_of("table1")
    assert len(cells) == 4 * 8 and len({cell.name for cell in cells}) == 32
    assert [cell.model for cell in cells[:8]] == ["cnn", "st-cnn-affine"] * 4
    rts = {cell.model: cell.paper_error for cell in cells if cell.dataset == "rts"}
    assert rts["st-cnn-affine"] == 0.5 and rts["cnn"] == 0.8 and rts["fcn"] == 5.2
    assert [cell.name for cell in reproduce.cells_of("all", "tc-*")] == [
        "tc-fcn", "tc-cnn", "tc-st-fcn-affine", "tc-st-cnn-affine"
    ]  # fmt: skip


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
    assert len(runs) == 16


def test_bad_arguments_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reproduce", "table1", "--cells", "nothing-*", "--dry-run"]) == 1
    assert "no cell of 'table1' matches --cells 'nothing-*'" in capsys.readouterr().err
    assert cli.main(["reproduce"]) == 1
    assert cli.main(["reproduce", "table9"]) == 2


def test_a_tiny_cell_end_to_end_then_skipped_then_reported(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = reproduce.Cell("table1", "rts", "st-cnn-affine", 0.5, recipe=TINY)
    monkeypatch.setitem(reproduce.GRIDS, "table1", [cell])
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
    # A second call skips the finished cell; the report quotes its number.
    capsys.readouterr()
    assert cli.main(["reproduce", "table1", *common]) == 0
    assert capsys.readouterr().out == ""
    report = tmp_path / "paper-results.md"
    assert cli.main(["reproduce", *common, "--report", str(report)]) == 0
    text = report.read_text()
    ours = 100 * result["final_test_error"]
    assert f"| rts | st-cnn-affine | 0.5 | {ours:.2f} | {ours - 0.5:+.2f} | 3 |" in text
    # The finished run's transformer, pictured and linked.
    assert "- st-cnn-affine: st-cnn-affine on rts, seed 3, epoch 2\n" in text
    assert "![rts-st-cnn-affine](img/paper/rts-st-cnn-affine.png)" in text
    assert (tmp_path / "img" / "paper" / "rts-st-cnn-affine.png").stat().st_size > 1000


def test_a_killed_cell_resumes_from_its_last_epoch(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = reproduce.Cell("tc", "mnist", "cnn", None, recipe=TINY)
    monkeypatch.setitem(reproduce.GRIDS, "tc", [cell])
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
        with pytest.raises(KeyboardInterrupt):
            cli.main(command[3:])
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


def test_the_picture_comes_from_a_finished_run_seed_0_first() -> None:
    assert reproduce._picture_seed([0, 1, 2], finished={0, 1, 2}) == 0
    assert reproduce._picture_seed([0, 1, 2], finished={1, 2}) == 1
    assert reproduce._picture_seed([1, 2], finished=set()) == 1
    assert reproduce._picture_seed([0, 2], finished={2}) == 2


def test_report_pictures_each_transformer_with_a_run_folder_and_says_where_none_is(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stnkit.viz import plot_transformer, transformer_views

    cells = [reproduce.Cell("table1", "rts", m, None) for m in ("cnn", "st-cnn-affine", "st-fcn-affine")]
    monkeypatch.setitem(reproduce.GRIDS, "table1", cells)
    monkeypatch.setitem(reproduce.GRIDS, "tc", [])
    monkeypatch.setitem(reproduce.GRIDS, "addition", [])
    runs, results = tmp_path / "runs", tmp_path / "results"
    run = runs / "table1" / "rts-st-cnn-affine-s1"
    train = ["train", "--dataset", "rts", "--model", "st-cnn-affine", "--epochs", "1", "--limit", "64"]
    train += ["--test-limit", "32", "--batch-size", "32", "--no-progress", "--data-root", str(shared_data)]
    assert cli.main([*train, "--out", str(run)]) == 0
    (runs / "table1" / "rts-st-cnn-affine-s0").mkdir()  # a run folder without a checkpoint: not a run
    results.mkdir()
    report = tmp_path / "docs" / "paper-results.md"
    command = ["reproduce", "--out", str(results), "--runs", str(runs), "--data-root", str(shared_data)]
    assert cli.main([*command, "--report", str(report)]) == 0
    text = report.read_text()
    section = text[text.index("## What the transformers learned") :]
    assert "### table1: rts" in section and "- cnn" not in section  # no transformer, no picture
    expected = "- st-cnn-affine: st-cnn-affine on rts, seed 1, epoch 1 (unfinished run: no result file yet)"
    assert expected in section
    assert "  ![rts-st-cnn-affine](img/paper/rts-st-cnn-affine.png)" in section
    where = (runs / "table1" / "rts-st-fcn-affine-s*" / CHECKPOINT_NAME).as_posix()
    assert f"- st-fcn-affine: no run folder yet (`{where}`)." in section
    picture = tmp_path / "docs" / "img" / "paper" / "rts-st-cnn-affine.png"
    # The picture is plot_transformer of the canonical test set's first images through the checkpoint.
    model = load_run(str(run / CHECKPOINT_NAME))[0]
    images = first_images("rts", reproduce.PICTURE_IMAGES, root=str(shared_data))
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


def test_report_refuses_a_file_it_cannot_read_and_ignores_other_experiments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "run.json").write_text('{"test_error": 0.01}')  # another experiment's file
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


def test_gtsrb_grid_selects_on_validation_then_trains_on_everything() -> None:
    cells = reproduce.cells_of("gtsrb")
    names = [cell.name for cell in cells]
    assert names[:3] == ["gtsrb-st-cnn-select", "gtsrb-st-cnn", "gtsrb-cnn"]
    assert len(set(names)) == len(names)
    for cell in cells:
        flags = cell.recipe.flags
        assert ("--val-size" in flags) == (cell.tag == "select")
        assert cell.model_kwargs == {"standardize": True}
    assert reproduce.cells_of("all", "gtsrb-cnn*") == [cells[2], cells[3]]


def _result(cell: reproduce.Cell, seed: int, val: float | None, test: float) -> dict[str, object]:
    return {
        "grid": cell.grid, "cell": cell.name, "seed": seed, "final_val_error": val,
        "final_test_error": test, "wall_time_s": 600.0,
        "machine": {"cpu": "Some CPU", "cores": 2},
    }  # fmt: skip


def test_gtsrb_report_shows_validation_for_selection_and_test_for_final_runs() -> None:
    select, final = reproduce.cells_of("gtsrb")[:2]
    results = [
        _result(select, 0, 0.0125, 0.0999),  # a selection run's test error must not appear
        _result(final, 0, None, 0.0040),
        _result(final, 1, None, 0.0060),
    ]
    report = reproduce.render_report(results)
    section = report.split("## gtsrb")[1].split("\n## ")[0]
    select_row = next(line for line in section.splitlines() if line.startswith("| gtsrb-st-cnn | select"))
    assert "| 1.25 |" in select_row and "9.99" not in section and "not used" in select_row
    final_row = next(line for line in section.splitlines() if line.startswith("| gtsrb-st-cnn | final"))
    assert "| 0.50 ± 0.14 |" in final_row and "99.50%" in final_row and "| 0, 1 |" in final_row
    assert "| gtsrb-cnn | final | gtsrb-aug30 | not run yet" in section
    assert "## gtsrb" not in report.split("## gtsrb (traffic signs")[0]  # no generic table for it


def test_mnist_grid_is_the_robustness_models_on_plain_mnist_with_the_default_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = reproduce.cells_of("mnist")
    assert [cell.name for cell in cells] == ["mnist-cnn", "mnist-st-cnn-affine"]
    assert {(cell.dataset, cell.paper_error, cell.recipe.name) for cell in cells} == {
        ("mnist", None, reproduce.DEFAULT_RECIPE.name)
    }
    argv = ["reproduce", "mnist", "--seeds", "0", "1", "--dry-run", "--out", str(tmp_path)]
    assert cli.main([*argv, "--runs", str(tmp_path / "runs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    runs = [line.split(": ")[1] for line in lines]
    assert runs == ["mnist-cnn-s0", "mnist-st-cnn-affine-s0", "mnist-cnn-s1", "mnist-st-cnn-affine-s1"]
    command = lines[1].split(": ", 2)[2]
    assert command.startswith("train --dataset mnist --model st-cnn-affine --seed 0 ")
    assert command.endswith("--epochs 20 --val-size 10000")
    assert not (tmp_path / "mnist").exists()  # a dry run writes no result


def test_report_has_a_plain_mnist_section_without_paper_numbers() -> None:
    st = reproduce.cells_of("mnist")[1]
    report = reproduce.render_report([_result(st, 0, 0.009, 0.0080), _result(st, 1, 0.010, 0.0100)])
    title = "## plain MNIST (for the robustness figure; not in the paper's table)"
    assert report.count(title) == 1 and "\n## mnist\n" not in report  # its own section, not a paper table
    section = report.split(title)[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| mnist |")]
    assert rows == [
        "| mnist | cnn |  | not run yet | | | | |",
        "| mnist | st-cnn-affine |  | 0.90 ± 0.14 |  | 0, 1 | 10.0 | Some CPU (2 cores) |",
    ]
    # The paper's table 1 rows keep their paper numbers; the plain-MNIST result appears nowhere else.
    assert "| rts | cnn | 0.8 | not run yet |" in report and report.count("0.90 ± 0.14") == 1


def test_a_picture_whose_run_folder_is_gone_stays_in_the_report(tmp_path: Path) -> None:
    image_dir = tmp_path / "img" / "paper"
    image_dir.mkdir(parents=True)
    (image_dir / "rts-st-cnn-affine.png").write_bytes(b"\x89PNG drawn by an earlier render")
    caption = "st-cnn-affine on rts, seed 0, epoch 20"
    (image_dir / reproduce.CAPTIONS_NAME).write_text(json.dumps({"rts-st-cnn-affine.png": caption}))
    pictures = reproduce.render_pictures([], tmp_path / "no-runs", image_dir, data_root=None)
    kept = pictures["table1", "rts-st-cnn-affine"]
    assert kept.link == "img/paper/rts-st-cnn-affine.png"
    assert kept.caption == f"{caption} (drawn earlier; its run folder is not here)"
    assert pictures["table1", "rts-st-cnn-tps"].link is None  # never drawn: says where the run would be
